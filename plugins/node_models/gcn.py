"""Node model ``gcn``: graph convolutional network (Kipf & Welling, ICLR 2017)."""

from __future__ import annotations

from typing import Literal

import dgl
import torch
from dgl.nn import GraphConv
from torch import nn

import zoo
from zoo.data import ModelOutput
from zoo_plugins.layers import Linear, dropout, make_activation

Activation = Literal["relu", "elu", "leaky_relu", "gelu", "tanh", "sigmoid", "identity"]


class GCN(nn.Module):
    """Graph convolutional network (Kipf & Welling 2017) on DGL's GraphConv.

    Each layer is dropout -> linear -> normalized neighbourhood sum (GraphConv without
    its own weight) -> activation. Projecting before aggregating is the cheap order
    (A(XW) = (AX)W) and lets the first layer multiply the sparse features directly,
    with dropout on their non-zeros only.

    Args:
        hidden: units in each hidden layer.
        layers: number of graph convolutions.
        dropout: dropout before each layer (on the non-zeros for sparse features).
        self_loops: add a self-loop to every node (the renormalization trick).
        norm: GraphConv normalization: 'both' (symmetric), 'right' (mean) or 'none'.
        activation: non-linearity between layers.
        edge_weights: weight messages by the graph's edata['weight'].
    """

    def __init__(self, in_dim: int, out_dim: int, *, hidden: int = 16, layers: int = 2,
                 dropout: float = 0.5, self_loops: bool = True,
                 norm: Literal["both", "right", "none"] = "both",
                 activation: Activation = "relu", edge_weights: bool = False) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError("gcn needs layers >= 1")
        sizes = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.linears = nn.ModuleList(Linear(a, b, bias=False)
                                     for a, b in zip(sizes[:-1], sizes[1:]))
        self.convs = nn.ModuleList(GraphConv(b, b, norm=norm, weight=False, bias=True,
                                             allow_zero_in_degree=True) for b in sizes[1:])
        self.act = make_activation(activation)
        self.p = dropout
        self.self_loops = self_loops
        self.edge_weights = edge_weights
        self._graph_key: int | None = None
        self._graph: dgl.DGLGraph | None = None

    def _prepare(self, graph: dgl.DGLGraph) -> dgl.DGLGraph:
        # Adding self-loops copies the graph; do it once per input graph, not per epoch.
        if self._graph_key != id(graph):
            g = graph
            if self.self_loops:
                g = dgl.add_self_loop(dgl.remove_self_loop(graph))
                if "weight" in g.edata:
                    g.edata["weight"][-graph.num_nodes():] = 1.0
            self._graph, self._graph_key = g, id(graph)
        return self._graph  # type: ignore[return-value]

    def forward(self, graph: dgl.DGLGraph, x: torch.Tensor) -> ModelOutput:
        g = self._prepare(graph)
        weight = g.edata.get("weight") if self.edge_weights else None
        embedding = x
        for i, (linear, conv) in enumerate(zip(self.linears, self.convs)):
            if i == len(self.convs) - 1:
                embedding = x
            x = conv(g, linear(dropout(x, self.p, self.training)), edge_weight=weight)
            if i < len(self.convs) - 1:
                x = self.act(x)
        return ModelOutput(logits=x, embedding=embedding)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("node_model", "gcn", GCN)
