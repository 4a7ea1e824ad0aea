"""Node model ``gin``: graph isomorphism network (Xu, Hu, Leskovec & Jegelka, ICLR 2019).

Each layer is Eq. 4.1 of the paper: ``h_v' = MLP((1 + eps) h_v + sum_{u in N(v)} h_u)``,
the sum aggregator (injective on multisets, unlike the mean or max) followed by an MLP.
``eps`` is a fixed number (GIN-0 when 0) or learned per layer (GIN-eps). The MLP's first
layer is linear, so it is applied before aggregating
(``W((1 + eps) h_v + sum h_u) = (1 + eps) W h_v + sum W h_u``): the messages are
``hidden``-wide instead of ``in``-wide, and the first layer multiplies sparse features
directly.

The paper classifies whole graphs; here the last layer's MLP outputs each node's
scores. On sampled blocks the neighbour sum is estimated from the sampled neighbours
scaled by ``deg / sampled`` (as ``gcn`` does), so it is unbiased however few are drawn
and exact when all are.
"""

from __future__ import annotations

import dgl
import dgl.function as fn
import torch
from torch import nn

import zoo
from zoo.contracts import ModelOutput
from zoo_plugins.layers import (
    Activation,
    Count,
    DropoutRate,
    GraphCache,
    Linear,
    Units,
    dropout,
    dst_rows,
    make_activation,
    one_block_per_layer,
)


class GINLayer(nn.Module):
    """One GIN layer: ``MLP((1 + eps) h_v + sum_{u -> v} h_u)``, self-loops not counted.

    The MLP is ``mlp_layers`` linear layers with the activation (and batch normalization,
    if asked, before it) between them. On a block the sum over ``v``'s ``s_v`` sampled
    neighbours is scaled by ``deg_v / s_v`` (``deg_v`` its whole-graph in-degree,
    ``dstdata['in_degree']``, when the block carries it).
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, *, mlp_layers: int,
                 eps: float, learn_eps: bool, batch_norm: bool, activation: str) -> None:
        super().__init__()
        sizes = [in_dim] + [hidden] * (mlp_layers - 1) + [out_dim]
        self.project = Linear(sizes[0], sizes[1], bias=False)
        self.project_bias = nn.Parameter(torch.zeros(sizes[1]))
        self.linears = nn.ModuleList(Linear(a, b) for a, b in zip(sizes[1:-1], sizes[2:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) if batch_norm else nn.Identity()
                                   for b in sizes[1:-1])
        self.act = make_activation(activation)
        if learn_eps:
            self.eps = nn.Parameter(torch.tensor([float(eps)]))
        else:
            self.register_buffer("eps", torch.tensor([float(eps)]))

    def aggregate(self, graph: dgl.DGLGraph, z: torch.Tensor) -> torch.Tensor:
        """``(1 + eps) z_v + sum_u z_u`` for ``graph``'s dst nodes (``z``: a row per src
        node). ``graph`` is the whole graph without self-loops, or a block."""
        num_dst = graph.num_dst_nodes()
        with graph.local_scope():
            graph.srcdata["z"] = z
            if graph.is_block:
                src, dst = graph.edges()
                # The whole graph drops self-loops; a sampled one is no neighbour either.
                neighbour = (graph.srcdata[dgl.NID][src]
                             != graph.dstdata[dgl.NID][dst]).to(z.dtype)
                graph.edata["c"] = neighbour
                graph.update_all(fn.u_mul_e("z", "c", "m"), fn.sum("m", "s"))
                total = graph.dstdata["s"]
                if "in_degree" in graph.dstdata:
                    sampled = torch.zeros(num_dst, dtype=z.dtype, device=z.device)
                    sampled = sampled.index_add_(0, dst, neighbour)
                    deg = graph.dstdata["in_degree"].to(z.dtype)
                    # deg / s makes the sampled sum unbiased; with s = 0 it is empty anyway.
                    total = total * (deg / sampled.clamp(min=1)).unsqueeze(-1)
            else:
                graph.update_all(fn.copy_u("z", "m"), fn.sum("m", "s"))
                total = graph.dstdata["s"]
        return (1.0 + self.eps) * z[:num_dst] + total

    def forward(self, graph: dgl.DGLGraph, x: torch.Tensor) -> torch.Tensor:
        h = self.aggregate(graph, self.project(x)) + self.project_bias
        for norm, linear in zip(self.norms, self.linears):
            h = linear(self.act(norm(h)))
        return h


class GIN(nn.Module):
    """Graph isomorphism network (Xu et al. 2019): sum aggregation, then an MLP per layer.

    Each layer is dropout -> ``MLP((1 + eps) h_v + sum_u h_u)`` -> batch normalization
    (if ``batch_norm``) and the activation (not after the last layer, whose MLP outputs
    the scores). Self-loops in the graph are not counted as neighbours: ``eps`` weighs
    the node itself. ``forward`` takes the whole graph or a list of sampled blocks, one
    per layer. The embedding is the last layer's input. Edge weights are not used.

    Args:
        hidden: units of every hidden layer, inside and between the MLPs.
        layers: number of GIN layers (one block each when sampling).
        mlp_layers: linear layers in each layer's MLP (the paper uses 2).
        dropout: dropout before each layer (on the non-zeros for sparse features).
        eps: the node's own extra weight, (1 + eps) h_v; 0 is GIN-0.
        learn_eps: learn eps (one per layer, starting from eps): GIN-eps.
        batch_norm: batch normalization on every hidden layer, inside and between the
            MLPs (as in the paper).
        activation: non-linearity of the hidden layers.
    """

    supports_blocks = True

    def __init__(self, in_dim: int, out_dim: int, *, hidden: Units = 64, layers: Count = 2,
                 mlp_layers: Count = 2, dropout: DropoutRate = 0.5, eps: float = 0.0,
                 learn_eps: bool = False, batch_norm: bool = False,
                 activation: Activation = "relu") -> None:
        super().__init__()
        if layers < 1 or mlp_layers < 1:
            raise ValueError("gin needs layers >= 1 and mlp_layers >= 1")
        sizes = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.convs = nn.ModuleList(
            GINLayer(a, hidden, b, mlp_layers=mlp_layers, eps=eps, learn_eps=learn_eps,
                     batch_norm=batch_norm, activation=activation)
            for a, b in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) if batch_norm else nn.Identity()
                                   for _ in range(layers - 1))
        self.act = make_activation(activation)
        self.p = dropout
        self.num_layers = layers  # the blocks forward consumes
        self._prepared = GraphCache()

    def _prepare(self, graph: dgl.DGLGraph) -> dgl.DGLGraph:
        # Removing self-loops copies the graph: once per input graph.
        return self._prepared.get(graph, dgl.remove_self_loop)

    def forward(self, graph: dgl.DGLGraph | list[dgl.DGLGraph], x: torch.Tensor,
                ) -> ModelOutput:
        if isinstance(graph, dgl.DGLGraph):
            blocks = [self._prepare(graph)] * len(self.convs)
        else:
            blocks = one_block_per_layer("gin", graph, len(self.convs))
        embedding = x
        last = len(self.convs) - 1
        for i, (conv, block) in enumerate(zip(self.convs, blocks)):
            if i == last:
                embedding = dst_rows(x, block.num_dst_nodes())
            x = conv(block, dropout(x, self.p, self.training))
            if i < last:
                x = self.act(self.norms[i](x))
        return ModelOutput(logits=x, embedding=embedding)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("node_model", "gin", GIN)
