"""Tests of the synthetic ``sbm`` dataset: determinism, graph, homophily, split, features,
errors, and a GCN trained on it through ``zoo.build``."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from zoo_plugins.datasets import sbm as sbm_module
from zoo_plugins.datasets.sbm import sbm

import zoo
from zoo.errors import ConfigError
from zoo.plugins import PluginManager
from zoo.registry import Registry

REPO = Path(__file__).resolve().parents[2]
SMALL = {"num_nodes": 3000, "avg_degree": 8.0, "num_classes": 4, "seed": 0}


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The installed components, with ``sbm`` registered by its own ``zoo_register`` hook.

    Not the default registry as it is: a stale ``zoo.egg-info`` in the checkout (an old
    build's metadata, first on ``sys.path`` under ``python -m pytest``) can hide entry
    points added since; ``test_the_entry_point_is_declared`` pins the declaration.
    """
    manager = PluginManager(Registry(), warn=False)
    for comp in zoo.default_registry().list():
        if (comp.kind, comp.name) != ("dataset", "sbm"):
            manager.registry.add_component(comp)
    manager.load_module(sbm_module, "sbm")
    return manager.registry


def test_the_entry_point_is_declared() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["zoo.plugins"]["sbm"] == "zoo_plugins.datasets.sbm"


def _edge_keys(data) -> torch.Tensor:
    src, dst = data.graph.edges()
    return src * data.num_nodes + dst


def _same(a, b) -> bool:
    return (torch.equal(a.graph.edges()[0], b.graph.edges()[0])
            and torch.equal(a.graph.edges()[1], b.graph.edges()[1])
            and torch.equal(a.features, b.features) and torch.equal(a.labels, b.labels)
            and all(torch.equal(getattr(a, m), getattr(b, m))
                    for m in ("train_mask", "val_mask", "test_mask")))


def test_a_seed_gives_the_same_dataset_bit_for_bit_and_another_seed_another() -> None:
    a, b, other = sbm(**SMALL), sbm(**SMALL), sbm(**{**SMALL, "seed": 1})
    assert _same(a, b)
    assert not torch.equal(a.labels, other.labels)
    assert not torch.equal(a.features, other.features)
    assert not torch.equal(_edge_keys(a).sort().values, _edge_keys(other).sort().values)
    assert not torch.equal(a.train_mask, other.train_mask)


def test_parts_draw_from_streams_of_their_own() -> None:
    base = sbm(**SMALL)
    more_features = sbm(**SMALL, num_features=7, feature_signal=3.0)
    assert torch.equal(_edge_keys(base), _edge_keys(more_features))
    assert torch.equal(base.labels, more_features.labels)
    assert torch.equal(base.test_mask, more_features.test_mask)
    denser = sbm(**{**SMALL, "avg_degree": 12.0, "homophily": 0.3})
    assert torch.equal(base.features, denser.features)
    assert torch.equal(base.train_mask, denser.train_mask)


def test_the_graph_is_symmetric_simple_and_has_the_asked_degree() -> None:
    data = sbm(**SMALL)
    src, dst = data.graph.edges()
    assert src.dtype == torch.int64 and data.graph.idtype == torch.int64
    assert not torch.any(src == dst)
    keys = _edge_keys(data)
    assert keys.unique().numel() == keys.numel()  # no duplicate edge
    reverse = torch.sort(dst * data.num_nodes + src).values
    assert torch.equal(torch.sort(keys).values, reverse)  # every edge in both directions
    assert data.graph.num_edges() == 2 * round(8.0 * 3000 / 2)
    assert data.graph.in_degrees().float().mean().item() == pytest.approx(8.0, rel=0.01)
    assert data.extra["avg_degree"] == pytest.approx(8.0, rel=0.01)
    assert data.name == "sbm-3000"


@pytest.mark.parametrize("homophily", [0.0, 0.25, 0.6, 0.9, 1.0])
def test_the_fraction_of_edges_inside_communities_is_the_homophily(homophily: float) -> None:
    data = sbm(**SMALL, homophily=homophily)
    src, dst = data.graph.edges()
    measured = (data.labels[src] == data.labels[dst]).float().mean().item()
    assert measured == pytest.approx(homophily, abs=0.005)
    assert data.extra["homophily"] == pytest.approx(measured)


def test_communities_are_balanced_and_edges_spread_over_them() -> None:
    data = sbm(**{**SMALL, "num_nodes": 3001})
    assert torch.bincount(data.labels).tolist() == [751, 750, 750, 750]
    src, dst = data.graph.edges()
    # Inter-community edges are spread evenly over the 6 pairs of communities.
    across = data.labels[src] != data.labels[dst]
    pair = data.labels[src][across] * 4 + data.labels[dst][across]
    counts = torch.bincount(pair, minlength=16).float()
    counts = counts[counts > 0]
    assert counts.numel() == 12 and counts.std() / counts.mean() < 0.15


