"""Batch sources ``full_graph`` (with and without a labeled batch size) and ``items``
(plain item batches for graph-free models, on a dataset without a graph)."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.errors import ConfigError


def source(registry, section: dict, data, graph=None):
    built = registry.build("batch_source", section)
    built.bind(data, graph, zoo.Runtime())
    return built


def test_full_graph_covers_every_labeled_node_once_per_epoch(registry):
    exp = zoo.build({"dataset": {"name": "communities"}, "model": {"name": "gcn"},
                     "trainer": {"name": "supervised"}}, registry=registry)
    data = exp.data
    whole = list(source(registry, {"name": "full_graph"}, data, exp.graph).epoch(
        data.labels, data.train_mask))
    assert len(whole) == 1 and whole[0].graph is exp.graph and whole[0].loss_norm is None
    labeled = data.train_mask.nonzero().squeeze(1)
    assert torch.equal(whole[0].loss_rows, labeled)
    batches = list(source(registry, {"name": "full_graph", "batch_size": 4}, data,
                          exp.graph).epoch(data.labels, data.train_mask))
    assert [b.loss_rows.numel() for b in batches] == [4, 4, 4, 3]
    assert sorted(torch.cat([b.loss_rows for b in batches]).tolist()) == labeled.tolist()


def test_items_batches_cover_the_labeled_items_and_infer_keeps_their_order(registry):
    data = registry.build("dataset", {"name": "items"})
    items = source(registry, {"name": "items", "batch_size": 8, "infer_batch_size": 7}, data)
    batches = list(items.epoch(data.labels, data.train_mask))
    assert all(b.graph is None and b.reg_graph is None for b in batches)
    ids = torch.cat([b.node_ids for b in batches])
    assert sorted(ids.tolist()) == data.train_mask.nonzero().squeeze(1).tolist()
    for b in batches:
        assert torch.equal(b.inputs, data.features[b.node_ids])
        assert torch.equal(b.labels, data.labels[b.node_ids])
    rows = items.infer(lambda graph, x: zoo.ModelOutput(x * 2, x))
    assert torch.equal(rows.logits, data.features * 2)  # every item, in order


def test_an_encoder_trains_on_items_without_a_graph(registry):
    cfg = {"dataset": {"name": "items"}, "encoder": {"name": "mlp", "hidden": 16},
           "trainer": {"name": "supervised", "epochs": 30,
                       "batches": {"name": "items", "batch_size": 16}}}
    summary = zoo.build(cfg, registry=registry).fit(seeds=1)
    assert summary["metrics"]["test_accuracy"]["mean"] > 0.8  # three clear clusters


def test_packing_needs_a_graph(registry):
    cfg = {"dataset": {"name": "items"}, "encoder": {"name": "mlp", "hidden": 16},
           "regularizers": [{"name": "distance"}],
           "trainer": {"name": "supervised", "epochs": 2,
                       "batches": {"name": "packed_neighbors", "batch_size": 16}}}
    with pytest.raises(ConfigError, match="needs a graph to pack neighbours from"):
        zoo.build(cfg, registry=registry).fit(seeds=1)
