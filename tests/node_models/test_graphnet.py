"""``graphnet``: shapes for every aggregation, batched graphs with an edgeless member,
the edge-weight input, and learning a tiny graph task."""

from __future__ import annotations

import dgl
import pytest
import torch

import zoo
from zoo_plugins.node_models.graphnet import GraphNet


@pytest.mark.parametrize("agg", ["sum", "mean", "max"])
@pytest.mark.parametrize("blocks", [1, 2])
def test_shapes_for_every_aggregation(agg, blocks):
    g = dgl.graph((torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])), num_nodes=5)
    g.edata["weight"] = torch.tensor([0.5, 1.0, 2.0])
    x = torch.rand(5, 7)
    model = GraphNet(7, 3, hidden=6, blocks=blocks, edge_to_node=agg, node_to_global=agg,
                     edge_to_global=agg)
    for features in (x, x.to_sparse()):
        out = model(g, features)
        assert out.logits.shape == (5, 3) and out.embedding.shape == (5, 6)
        assert torch.isfinite(out.logits).all()


def test_batched_graph_with_an_edgeless_member_and_no_weights():
    g = dgl.batch([dgl.graph((torch.tensor([0]), torch.tensor([1])), num_nodes=2),
                   dgl.graph((torch.tensor([], dtype=torch.long),) * 2, num_nodes=3)])
    x = torch.rand(5, 4, requires_grad=True)
    out = GraphNet(4, 2, hidden=5, blocks=3, edge_to_global="max")(g, x)
    assert out.logits.shape == (5, 2)
    out.logits.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_edge_weights_are_the_input_edge_features():
    g = dgl.graph((torch.tensor([0, 1]), torch.tensor([1, 0])), num_nodes=2)
    x = torch.rand(2, 3)
    model = GraphNet(3, 2, hidden=4, blocks=1, dropout=0.0).eval()
    g.edata["weight"] = torch.tensor([1.0, 1.0])
    a = model(g, x).logits
    g.edata["weight"] = torch.tensor([5.0, 0.1])
    assert not torch.allclose(a, model(g, x).logits)


def test_learns_a_task_that_needs_the_neighbours(neighbour_task, held_out_accuracy):
    g, x, labels = neighbour_task
    torch.manual_seed(0)
    model = GraphNet(8, 2, hidden=16, blocks=2, dropout=0.0)
    # Held-out nodes: without the neighbours only the informative half can be right.
    assert held_out_accuracy(model, g, x, labels, lr=0.01) >= 0.9


def test_registered_as_node_model():
    comp = zoo.show("graphnet")
    assert comp.kind == "node_model"
    assert comp.params["edge_to_node"].type_name() == "'sum' | 'mean' | 'max'"
