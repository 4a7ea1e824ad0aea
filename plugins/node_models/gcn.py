"""Node model ``gcn``: graph convolutional network (Kipf & Welling, ICLR 2017).

On sampled blocks a layer estimates the whole graph's propagation from the sampled
neighbours, scaling their sum by ``deg / sampled`` (the neighbour-sampling estimator
of VR-GCN, Chen, Zhu & Song, ICML 2018), so a layer is unbiased however few neighbours
are drawn and exact when all are.
"""

from __future__ import annotations

from typing import Literal

import dgl
import dgl.function as fn
import torch
from dgl.nn import GraphConv
from torch import nn

import zoo
from zoo.contracts import ModelOutput
from zoo_plugins.layers import (
    CSR,
    Activation,
    Count,
    DropoutRate,
    GraphCache,
    Linear,
    Units,
    dropout,
    dst_rows,
    make_activation,
)

Norm = Literal["both", "right", "none"]


def gcn_adjacency(graph: dgl.DGLGraph, norm: Norm = "both", self_loops: bool = True,
                  edge_weights: bool = False) -> CSR:
    """The matrix a GraphConv layer multiplies by, ``out = A h``, as a :class:`CSR`.

    ``A[v, u] = c_src(u) w_uv c_dst(v)`` for each edge ``u -> v`` (duplicates summed),
    with DGL GraphConv's normalization: 'both' ``c_src = outdeg^-1/2`` and ``c_dst =
    indeg^-1/2``, 'right' ``c_dst = 1 / indeg``, 'none' 1 (degrees count edges, at least
    1). ``self_loops`` replaces the graph's self-loops by one of weight 1 per node (the
    renormalization trick); ``w`` is ``edata['weight']`` with ``edge_weights``, else 1.
    A matrix equal to its transpose is marked symmetric, so the backward pass reuses it.
    """
    n = graph.num_nodes()
    src, dst = graph.edges()
    weight = graph.edata["weight"].float() if edge_weights and "weight" in graph.edata else None
    if self_loops:
        keep = src != dst
        loops = torch.arange(n, device=src.device)
        src, dst = torch.cat([src[keep], loops]), torch.cat([dst[keep], loops])
        if weight is not None:
            weight = torch.cat([weight[keep], weight.new_ones(n)])
    values = torch.ones(src.numel(), device=src.device) if weight is None else weight
    if norm == "both":
        c_src = torch.bincount(src, minlength=n).clamp(min=1).float().rsqrt()
        c_dst = torch.bincount(dst, minlength=n).clamp(min=1).float().rsqrt()
        values = c_src[src] * c_dst[dst] * values
    elif norm == "right":
        values = values / torch.bincount(dst, minlength=n).clamp(min=1).float()[dst]
    a = CSR.from_coo(dst, src, values, (n, n))
    t = a.t_matrix()
    if (torch.equal(t.crow_indices(), a.crow) and torch.equal(t.col_indices(), a.col)
            and torch.equal(t.values(), a.values)):
        a = CSR(a.crow, a.col, a.values, a.shape, symmetric=True)  # drops the transpose
    return a


