"""``sage``: each aggregator against a hand computation, full-neighbour blocks against
the whole graph, sparse against dense features, and learning a tiny graph task on the
whole graph and on re-sampled blocks."""

from __future__ import annotations

import sys
from pathlib import Path

import dgl
import pytest
import torch
from torch import nn
from torch.testing import assert_close

import zoo
from zoo.contracts import ModelOutput
from zoo_plugins.node_models.sage import SAGE

sys.path.insert(0, str(Path(__file__).parent))
from graphs import (  # noqa: E402
    assert_full_blocks_give_the_whole_graph_rows,
    assert_needs_one_block_per_layer,
    assert_sparse_equals_dense_on_both_paths,
    assert_trains_on_sampled_blocks_with_sparse_features,
    random_graph,
    sampled_blocks,
    without_edges,
)

AGGREGATORS = ["mean", "gcn", "pool"]


class ResampledBlocks(nn.Module):
    """Runs ``model`` on blocks for all nodes, freshly sampled with ``fanouts`` at every
    training call and with every neighbour in eval mode, as a mini-batch trainer would."""

    def __init__(self, model: nn.Module, fanouts: list[int]) -> None:
        super().__init__()
        self.model, self.fanouts = model, fanouts

    def forward(self, graph: dgl.DGLGraph, x: torch.Tensor) -> ModelOutput:
        fanouts = self.fanouts if self.training else [-1] * len(self.fanouts)
        input_nodes, blocks = sampled_blocks(graph, torch.arange(graph.num_nodes()),
                                             fanouts=fanouts)
        return self.model(blocks, x[input_nodes])


def test_supports_blocks_and_is_registered():
    assert SAGE.supports_blocks is True and SAGE(4, 2, layers=3).num_layers == 3
    comp = zoo.show("sage")
    assert comp.kind == "node_model" and comp.params["aggregator"].default == "mean"
    assert comp.params["aggregator"].type_name() == "'mean' | 'gcn' | 'pool'"
    assert all(p.doc for p in comp.params.values())


def test_needs_a_layer_and_one_block_per_layer():
    with pytest.raises(ValueError, match="layers >= 1"):
        SAGE(4, 2, layers=0)
    assert_needs_one_block_per_layer(SAGE, random_graph(weights=True))


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_one_layer_matches_a_hand_computation(aggregator):
    # Node 2 hears from 0 and 1 (weights 0.5 and 2), node 0 from 2, node 3 from no one.
    g = dgl.graph((torch.tensor([0, 1, 2]), torch.tensor([2, 2, 0])), num_nodes=4)
    g.edata["weight"] = torch.tensor([0.5, 2.0, 1.0])
    x = torch.randn(4, 3)
    model = SAGE(3, 2, layers=1, dropout=0.0, aggregator=aggregator, edge_weights=True).eval()
    layer = model.convs[0]
    with torch.no_grad():
        layer.bias.uniform_(-1, 1)
    m = x  # the messages are the weighted (projected) neighbour states
    if aggregator == "pool":
        m = torch.relu(layer.pool(x))
    elif aggregator in ("mean", "gcn"):
        m = x @ layer.fc_neigh.weight
    into = torch.zeros(4, m.shape[1])
    if aggregator == "pool":
        into[2] = torch.maximum(0.5 * m[0], 2.0 * m[1])
        into[0] = m[2]
        expected = x @ layer.fc_self.weight + into @ layer.fc_neigh.weight
    elif aggregator == "mean":
        into[2] = (0.5 * m[0] + 2.0 * m[1]) / 2
        into[0] = m[2]
        expected = x @ layer.fc_self.weight + into
    else:
        into[2] = (0.5 * m[0] + 2.0 * m[1] + m[2]) / 3
        into[0] = (m[2] + m[0]) / 2
        into[1], into[3] = m[1], m[3]
        expected = into
    out = model(g, x)
    assert_close(out.logits, expected + layer.bias, rtol=1e-5, atol=1e-6)
    assert_close(out.embedding, x)


