"""The Python API: zoo.build(...) with overrides, .data, .model, .fit(), .evaluate()."""

from __future__ import annotations


import pytest
import torch

import zoo
from zoo.errors import ConfigError
from zoo_plugins.datasets.fetch import mirror_file

needs_cora = pytest.mark.skipif(
    mirror_file("ind.cora.x", "planetoid") is None,
    reason="needs the local Cora mirror")


def test_build_validates_before_anything_runs():
    with pytest.raises(ConfigError, match="model.hiden: unknown key"):
        zoo.build("gcn_cora", **{"model.hiden": 3})
    with pytest.raises(ConfigError, match="trainer.optimizer.lr: expected float"):
        zoo.build("gcn_cora", trainer={"optimizer": {"lr": "fast"}})


def test_list_with_wildcards():
    assert [c.name for c in zoo.list("gc*")] == ["gcn"]
    assert all(c.kind == "encoder" for c in zoo.list(kind="encoder"))
    assert zoo.show("gcn").params["hidden"].default == 16


@needs_cora
def test_build_fit_evaluate(tmp_path):
    exp = zoo.build("gcn_cora", trainer={"epochs": 30}, **{"model.hidden": 32})
    assert exp.config["model"]["hidden"] == 32 and exp.config["trainer"]["epochs"] == 30
    assert exp.data.num_nodes == 2708 and exp.data.features.is_sparse
    assert isinstance(exp.model, torch.nn.Module)
    summary = exp.fit(seeds=[3], out=tmp_path / "run")
    assert summary["seeds"] == [3]
    assert summary["metrics"]["test_accuracy"]["mean"] > 0.6
    metrics = exp.evaluate()
    # The model after fit holds the best-validation weights the summary reports.
    assert metrics["val_accuracy"] == pytest.approx(summary["metrics"]["val_accuracy"]["mean"])
    assert (tmp_path / "run" / "summary.json").is_file()


@needs_cora
def test_dict_config_and_seed_reproducibility():
    cfg = {"dataset": {"name": "planetoid", "subset": "cora"},
           "encoder": {"name": "mlp", "hidden": 16},
           "trainer": {"name": "supervised", "epochs": 20}}
    a = zoo.build(cfg).fit(seeds=[7])
    b = zoo.build(cfg).fit(seeds=[7])
    assert a["metrics"]["test_accuracy"]["values"] == b["metrics"]["test_accuracy"]["values"]


def test_switching_a_component_starts_its_section_afresh():
    exp = zoo.build("mlp_cora", ["encoder.name=mlp", "encoder.hidden=7"])
    assert exp.config["encoder"]["hidden"] == 7  # same component: the file's keys stay
    from zoo.config import load_config

    raw = load_config("gcn_cora", ["model.name=other", "model.depth=3"]).raw
    assert raw["model"] == {"name": "other", "depth": 3}
