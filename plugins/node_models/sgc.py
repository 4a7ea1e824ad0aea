"""Node model ``sgc``: simple graph convolution (Wu et al., ICML 2019).

SGC removes GCN's non-linearities, so ``K`` layers collapse to ``softmax(S^K X W)`` with
``S = D^-1/2 (A + I) D^-1/2`` (Eq. 8 of the paper). ``S^K X`` has no parameters: it is
computed once per input graph and features, and an epoch is one matrix product.

``renormalized_graph`` (the graph with the renormalization trick's self-loops and
GCN's symmetric weights) is shared with ``appnp``.
"""

from __future__ import annotations

import weakref
from typing import Annotated

import dgl
import dgl.function as fn
import torch
from torch import nn

import zoo
from zoo.contracts import ModelOutput
from zoo.schema import Ge
from zoo_plugins.layers import DropoutRate, Linear, dropout


def renormalized_graph(graph: dgl.DGLGraph) -> dgl.DGLGraph:
    """``graph`` with one self-loop per node (its own ones replaced) and, in
    ``edata['norm']``, the weight ``1 / sqrt(d_out(u) d_in(v))`` of each edge ``u -> v``,
    degrees counted with the self-loops: the entries of ``D^-1/2 (A + I) D^-1/2`` (Kipf &
    Welling's renormalization trick). Edge weights are ignored (a symmetric graph gives a
    symmetric matrix, the papers' setting)."""
    g = dgl.add_self_loop(dgl.remove_self_loop(graph))
    src, dst = g.edges()
    d_out = g.out_degrees().to(torch.float32)
    d_in = g.in_degrees().to(torch.float32)
    g.edata["norm"] = (d_out[src] * d_in[dst]).rsqrt()
    return g


def propagate(graph: dgl.DGLGraph, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``S h`` for the sparse matrix ``S`` whose entry ``(v, u)`` is the weight of ``u -> v``."""
    with graph.local_scope():
        graph.ndata["h"] = h
        graph.edata["w"] = weight.view(-1, *([1] * (h.dim() - 1))).to(h.dtype)
        graph.update_all(fn.u_mul_e("h", "w", "m"), fn.sum("m", "h"))
        return graph.ndata["h"]


class SGC(nn.Module):
    """Simple graph convolution (Wu et al. 2019): a linear classifier on S^K X, precomputed.

    ``S = D^-1/2 (A + I) D^-1/2`` is GCN's propagation matrix with the renormalization
    trick (self-loops replaced by one per node). ``S^K X`` is computed without gradients
    the first time a graph and feature tensor are seen and cached; later calls with the
    same two objects cost one matrix product. Features that carry gradients (an encoder's
    output) are propagated at every call instead. The embedding is ``S^K X``.

    Full graph only (``supports_blocks`` is False): the point of SGC is one precomputation
    over the whole graph; on sampled blocks ``S^K X`` would be recomputed from ``K``-hop
    neighbourhoods at every batch, and the degrees of ``S`` are those of the whole graph.

    Args:
        k: propagation steps K (the power of S; 0 is logistic regression on X).
        bias: give the linear layer a bias.
        dropout: dropout on S^K X before the linear layer (the paper uses none).
    """

    supports_blocks = False

    def __init__(self, in_dim: int, out_dim: int, *, k: Annotated[int, Ge(0)] = 2,
                 bias: bool = True, dropout: DropoutRate = 0.0) -> None:
        super().__init__()
        self.linear = Linear(in_dim, out_dim, bias=bias)
        self.k = k
        self.p = dropout
        # Weak references: the cache must not keep a graph or features alive, and an
        # object's id can be reused once it is gone.
        self._cache_key: tuple[weakref.ref, weakref.ref] | None = None
        self._cached: torch.Tensor | None = None

    def propagated_features(self, graph: dgl.DGLGraph, x: torch.Tensor) -> torch.Tensor:
        """``S^K x`` (dense), from the cache when ``graph`` and ``x`` are the ones it holds."""
        if x.requires_grad:  # an upstream model is training: no caching, keep the gradient
            return self._propagate(graph, x)
        key = self._cache_key
        if key is None or key[0]() is not graph or key[1]() is not x:
            with torch.no_grad():
                self._cached = self._propagate(graph, x)
            self._cache_key = (weakref.ref(graph), weakref.ref(x))
        return self._cached  # type: ignore[return-value]

    def _propagate(self, graph: dgl.DGLGraph, x: torch.Tensor) -> torch.Tensor:
        h = x.to_dense() if x.is_sparse else x
        if self.k == 0:
            return h
        g = renormalized_graph(graph)
        for _ in range(self.k):
            h = propagate(g, h, g.edata["norm"])
        return h

    def forward(self, graph: dgl.DGLGraph, x: torch.Tensor) -> ModelOutput:
        if not isinstance(graph, dgl.DGLGraph):
            raise ValueError("sgc runs on the whole graph only, not on sampled blocks; "
                             "use the full_graph batch source")
        h = self.propagated_features(graph, x)
        return ModelOutput(logits=self.linear(dropout(h, self.p, self.training)), embedding=h)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("node_model", "sgc", SGC)
