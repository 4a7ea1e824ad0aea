"""zoo.testing's conformance checks over every built-in component and the example plugin,
the checks catching broken components, and the fixtures the pytest plugin provides."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import zoo
from zoo.plugins import PluginManager
from zoo.registry import PluginRegistrar
from zoo.testing import TINY_GRAPH, check_component, check_plugin, tiny_config

REPO = Path(__file__).resolve().parents[2]
BUILTINS = [(c.kind, c.name) for c in zoo.list() if c.builtin]
# Components that have nothing to run on without files of their own: schema only.
SCHEMA_ONLY = {("dataset", "planetoid"), ("dataset", "mnist"), ("dataset", "image_folder"),
               ("graph_builder", "cooccurrence"), ("graph_builder", "file")}


@pytest.mark.parametrize(("kind", "name"), BUILTINS, ids=[f"{k}:{n}" for k, n in BUILTINS])
def test_builtin_component_conforms(kind, name):
    report = check_component(kind, name)
    assert {"summary line", "documented parameters"} <= set(report.passed)
    if (kind, name) in SCHEMA_ONLY:
        assert "builds" not in report.passed and report.skipped
        pytest.skip(f"{kind} '{name}': schema only: {report.skipped[0]}")
    assert "builds" in report.passed, report


def test_every_kind_is_run_on_a_builtin():
    ran = {kind for kind, name in BUILTINS if (kind, name) not in SCHEMA_ONLY}
    assert ran == set(zoo.KINDS)


@pytest.fixture(scope="module")
def builtins_only() -> PluginManager:
    manager = PluginManager(warn=False)
    manager.load_entry_points(allow=set())
    return manager


def test_example_plugin_conforms(builtins_only, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "examples" / "zoo-plugin-example"))
    module = importlib.import_module("zoo_plugin_example")
    try:
        builtins_only.load_module(module, "example", distribution="zoo-plugin-example",
                                  version="0.1.0")
        registry = builtins_only.registry
        by_plugin = check_plugin("example", registry)
        by_distribution = check_plugin("zoo_plugin_example", registry)  # normalized
    finally:
        sys.modules.pop("zoo_plugin_example", None)
    assert set(by_plugin) == set(by_distribution) == {"encoder:residual_mlp"}
    assert {"builds", "forward and backward", "gradients", "sparse features"} <= set(
        by_plugin["encoder:residual_mlp"].passed)


# -- the checks catch what they should ------------------------------------------------
class GoodModel(nn.Module):
    """A linear node model (a correct reference for the broken ones below).

    Args:
        hidden: unused width.
    """

    def __init__(self, in_dim, out_dim, *, hidden: int = 4):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, graph, x):
        return self.linear(x.to_dense() if x.is_sparse else x)


class NaNModel(GoodModel):
    """Gives NaN for every node."""

    def forward(self, graph, x):
        return super().forward(graph, x) * float("nan")


class NarrowModel(GoodModel):
    """Drops the last output column."""

    def forward(self, graph, x):
        return super().forward(graph, x)[:, :-1]


class DeadWeight(GoodModel):
    """Has a layer it never uses."""

    def __init__(self, in_dim, out_dim, *, hidden: int = 4):
        super().__init__(in_dim, out_dim, hidden=hidden)
        self.unused = nn.Linear(2, 2)


class Undocumented(GoodModel):
    """Documents only one of its parameters.

    Args:
        hidden: unused width.
    """

    def __init__(self, in_dim, out_dim, *, hidden: int = 4, depth: int = 2):
        super().__init__(in_dim, out_dim, hidden=hidden)


class BadSample(GoodModel):
    """Declares a sample config its schema refuses."""

    sample_config = {"hidden": "wide"}


def needs_path(*, path: str):
    """A dataset that needs a file.

    Args:
        path: the file.
    """


class ConstantReg(nn.Module):
    """A term that does not depend on the model.

    Args:
        multiplier: its weight.
    """

    def __init__(self, *, multiplier: float = 1.0):
        super().__init__()
        self.multiplier = multiplier

    def forward(self, inp):
        return torch.tensor(self.multiplier)


class LeakyTask:
    """A task whose loss reads every row, not only the batch's loss rows."""

    monitor, mode, tie_break, report = "val_accuracy", "max", None, ("val_accuracy",)

    def output_size(self, data):
        return data.num_classes

    def loss(self, output, batch):
        return torch.nn.functional.cross_entropy(output.logits, batch.labels)

    def evaluate(self, output, data):
        hit = output.logits.argmax(-1) == data.labels
        return {"val_accuracy": hit[data.val_mask].float().mean()}


class ShuffledInfer:
    """A whole-graph batch source whose infer returns the rows in reverse order."""

    graph_input = "whole"

    def bind(self, data, graph, runtime):
        self.data, self.graph = data, graph

    def epoch(self, labels, labeled, with_reg_graph=False):
        yield zoo.Batch(self.graph, self.data.features, torch.arange(self.data.num_nodes),
                        labels, labeled, labeled.nonzero().squeeze(1))

    def infer(self, model):
        out = model(self.graph, self.data.features)
        return zoo.ModelOutput(out.logits.flip(0), out.embedding.flip(0))


