"""Node model ``sage``: GraphSAGE (Hamilton, Ying & Leskovec, NeurIPS 2017).

Each layer combines a node's own state with an aggregate of its neighbours' (Algorithm
1 of the paper, with the concatenation written as a sum of two projections,
``W [h_v, a_v] = W_self h_v + W_neigh a_v``). The mean and 'gcn' aggregators are linear,
so the neighbours are projected before they are averaged (``mean(W h) = W mean(h)``):
the messages are ``out``-wide instead of ``in``-wide, and the first layer multiplies
sparse features directly. The pooling aggregator's max is not linear; it projects
after.

The same layers run on the whole graph or on sampled blocks: on a block a node
aggregates its sampled neighbours (the setting GraphSAGE was designed for), so with
every neighbour sampled a block gives exactly the whole graph's rows.
"""

from __future__ import annotations

from typing import Literal

import dgl
import dgl.function as fn
import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.contracts import ModelOutput
from zoo_plugins.layers import (
    Activation,
    Count,
    DropoutRate,
    Linear,
    Units,
    dropout,
    dst_rows,
    make_activation,
    one_block_per_layer,
)

Aggregator = Literal["mean", "gcn", "pool"]


class SAGELayer(nn.Module):
    """One GraphSAGE layer: ``h_v' = W_self h_v + W_neigh AGG({h_u : u -> v}) + b``.

    'gcn' is the paper's GCN variant, ``W mean({h_v} | {h_u}) + b``, with no
    ``W_self``; 'pool' aggregates ``max_u relu(W_pool h_u + b_pool)``, with ``W_pool``
    as wide as the layer's input (as DGL's and PyG's SAGEConv). With edge weights each
    neighbour's message is scaled by its edge's weight before aggregating (as DGL's
    SAGEConv). A node without neighbours aggregates 0.
    """

    def __init__(self, in_dim: int, out_dim: int, *, aggregator: Aggregator) -> None:
        super().__init__()
        self.aggregator = aggregator
        self.pool = Linear(in_dim, in_dim) if aggregator == "pool" else None
        self.fc_self = None if aggregator == "gcn" else Linear(in_dim, out_dim, bias=False)
        self.fc_neigh = Linear(in_dim, out_dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_dim))

    def forward(self, graph: dgl.DGLGraph, x: torch.Tensor,
                weight: torch.Tensor | None) -> torch.Tensor:
        """New states of ``graph``'s dst nodes from ``x``, one row per src node (on a
        whole graph both are all the nodes; in a block the dst nodes come first)."""
        num_dst = graph.num_dst_nodes()
        with graph.local_scope():
            message = fn.copy_u("m", "m")
            if weight is not None:
                graph.edata["w"] = weight
                message = fn.u_mul_e("m", "w", "m")
            if self.aggregator == "pool":
                graph.srcdata["m"] = torch.relu(self.pool(x))
                graph.update_all(message, fn.max("m", "a"))
                out = self.fc_self(dst_rows(x, num_dst)) + self.fc_neigh(graph.dstdata["a"])
            elif self.aggregator == "mean":
                graph.srcdata["m"] = self.fc_neigh(x)
                graph.update_all(message, fn.mean("m", "a"))
                out = self.fc_self(dst_rows(x, num_dst)) + graph.dstdata["a"]
            else:
                z = self.fc_neigh(x)
                graph.srcdata["m"] = z
                graph.update_all(message, fn.sum("m", "a"))
                # Eq. 2 of the paper: the node is averaged in with its neighbours.
                count = graph.in_degrees().to(z.dtype).unsqueeze(-1) + 1.0
                out = (graph.dstdata["a"] + z[:num_dst]) / count
        return out + self.bias


class SAGE(nn.Module):
    """GraphSAGE (Hamilton et al. 2017): own state plus an aggregate of the neighbours'.

    Each layer is dropout -> ``W_self h_v + W_neigh AGG(neighbours) + b`` -> activation
    (not after the last layer) -> L2 normalization if ``normalize``. ``forward`` takes
    the whole graph or a list of sampled blocks, one per layer; on a block a node
    aggregates the neighbours that were sampled. The embedding is the last layer's
    input.

    Args:
        hidden: units in each hidden layer.
        layers: number of GraphSAGE layers (one block each when sampling).
        dropout: dropout before each layer (on the non-zeros for sparse features).
        aggregator: 'mean' of the neighbours, 'gcn' (mean over the neighbours and the
            node itself, one weight matrix) or 'pool' (max of a ReLU layer over the
            neighbours).
        activation: non-linearity between layers.
        normalize: L2-normalize each hidden layer's output (Algorithm 1, line 7); the
            logits are left as they are.
        edge_weights: scale each neighbour's message by edata['weight'].
    """

    supports_blocks = True

    def __init__(self, in_dim: int, out_dim: int, *, hidden: Units = 16, layers: Count = 2,
                 dropout: DropoutRate = 0.5, aggregator: Aggregator = "mean",
                 activation: Activation = "relu", normalize: bool = False,
                 edge_weights: bool = False) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError("sage needs layers >= 1")
        if aggregator not in ("mean", "gcn", "pool"):
            raise ValueError(f"sage aggregator must be 'mean', 'gcn' or 'pool', "
                             f"not {aggregator!r}")
        sizes = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.convs = nn.ModuleList(SAGELayer(a, b, aggregator=aggregator)
                                   for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = make_activation(activation)
        self.p = dropout
        self.normalize = normalize
        self.edge_weights = edge_weights
        self.num_layers = layers  # the blocks forward consumes

    def forward(self, graph: dgl.DGLGraph | list[dgl.DGLGraph], x: torch.Tensor,
                ) -> ModelOutput:
        if isinstance(graph, dgl.DGLGraph):
            blocks = [graph] * len(self.convs)
        else:
            blocks = one_block_per_layer("sage", graph, len(self.convs))
        embedding = x
        last = len(self.convs) - 1
        for i, (conv, block) in enumerate(zip(self.convs, blocks)):
            if i == last:
                embedding = dst_rows(x, block.num_dst_nodes())
            weight = block.edata.get("weight") if self.edge_weights else None
            x = conv(block, dropout(x, self.p, self.training), weight)
            if i < last:
                x = self.act(x)
                if self.normalize:
                    x = F.normalize(x, dim=-1)
        return ModelOutput(logits=x, embedding=embedding)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("node_model", "sage", SAGE)
