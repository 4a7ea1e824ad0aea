"""Node model ``gat``: graph attention network (Veličković et al., ICLR 2018).

Each head of a layer projects the nodes, ``z = W h``, scores every edge ``u -> v`` by
``e_uv = LeakyReLU(a_dst . z_v + a_src . z_u)`` (Eq. 1 and 3 of the paper, with the
concatenation ``a [z_v || z_u]`` written as two dot products), normalizes the scores over
``v``'s in-neighbours, itself included, with a softmax (Eq. 2), and sums the neighbours'
``z`` weighted by these coefficients (Eq. 4). Hidden layers concatenate their heads and
apply ELU (Eq. 5); the output layer averages them (Eq. 6).

The projection comes first, so the first layer multiplies sparse features directly
(with dropout on their non-zeros). The same layers run on the whole graph or on sampled
blocks: on a block a node attends over its sampled neighbours and itself, so with every
neighbour sampled a block gives exactly the whole graph's rows.
"""

from __future__ import annotations

import math
from typing import Annotated

import dgl
import dgl.function as fn
import torch
import torch.nn.functional as F
from dgl.ops import edge_softmax
from torch import nn

import zoo
from zoo.contracts import ModelOutput
from zoo.schema import Ge
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


class GATLayer(nn.Module):
    """One multi-head graph attention layer; ``forward`` returns ``(nodes, heads, out)``.

    ``attention`` gives the normalized coefficients ``alpha_uv`` of every edge (one per
    head), which sum to 1 over each destination node's in-edges. In training they are
    dropped out with probability ``attn_dropout`` (rescaling the rest), as in the paper.
    """

    def __init__(self, in_dim: int, out_dim: int, *, heads: int, attn_dropout: float,
                 negative_slope: float) -> None:
        super().__init__()
        self.heads, self.out_dim = heads, out_dim
        self.project = Linear(in_dim, heads * out_dim, bias=False)
        # Each head's attention vector is an (out, 1) weight: Glorot bound sqrt(6 / (out + 1)).
        bound = math.sqrt(6.0 / (out_dim + 1))
        self.attn_src = nn.Parameter(torch.empty(1, heads, out_dim).uniform_(-bound, bound))
        self.attn_dst = nn.Parameter(torch.empty(1, heads, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(heads, out_dim))
        self.attn_p = attn_dropout
        self.negative_slope = negative_slope

    def _scores(self, graph: dgl.DGLGraph, x: torch.Tensor) -> tuple[torch.Tensor,
                                                                      torch.Tensor]:
        """Projected src features ``(N_src, heads, out)`` and the normalized attention
        ``(E, heads, 1)`` of ``graph``'s edges."""
        z = self.project(x).view(-1, self.heads, self.out_dim)
        z_dst = z[: graph.num_dst_nodes()]
        with graph.local_scope():
            graph.srcdata["el"] = (z * self.attn_src).sum(-1, keepdim=True)
            graph.dstdata["er"] = (z_dst * self.attn_dst).sum(-1, keepdim=True)
            graph.apply_edges(fn.u_add_v("el", "er", "e"))
            e = F.leaky_relu(graph.edata["e"], self.negative_slope)
        return z, edge_softmax(graph, e)

    def attention(self, graph: dgl.DGLGraph, x: torch.Tensor) -> torch.Tensor:
        """The attention coefficients ``(E, heads)`` of ``graph``'s edges, before dropout."""
        return self._scores(graph, x)[1].squeeze(-1)

    def forward(self, graph: dgl.DGLGraph, x: torch.Tensor) -> torch.Tensor:
        """Each dst node's heads, ``sum_u alpha_uv z_u + b``, from ``x`` (a row per src node)."""
        z, alpha = self._scores(graph, x)
        with graph.local_scope():
            graph.srcdata["z"] = z
            graph.edata["a"] = F.dropout(alpha, self.attn_p, self.training)
            graph.update_all(fn.u_mul_e("z", "a", "m"), fn.sum("m", "h"))
            return graph.dstdata["h"] + self.bias


def block_with_self_loops(block: dgl.DGLGraph) -> dgl.DGLGraph:
    """``block`` with its sampled self-loops replaced by one per dst node (a block's dst
    nodes are its first src nodes), as the whole graph's self-loops are."""
    src, dst = block.edges()
    keep = block.srcdata[dgl.NID][src] != block.dstdata[dgl.NID][dst]
    loops = torch.arange(block.num_dst_nodes(), device=src.device)
    return dgl.create_block((torch.cat([src[keep], loops]), torch.cat([dst[keep], loops])),
                            num_src_nodes=block.num_src_nodes(),
                            num_dst_nodes=block.num_dst_nodes(), device=src.device)


class GAT(nn.Module):
    """Graph attention network (Veličković et al. 2018): multi-head neighbour attention.

    Each node attends over its in-neighbours and itself.

    Each layer is dropout -> multi-head attention (coefficients dropped out in training)
    -> the heads concatenated and the activation (hidden layers) or averaged (the output
    layer). ``forward`` takes the whole graph or a list of sampled blocks, one per layer;
    on a block a node attends over the neighbours that were sampled. The embedding is the
    last layer's input. Edge weights are not used: attention replaces them.

    Args:
        hidden: units per head in each hidden layer (a hidden layer is hidden * heads
            wide).
        heads: attention heads in each hidden layer, concatenated.
        out_heads: attention heads in the output layer, averaged.
        layers: number of attention layers (one block each when sampling).
        dropout: dropout on each layer's input (on the non-zeros for sparse features).
        attn_dropout: dropout on the normalized attention coefficients.
        negative_slope: slope of the LeakyReLU applied to the attention scores.
        activation: non-linearity after each hidden layer (the paper's ELU).
        self_loops: let each node attend to itself (its own self-loops replaced by one);
            without, a node attends over its in-neighbours only, as the graph gives them.
    """

    supports_blocks = True

    def __init__(self, in_dim: int, out_dim: int, *, hidden: Units = 8, heads: Count = 8,
                 out_heads: Count = 1, layers: Count = 2, dropout: DropoutRate = 0.6,
                 attn_dropout: DropoutRate = 0.6,
                 negative_slope: Annotated[float, Ge(0)] = 0.2,
                 activation: Activation = "elu", self_loops: bool = True) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError("gat needs layers >= 1")
        widths = [in_dim] + [hidden * heads] * (layers - 1)
        self.convs = nn.ModuleList(
            GATLayer(a, hidden, heads=heads, attn_dropout=attn_dropout,
                     negative_slope=negative_slope) for a in widths[:-1])
        self.convs.append(GATLayer(widths[-1], out_dim, heads=out_heads,
                                   attn_dropout=attn_dropout, negative_slope=negative_slope))
        self.act = make_activation(activation)
        self.p = dropout
        self.self_loops = self_loops
        self.num_layers = layers  # the blocks forward consumes
        self._prepared = GraphCache()

    def _prepare(self, graph: dgl.DGLGraph) -> dgl.DGLGraph:
        # Adding self-loops copies the graph: once per input graph.
        return self._prepared.get(
            graph, lambda g: dgl.add_self_loop(dgl.remove_self_loop(g)) if self.self_loops else g)

    def forward(self, graph: dgl.DGLGraph | list[dgl.DGLGraph], x: torch.Tensor,
                ) -> ModelOutput:
        if isinstance(graph, dgl.DGLGraph):
            blocks = [self._prepare(graph)] * len(self.convs)
        else:
            blocks = [block_with_self_loops(b) if self.self_loops else b
                      for b in one_block_per_layer("gat", graph, len(self.convs))]
        embedding = x
        last = len(self.convs) - 1
        for i, (conv, block) in enumerate(zip(self.convs, blocks)):
            if i == last:
                embedding = dst_rows(x, block.num_dst_nodes())
            h = conv(block, dropout(x, self.p, self.training))
            x = self.act(h.flatten(1)) if i < last else h.mean(1)
        return ModelOutput(logits=x, embedding=embedding)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("node_model", "gat", GAT)