@pytest.mark.parametrize("edge_weights", [False, True])
@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_full_neighbour_blocks_give_the_whole_graph_rows(aggregator, edge_weights):
    g = random_graph(weights=True)
    torch.manual_seed(0)
    x = torch.randn(g.num_nodes(), 5)
    model = SAGE(5, 3, hidden=8, layers=3, aggregator=aggregator, normalize=True,
                 edge_weights=edge_weights).eval()
    seeds = torch.tensor([29, 2, 0, 11, 6, 17])  # 29 is isolated; 2 and 6 have self-loops
    out = assert_full_blocks_give_the_whole_graph_rows(model, g, x, seeds, layers=3)
    assert out.logits.shape == (6, 3) and out.embedding.shape == (6, 8)


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_full_neighbour_blocks_on_the_neighbour_task(neighbour_task, aggregator):
    g, x, _ = neighbour_task
    model = SAGE(8, 2, aggregator=aggregator).eval()
    seeds = torch.arange(1, g.num_nodes(), 4)
    input_nodes, blocks = sampled_blocks(g, seeds)
    assert_close(model(blocks, x[input_nodes]).logits, model(g, x).logits[seeds],
                 rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("aggregator", AGGREGATORS)
@pytest.mark.parametrize("layers", [1, 2])
def test_sparse_features_equal_dense_on_both_paths(aggregator, layers):
    g = random_graph(weights=True)
    x = torch.rand(g.num_nodes(), 20)
    x[x < 0.8] = 0.0
    model = SAGE(20, 3, hidden=6, layers=layers, aggregator=aggregator).eval()
    assert_sparse_equals_dense_on_both_paths(model, g, x, torch.tensor([3, 29, 1]), layers)


def test_normalize_puts_hidden_states_on_the_unit_sphere():
    g = random_graph(weights=True)
    x = torch.randn(g.num_nodes(), 5)
    out = SAGE(5, 3, hidden=8, normalize=True).eval()(g, x)
    assert_close(out.embedding.norm(dim=-1), torch.ones(g.num_nodes()))
    assert not torch.allclose(out.logits.norm(dim=-1), torch.ones(g.num_nodes()))


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_training_on_sampled_blocks_with_sparse_features_backpropagates(aggregator):
    g = random_graph(weights=True)
    x = (torch.rand(g.num_nodes(), 20) > 0.8).float()
    model = SAGE(20, 3, hidden=6, aggregator=aggregator, dropout=0.5).train()
    assert_trains_on_sampled_blocks_with_sparse_features(model, g, x, out_dim=3)


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_learns_a_task_that_needs_the_neighbours(neighbour_task, held_out_accuracy,
                                                 aggregator):
    g, x, labels = neighbour_task
    torch.manual_seed(0)
    model = SAGE(8, 2, hidden=16, dropout=0.0, aggregator=aggregator)
    assert held_out_accuracy(model, g, x, labels) >= 0.9
    # Without edges only the informative half can be right: an MLP's accuracy.
    torch.manual_seed(0)
    model = SAGE(8, 2, hidden=16, dropout=0.0, aggregator=aggregator)
    assert held_out_accuracy(model, without_edges(g), x, labels) < 0.85


@pytest.mark.parametrize("aggregator", AGGREGATORS)
def test_learns_the_task_on_resampled_blocks(neighbour_task, held_out_accuracy, aggregator):
    g, x, labels = neighbour_task
    assert float(g.in_degrees().float().mean()) > 8  # a fanout of 4 leaves most out
    torch.manual_seed(0)
    dgl.seed(0)
    model = ResampledBlocks(SAGE(8, 2, hidden=16, dropout=0.0, aggregator=aggregator), [4, 4])
    assert held_out_accuracy(model, g, x, labels) >= 0.9