def test_a_complete_graph_can_be_asked_for() -> None:
    # 30 nodes, 5 communities of 6: 75 of the 435 pairs lie within a community.
    data = sbm(num_nodes=30, avg_degree=29.0, num_classes=5, homophily=75 / 435,
               train_per_class=1, val_size=5, test_size=5)
    assert data.graph.num_edges() == 30 * 29
    assert torch.all(data.graph.in_degrees() == 29)


def test_split_sizes_and_disjoint_masks() -> None:
    data = sbm(**SMALL, train_per_class=30, val_size=200, test_size=400)
    masks = torch.stack([data.train_mask, data.val_mask, data.test_mask])
    assert masks.dtype == torch.bool and masks.int().sum(0).max() == 1
    assert masks.sum(1).tolist() == [120, 200, 400]
    assert torch.bincount(data.labels[data.train_mask]).tolist() == [30] * 4
    assert data.features.dtype == torch.float32 and not data.features.is_sparse
    assert data.features.shape == (3000, 32) and data.labels.dtype == torch.int64
    default = sbm(num_nodes=5000)
    assert default.describe() == ("sbm-5000: 5000 nodes, 50000 edges, 32 features, "
                                  "5 classes, split 100/500/1000")


def _nearest_mean_accuracy(data) -> float:
    x, y = data.features, data.labels
    means = torch.stack([x[data.train_mask & (y == c)].mean(0)
                         for c in range(data.num_classes)])
    pred = torch.cdist(x[data.test_mask], means).argmin(1)
    return (pred == y[data.test_mask]).float().mean().item()


def test_features_carry_as_much_label_information_as_asked() -> None:
    params = {**SMALL, "train_per_class": 100, "test_size": 1500}
    strong = _nearest_mean_accuracy(sbm(**params, feature_signal=3.0))
    weak = _nearest_mean_accuracy(sbm(**params, feature_signal=1.0))
    noise = _nearest_mean_accuracy(sbm(**params, feature_signal=0.0))
    assert strong > 0.9
    assert 0.4 < weak < strong
    assert abs(noise - 0.25) < 0.06  # chance, for 4 classes
    means = sbm(**SMALL).extra["class_means"]  # orthonormal when classes <= features
    assert torch.allclose(means @ means.T, torch.eye(4), atol=1e-5)


@pytest.mark.parametrize(("params", "match"), [
    ({"num_nodes": 100, "avg_degree": 100.0}, "avg_degree=100 needs 5000 edges"),
    ({"num_nodes": 100, "avg_degree": 30.0, "homophily": 1.0, "num_classes": 10},
     "lower homophily or avg_degree"),
    ({"num_nodes": 100, "avg_degree": 80.0, "homophily": 0.0, "num_classes": 2},
     "raise homophily"),
    ({"num_nodes": 100, "num_classes": 5, "train_per_class": 21}, "train_per_class=21"),
    ({"num_nodes": 1000, "num_classes": 5}, "lower train_per_class, val_size or test_size"),
    ({"num_nodes": 3, "num_classes": 5, "avg_degree": 1.0}, "num_classes=5 is more than"),
])
def test_impossible_parameters_raise_a_config_error_with_the_fix(params, match) -> None:
    with pytest.raises(ConfigError, match=match):
        sbm(**params)


def test_gcn_trains_on_sbm_through_zoo_build(registry: Registry) -> None:
    cfg = {"dataset": {"name": "sbm", "num_nodes": 2000, "avg_degree": 10,
                       "num_classes": 4, "homophily": 0.9, "val_size": 300, "test_size": 500},
           "model": {"name": "gcn", "hidden": 16},
           "trainer": {"name": "supervised", "epochs": 20}}
    exp = zoo.build(cfg, registry=registry)
    assert exp.data.name == "sbm-2000"
    summary = exp.fit(seeds=[0])
    assert summary["metrics"]["test_accuracy"]["mean"] > 0.6  # chance is 0.25
    with pytest.raises(ConfigError, match="dataset.num_nodes"):
        zoo.build({**cfg, "dataset": {"name": "sbm", "num_nodes": 1}}, registry=registry)


def test_zoo_show_documents_every_parameter(registry: Registry) -> None:
    params = registry.get("dataset", "sbm").params
    assert set(params) >= {"num_nodes", "avg_degree", "num_classes", "homophily",
                           "num_features", "feature_signal", "train_per_class", "val_size",
                           "test_size", "seed"}
    assert all(p.doc for p in params.values())
    assert np.isclose(params["homophily"].default, 0.6)