class GCN(nn.Module):
    """Graph convolutional network (Kipf & Welling 2017) on DGL's GraphConv.

    Each layer is dropout -> linear -> normalized neighbourhood sum (GraphConv's, without
    its own weight) -> activation. Projecting before aggregating is the cheap order
    (A(XW) = (AX)W) and lets the first layer multiply the sparse features directly,
    with dropout on their non-zeros only. On the whole graph the normalized adjacency
    is built once (:func:`gcn_adjacency`) and each layer is one CSR product.

    ``forward`` takes the whole graph or a list of sampled blocks, one per layer. On a
    block, a dst node ``v`` gets ``c_vv h_v + deg_v / s_v * sum_u c_uv h_u`` over its
    ``s_v`` sampled neighbours (sampled self-loops dropped), where ``deg_v`` is its
    whole-graph in-degree (``dstdata['in_degree']``) and ``c`` GraphConv's whole-graph
    normalization (times the edge weight with ``edge_weights``): exact when every
    neighbour is sampled, unbiased otherwise. Blocks carry in-degrees only, so 'both'
    takes the source side's degree to be its in-degree (GraphConv uses the out-degree):
    exact on symmetric graphs.

    Args:
        hidden: units in each hidden layer.
        layers: number of graph convolutions.
        dropout: dropout before each layer (on the non-zeros for sparse features).
        self_loops: add a self-loop to every node (the renormalization trick).
        norm: GraphConv normalization: 'both' (symmetric), 'right' (mean) or 'none'.
        activation: non-linearity between layers.
        edge_weights: weight messages by the graph's edata['weight'].
    """

    supports_blocks = True

    def __init__(self, in_dim: int, out_dim: int, *, hidden: Units = 16, layers: Count = 2,
                 dropout: DropoutRate = 0.5, self_loops: bool = True, norm: Norm = "both",
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
        self.norm = norm
        self.num_layers = layers  # the blocks forward consumes
        self._prepared = GraphCache()
        self._adjacency: CSR | None = None

    def _prepare(self, graph: dgl.DGLGraph) -> CSR:
        # The normalized adjacency of the graph, built once per input graph.
        self._adjacency = self._prepared.get(graph, lambda g: gcn_adjacency(
            g, self.norm, self.self_loops, self.edge_weights))
        return self._adjacency

    def forward(self, graph: dgl.DGLGraph | list[dgl.DGLGraph], x: torch.Tensor,
                ) -> ModelOutput:
        if not isinstance(graph, dgl.DGLGraph):
            return self._forward_blocks(graph, x)
        adjacency = self._prepare(graph)
        embedding = x
        for i, (linear, conv) in enumerate(zip(self.linears, self.convs)):
            if i == len(self.convs) - 1:
                embedding = x
            x = adjacency.mm(linear(dropout(x, self.p, self.training))) + conv.bias
            if i < len(self.convs) - 1:
                x = self.act(x)
        return ModelOutput(logits=x, embedding=embedding)

    def _forward_blocks(self, blocks: list[dgl.DGLGraph], x: torch.Tensor) -> ModelOutput:
        """The layers on sampled blocks: ``x`` has a row per src node of the first block,
        the output a row per dst node of the last."""
        if len(blocks) != len(self.convs):
            raise ValueError(f"gcn has {len(self.convs)} layers but got {len(blocks)} blocks;"
                             " sample one block per layer")
        embedding = x
        for i, (linear, conv, block) in enumerate(zip(self.linears, self.convs, blocks)):
            if i == len(self.convs) - 1:
                embedding = dst_rows(x, block.num_dst_nodes())
            h = linear(dropout(x, self.p, self.training))
            x = self._propagate_block(block, h) + conv.bias
            if i < len(self.convs) - 1:
                x = self.act(x)
        return ModelOutput(logits=x, embedding=embedding)

    def _propagate_block(self, block: dgl.DGLGraph, h: torch.Tensor) -> torch.Tensor:
        """``c_vv h_v + deg_v / s_v * sum_u c_uv w_uv h_u`` for the block's dst nodes."""
        num_dst = block.num_dst_nodes()
        loop = 1.0 if self.self_loops else 0.0
        deg = block.dstdata["in_degree"].to(h.dtype)
        # GraphConv's degrees on the graph _prepare builds: self-loops replaced by one each.
        d_src = (block.srcdata["in_degree"].to(h.dtype) + loop).clamp(min=1)
        d_dst = (deg + loop).clamp(min=1)
        src, dst = block.edges()
        # The whole-graph path replaces self-loops by its own self term (or, without
        # self_loops, the degrees exclude them), so a sampled self-loop is not a neighbour.
        neighbour = (block.srcdata[dgl.NID][src] != block.dstdata[dgl.NID][dst]).to(h.dtype)
        sampled = torch.zeros(num_dst, dtype=h.dtype, device=h.device).index_add_(
            0, dst, neighbour)
        coef = neighbour
        if self.edge_weights and "weight" in block.edata:
            coef = coef * block.edata["weight"].to(h.dtype)
        if self.norm == "both":
            src_norm, dst_norm = d_src.rsqrt(), d_dst.rsqrt()
        elif self.norm == "right":
            src_norm, dst_norm = None, 1.0 / d_dst
        else:
            src_norm, dst_norm = None, torch.ones_like(d_dst)
        with block.local_scope():
            block.srcdata["h"] = h if src_norm is None else h * src_norm.unsqueeze(-1)
            block.edata["c"] = coef
            block.update_all(fn.u_mul_e("h", "c", "m"), fn.sum("m", "h"))
            # deg / s makes the sampled sum unbiased; with s = 0 the sum is empty anyway.
            out = block.dstdata["h"] * (dst_norm * deg / sampled.clamp(min=1)).unsqueeze(-1)
        if self.self_loops:
            # The renormalization trick's self-loop (weight 1): c_vv = 1 / d_v under 'both'
            # and 'right', 1 under 'none'. A block's dst nodes are its first src nodes.
            self_norm = dst_norm if self.norm == "none" else 1.0 / d_dst
            out = out + h[:num_dst] * self_norm.unsqueeze(-1)
        return out


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("node_model", "gcn", GCN)
