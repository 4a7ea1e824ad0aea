"""Batch source ``neighbor_sampler``: what its blocks carry, that a batch of full
neighbourhoods is exactly a full-graph step, what regularizers see, and the checks that
refuse a model it cannot feed before anything runs."""

from __future__ import annotations

import dgl
import pytest
import torch

import zoo
from zoo.engine import seed_everything, training_step
from zoo.errors import ConfigError


def sampler(**kw) -> dict:
    return {"name": "neighbor_sampler", "fanouts": [4, 4], "batch_size": 16, **kw}


def config(model: str = "gcn", batches: dict | None = None, **trainer) -> dict:
    return {"dataset": {"name": "communities"},
            "model": {"name": model, "hidden": 16, "dropout": 0.0},
            "trainer": {"name": "supervised", "epochs": 40, "optimizer": {"lr": 0.05},
                        "batches": batches or sampler(), **trainer}}


def bound(registry, section: dict, exp):
    source = registry.build("batch_source", section)
    source.bind(exp.data, exp.graph, zoo.Runtime())
    return source


def test_blocks_carry_whole_graph_degrees_and_weights_and_respect_fanouts(registry):
    exp = zoo.build(config(), registry=registry)
    source = bound(registry, sampler(fanouts=[2, 3], batch_size=10), exp)
    data, graph = exp.data, exp.graph
    degree = torch.bincount(graph.edges()[1], minlength=graph.num_nodes()).float()
    batches = list(source.epoch(data.labels, data.train_mask))
    assert len(batches) == 2  # 15 labeled seeds in batches of 10
    seen = torch.cat([b.node_ids for b in batches])
    assert sorted(seen.tolist()) == sorted(data.train_mask.nonzero().squeeze(1).tolist())
    for batch in batches:
        first, last = batch.graph
        assert torch.equal(last.dstdata[dgl.NID], batch.node_ids)
        assert batch.inputs.shape[0] == first.num_src_nodes()
        for block, fanout in zip(batch.graph, (2, 3)):
            assert torch.equal(block.srcdata["in_degree"], degree[block.srcdata[dgl.NID]])
            assert torch.equal(block.dstdata["in_degree"], degree[block.dstdata[dgl.NID]])
            assert int(block.in_degrees().max()) <= fanout
            assert torch.equal(block.edata["weight"], graph.edata["weight"][block.edata[dgl.EID]])
        assert batch.reg_graph is None  # not asked for


@pytest.mark.parametrize("model", ["gcn", "sage"])
def test_a_batch_of_full_neighbourhoods_is_exactly_the_full_graph_step(registry, model):
    exp = zoo.build(config(model), registry=registry)
    terms = []
    for section in ({"name": "full_graph"},
                    sampler(fanouts=[-1, -1], batch_size=1000, seeds="labeled")):
        seed_everything(0)
        net = exp.build_model()
        net.eval()  # the same forward on both sides: no dropout masks to differ
        batch = next(iter(bound(registry, section, exp).epoch(exp.data.labels,
                                                               exp.data.train_mask)))
        out = net(batch.graph, batch.inputs)
        terms.append(exp.task.loss(out, batch))
    # Different kernels (a block is a different sparse matrix): equal up to rounding.
    torch.testing.assert_close(terms[1], terms[0], rtol=1e-5, atol=1e-6)


def test_infer_over_blocks_equals_the_whole_graph_forward(registry):
    exp = zoo.build(config(), registry=registry)
    net = exp.build_model()
    net.eval()
    with torch.no_grad():
        whole = bound(registry, sampler(), exp).infer(net)
        blocks = bound(registry, sampler(infer="blocks", infer_batch_size=50), exp).infer(net)
    torch.testing.assert_close(blocks.logits, whole.logits, rtol=1e-5, atol=1e-6)


def test_regularizers_see_the_edges_among_the_seeds(registry):
    exp = zoo.build(config(), registry=registry)
    source = bound(registry, sampler(seeds="all", batch_size=40), exp)
    data, graph = exp.data, exp.graph
    batches = list(source.epoch(data.labels, data.train_mask, with_reg_graph=True))
    assert len(batches) == 3 and sum(b.node_ids.numel() for b in batches) == 120
    for batch in batches:
        sub = batch.reg_graph
        assert sub.num_nodes() == batch.node_ids.numel()
        src, dst = sub.edges()
        ids = batch.node_ids
        assert bool(graph.has_edges_between(ids[src], ids[dst]).all())
        inside = torch.isin(graph.edges()[0], ids) & torch.isin(graph.edges()[1], ids)
        assert sub.num_edges() == int(inside.sum())  # every edge among the seeds
        # Every node seeds with 'all'; the loss covers the labeled ones, scaled.
        assert torch.equal(batch.loss_rows, data.train_mask[ids].nonzero().squeeze(1))
        assert batch.loss_norm == pytest.approx(15 / 120 * ids.numel())


@pytest.mark.parametrize("model", ["gcn", "sage"])
def test_sampled_training_learns(registry, model):
    summary = zoo.build(config(model), registry=registry).fit(seeds=1)
    assert summary["metrics"]["test_accuracy"]["mean"] > 0.6  # chance is 1/3


@pytest.mark.parametrize("change, message", [
    ({"model": {"name": "commnet", "hidden": 8}}, "feeds sampled blocks, which node_model "
                                                  "'commnet' cannot run on"),
    ({"model": None, "encoder": {"name": "mlp"}}, "which an encoder-only model cannot run on"),
    ({"trainer": {"batches": sampler(fanouts=[5, 5, 5])}},
     r"trainer.batches.fanouts: 3 fanout\(s\) for node_model 'gcn', which has 2 layers"),
    ({"trainer": {"batches": sampler(fanouts=[5, 0])}}, "fanouts must be a non-empty list"),
])
def test_a_model_the_sampler_cannot_feed_is_refused_at_build(registry, change, message):
    cfg = config()
    for key, value in change.items():
        if value is None:
            cfg.pop(key)
        elif key == "trainer":
            cfg["trainer"] = {**cfg["trainer"], **value}
        else:
            cfg[key] = value
    with pytest.raises(ConfigError, match=message):
        zoo.build(cfg, registry=registry)


def test_a_step_on_sampled_blocks_reports_the_regularizer_by_name(registry):
    cfg = config(batches=sampler(seeds="all", batch_size=60))
    cfg["regularizers"] = [{"name": "distance", "multiplier": 0.5}]
    exp = zoo.build(cfg, registry=registry)
    source = bound(registry, cfg["trainer"]["batches"], exp)
    net, regs = exp.build_model(), exp.build_regularizers()
    batch = next(iter(source.epoch(exp.data.labels, exp.data.train_mask, True)))
    terms = training_step(net, batch, exp.task, {"reg_distance": regs[0]},
                          torch.optim.Adam(net.parameters()))
    assert set(terms) == {"loss", "reg_distance"} and float(terms["reg_distance"]) > 0
