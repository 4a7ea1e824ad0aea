"""Components that break their kind's contract at run time are reported as a
``zoo.ContractError`` naming the component and describing what it returned — never as a
torch error or a traceback from deep inside the engine.

Pinned, on a tiny synthetic dataset with the broken components registered beside the
built-ins: a node model returning a tuple, or the wrong number of rows; an encoder
without ``out_dim``; a regularizer returning a vector, or None; a task whose loss is not
a scalar; a trainer whose ``fit`` returns a list; a dataset returning something that is
not a ``zoo.GraphData``. On the CLI such a run exits 1 with one ``zoo: error:`` line, no
traceback and no ``summary.json``; it should also leave no run behind, so that the same
``--out`` works once the component is fixed (an expected failure today).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import dgl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.api import default_registry
from zoo.errors import ContractError
from zoo.registry import PluginRegistrar, Registry

sys.path.insert(0, str(Path(__file__).parent))
from plugin_dists import CONTRACT_BREAKER, write_dist  # noqa: E402


def tiny(*, nodes: int = 36) -> zoo.GraphData:
    """A few dozen nodes in three classes on a random graph, dense features."""
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(0, nodes, (nodes * 4,), generator=gen)
    dst = torch.randint(0, nodes, (nodes * 4,), generator=gen)
    ids = torch.arange(nodes)
    return zoo.GraphData(dgl.graph((src, dst), num_nodes=nodes),
                         torch.randn(nodes, 5, generator=gen), ids % 3, ids < 12,
                         (ids >= 12) & (ids < 24), ids >= 24, num_classes=3, name="tiny")


def not_graph_data(*, nodes: int = 36) -> dict:
    """A dataset returning a plain dict instead of a zoo.GraphData."""
    return {"features": torch.zeros(nodes, 5), "labels": torch.zeros(nodes)}


class TupleModel(nn.Module):
    """A node model returning a tuple instead of a tensor or a zoo.ModelOutput."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim)

    def forward(self, graph, x: torch.Tensor):
        y = self.lin(x)
        return y, y


class FiveRows(nn.Module):
    """A node model returning five rows, whatever the number of nodes."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim)

    def forward(self, graph, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)[:5]


class NoOutDim(nn.Module):
    """An encoder that does not set the out_dim attribute."""

    def __init__(self, in_dim: int, out_dim: int | None) -> None:
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim or 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


class VectorTerm(nn.Module):
    """A regularizer returning one value per node instead of a scalar."""

    def forward(self, inp: zoo.RegularizerInput) -> torch.Tensor:
        return inp.logits.pow(2).sum(1)


class NoneTerm(nn.Module):
    """A regularizer returning None."""

    def forward(self, inp: zoo.RegularizerInput) -> None:
        return None


class PerNodeLoss:
    """Node classification whose loss is per node (reduction 'none'), not a scalar."""

    monitor, mode, tie_break, report = "val_accuracy", "max", None, ("val_accuracy",)

    def output_size(self, data: zoo.GraphData) -> int:
        return data.num_classes

    def loss(self, output: zoo.ModelOutput, batch: zoo.Batch) -> torch.Tensor:
        rows = batch.loss_rows
        return F.cross_entropy(output.logits[rows], batch.labels[rows], reduction="none")

    def evaluate(self, output: zoo.ModelOutput, data: zoo.GraphData) -> dict[str, float]:
        val = data.val_mask
        return {"val_accuracy": float((output.logits[val].argmax(1) == data.labels[val])
                                      .float().mean())}


class ListTrainer:
    """A trainer whose fit returns a list instead of a dict of metrics."""

    def fit(self, ctx: zoo.TrainContext) -> list[float]:
        return [0.5, 0.25]


BROKEN = [("dataset", "tiny", tiny), ("dataset", "not_graph_data", not_graph_data),
          ("node_model", "tuple_model", TupleModel), ("node_model", "five_rows", FiveRows),
          ("encoder", "no_out_dim", NoOutDim), ("regularizer", "vector_term", VectorTerm),
          ("regularizer", "none_term", NoneTerm), ("task", "per_node_loss", PerNodeLoss),
          ("trainer", "list_trainer", ListTrainer)]


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The default registry's components (copied: candidates are not shared) plus the
    broken ones, registered as a plugin would."""
    reg = Registry()
    for comp in default_registry().list():
        reg.add_component(dataclasses.replace(comp, candidates=list(comp.candidates)))
    plugin = PluginRegistrar("broken", "broken-dist", "0.1")
    for kind, name, factory in BROKEN:
        plugin.add(kind, name, factory)
    assert plugin.refused == []  # broken at run time only: registration accepts them all
    plugin.commit(reg)
    return reg


def config(**sections) -> dict:
    """A small GCN on the tiny dataset, two epochs; ``sections`` replace its parts
    (None removes one)."""
    base = {"dataset": {"name": "tiny"}, "model": {"name": "gcn", "hidden": 4},
            "trainer": {"name": "supervised", "epochs": 2}}
    base.update(sections)
    return {k: v for k, v in base.items() if v is not None}