BROKEN = [("node_model", "nan_model", NaNModel), ("node_model", "narrow_model", NarrowModel),
          ("node_model", "dead_weight", DeadWeight),
          ("node_model", "undocumented_model", Undocumented),
          ("node_model", "bad_sample", BadSample), ("dataset", "needs_path", needs_path),
          ("regularizer", "constant_reg", ConstantReg), ("task", "leaky_task", LeakyTask),
          ("batch_source", "shuffled_infer", ShuffledInfer),
          ("node_model", "good_model", GoodModel)]


@pytest.fixture(scope="module")
def broken(builtins_only):
    registrar = PluginRegistrar("broken", "zoo-broken", "0.1")
    for kind, name, factory in BROKEN:
        registrar.add(kind, name, factory)
    assert not registrar.refused, registrar.refused
    registrar.commit(builtins_only.registry)
    return builtins_only.registry


@pytest.mark.parametrize(("kind", "name", "rule", "detail"), [
    ("node_model", "nan_model", "finite output", "NaN or infinite"),
    ("node_model", "narrow_model", "output shape", "expected (90, 3)"),
    ("node_model", "dead_weight", "gradients", "unused.weight, unused.bias got no gradient"),
    ("node_model", "undocumented_model", "documented parameters", "'depth' undocumented"),
    ("node_model", "bad_sample", "sample config validates", "sample_config.hidden"),
    ("regularizer", "constant_reg", "regularizer gradient", "returned 1 with no gradient"),
    ("task", "leaky_task", "loss", "reaches rows outside batch.loss_rows"),
    ("batch_source", "shuffled_infer", "infer", "node order"),
])
def test_a_broken_rule_names_component_rule_and_fix(broken, kind, name, rule, detail):
    with pytest.raises(AssertionError) as caught:
        check_component(kind, name, broken)
    message = str(caught.value)
    assert message.startswith(f"{kind} '{name}' (zoo-broken 0.1) breaks '{rule}': ")
    assert detail in message and ". Fix: " in message


def test_required_parameters_without_sample_config_leave_the_schema_only(broken):
    report = check_component("dataset", "needs_path", broken)
    assert "builds" not in report.passed
    assert "required parameter(s) path and no sample_config" in report.skipped[0]


def test_check_plugin_lists_every_broken_component(broken):
    with pytest.raises(AssertionError) as caught:
        check_plugin("zoo-broken", broken)
    message = str(caught.value)
    assert message.startswith("8 conformance problem(s) in 'zoo-broken':")
    assert "node_model 'good_model'" not in message
    for kind, name, *_ in BROKEN[:5]:
        assert f"{kind} '{name}'" in message
    with pytest.raises(AssertionError, match="no plugin or distribution 'nowhere'"):
        check_plugin("nowhere", broken)


# -- the fixtures ---------------------------------------------------------------------
def test_the_pytest_plugin_is_registered(pytestconfig):
    assert pytestconfig.pluginmanager.get_plugin("zoo") is sys.modules["zoo.testing"]


def test_tiny_graph_is_small_deterministic_and_weighted(tiny_graph):
    again = zoo.testing.tiny_graph_data()
    assert tiny_graph.num_nodes == TINY_GRAPH["num_nodes"] and tiny_graph.num_classes == 3
    assert tiny_graph.features.shape == (90, 8) and not tiny_graph.features.is_sparse
    assert [int(m.sum()) for m in (tiny_graph.train_mask, tiny_graph.val_mask,
                                   tiny_graph.test_mask)] == [15, 30, 30]
    weight = tiny_graph.graph.edata["weight"]
    assert weight.dtype == torch.float32 and weight.min() >= 0.5 and weight.std() > 0.1
    assert torch.equal(tiny_graph.features, again.features)
    assert torch.equal(weight, again.graph.edata["weight"])


def test_tiny_config_trains_a_model_above_chance(run_dir):
    exp = zoo.build(tiny_config(model={"name": "gcn", "hidden": 8},
                                trainer={"name": "supervised", "epochs": 30}))
    summary = exp.fit(seeds=1, out=run_dir)
    assert summary["metrics"]["test_accuracy"]["mean"] > 0.6  # chance: 1/3
    assert (run_dir / "summary.json").is_file()


def test_run_dir_is_fresh_under_tmp_path(run_dir, tmp_path):
    assert run_dir.parent == tmp_path and not run_dir.exists()


def test_zoo_registry_is_the_default(zoo_registry):
    assert zoo_registry is zoo.default_registry()
    assert zoo_registry.get("node_model", "gcn").builtin


def test_cora_comes_through_the_mirror(cora):
    assert cora.num_nodes == 2708 and cora.num_classes == 7
    assert [int(m.sum()) for m in (cora.train_mask, cora.val_mask, cora.test_mask)] == [
        140, 500, 1000]