def test_the_tiny_experiment_runs_with_correct_components(registry):
    summary = zoo.build(config(), registry=registry).fit(seeds=1)
    assert 0.0 <= summary["metrics"]["val_accuracy"]["mean"] <= 1.0


@pytest.mark.parametrize("sections, expected", [
    ({"model": {"name": "tuple_model"}},
     ["node_model 'tuple_model' returned a tuple of 2 (a tensor of shape (36, 3)",
      "it must return a tensor or a zoo.ModelOutput"]),
    ({"model": {"name": "five_rows"}},
     ["node_model 'five_rows' returned a tensor of shape (5, 3) as its output",
      "one row per output node (36)"]),
    ({"model": None, "encoder": {"name": "no_out_dim"}},
     ["encoder 'no_out_dim' (broken-dist 0.1) broke its contract",
      "an nn.Module with an int attribute out_dim", "it returned a NoOutDim"]),
    ({"regularizers": [{"name": "vector_term"}]},
     ["regularizer 'vector_term' returned a tensor of shape (36,) as its term",
      "it must return a 0-dim tensor"]),
    ({"regularizers": [{"name": "none_term"}]},
     ["regularizer 'none_term' returned None as its term", "it must return a 0-dim tensor"]),
    ({"task": {"name": "per_node_loss"}},
     ["task 'per_node_loss' returned a tensor of shape (12,) as its loss",
      "it must return a 0-dim tensor"]),
    ({"trainer": {"name": "list_trainer"}},
     ["trainer 'list_trainer' returned a list of 2 (a float, a float) from fit()",
      "it must return a dict of metric names to numbers"]),
    ({"dataset": {"name": "not_graph_data"}},
     ["dataset 'not_graph_data' (broken-dist 0.1) broke its contract",
      "a dataset must return a zoo.GraphData", "it returned a dict"]),
], ids=["node_model_tuple", "node_model_rows", "encoder_out_dim", "regularizer_vector",
        "regularizer_none", "task_loss_vector", "trainer_fit_list", "dataset_not_graph_data"])
def test_broken_contract_is_a_contract_error_naming_component_and_value(registry, sections,
                                                                        expected):
    with pytest.raises(ContractError) as err:
        zoo.build(config(**sections), registry=registry).fit(seeds=1)
    message = str(err.value)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message, message


def run_breaker(root: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``zoo run`` of the tiny experiment with the breaker plugin's tuple model, into
    ``root/run``."""
    write_dist(root, "zoo-breaker", "1.0", "breaker", "zp_contract_breaker", CONTRACT_BREAKER)
    cfg = root / "broken.yaml"
    cfg.write_text("dataset: {name: tiny_breaker}\nmodel: {name: tuple_model}\n"
                   "trainer: {name: supervised, epochs: 2}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("ZOO_PLUGINS", "ZOO_STRICT_PLUGINS")}
    return subprocess.run([sys.executable, "-m", "zoo.cli", "run", str(cfg), *overrides,
                           "--out", str(root / "run"), "--quiet"], capture_output=True,
                          text=True, cwd=root, env={**env, "PYTHONPATH": str(root)},
                          timeout=300)


def test_cli_contract_error_exits_1_with_one_line_and_no_summary(tmp_path):
    out = run_breaker(tmp_path)
    out_dir = tmp_path / "run"
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines()
             if line.strip() and not line.startswith("zoo: warning: ")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("zoo: error: node_model 'tuple_model' returned a tuple of 2")
    assert not (out_dir / "summary.json").exists()


def test_cli_contract_error_leaves_no_run_so_the_same_out_works_after_the_fix(tmp_path):
    assert run_breaker(tmp_path).returncode == 1
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    fixed = run_breaker(tmp_path, "model.name=gcn")
    assert fixed.returncode == 0, fixed.stderr
    assert (tmp_path / "run" / "summary.json").is_file()


def test_a_component_failing_at_build_is_quoted_in_one_short_line():
    """A component whose constructor raises pages of text (a huge repr, a multi-line
    message) is reported in one line of bounded length, naming it and the error type."""
    from zoo.api import Experiment

    def loud_value_error():
        raise ValueError("bad setting\n" + "x" * 10_000)

    def loud_crash():
        raise RuntimeError("line one\nline two " + "y" * 10_000)

    with pytest.raises(zoo.ConfigError) as config_error:
        Experiment._probe("the model", loud_value_error)
    with pytest.raises(ContractError) as contract_error:
        Experiment._probe("trainer", loud_crash)
    for message, start in [(str(config_error.value),
                            "the model cannot be built with this config: bad setting x"),
                           (str(contract_error.value),
                            "trainer failed while being built: RuntimeError: line one "
                            "line two y")]:
        assert message.startswith(start)
        assert "\n" not in message and len(message) < 400 and message.endswith("…")
