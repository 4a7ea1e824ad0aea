"""Node model ``appnp``: approximate personalized propagation of neural predictions
(Klicpera, Bojchevski & Günnemann, ICLR 2019).

Predict, then propagate: an MLP gives each node its own prediction ``H = f(X)``, and
``K`` steps of power iteration for personalized PageRank spread them over the graph
(Eq. 4 of the paper): ``Z_0 = H``, ``Z_{k+1} = (1 - alpha) S Z_k + alpha H``, with
``S = D^-1/2 (A + I) D^-1/2``. As ``K`` grows ``Z_K`` tends to PPNP's closed form
``alpha (I - (1 - alpha) S)^-1 H`` (Eq. 3). The propagation has no parameters, so a
large neighbourhood costs no extra weights.
"""

from __future__ import annotations

from typing import Annotated

import dgl
import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.contracts import ModelOutput
from zoo.schema import Ge, Le
from zoo_plugins.layers import (
    Activation,
    Count,
    DropoutRate,
    GraphCache,
    Linear,
    Units,
    dropout,
    make_activation,
)
from zoo_plugins.node_models.sgc import propagate, renormalized_graph


class APPNP(nn.Module):
    """APPNP (Klicpera et al. 2019): an MLP's predictions, propagated by personalized PageRank.

    The MLP is dropout -> linear -> activation, repeated, with no activation after the
    last linear layer. Its output ``H`` is propagated as
    ``Z <- (1 - alpha) S Z + alpha H``, ``K`` times, with
    ``S = D^-1/2 (A + I) D^-1/2`` (self-loops replaced by one per node). In training,
    each step drops the entries of ``S`` independently with probability
    ``edge_dropout`` (rescaling the rest), as the paper's implementation does; the
    teleport term ``alpha H`` is never dropped. The embedding is the last linear layer's
    input.

    Full graph only (``supports_blocks`` is False): ``K`` = 10 steps read the 10-hop
    neighbourhood of every node, which on a citation graph is nearly the whole graph, so
    sampled blocks would cost as much as the whole graph without its exactness (the
    paper's answer for large graphs is approximate PageRank vectors, not sampling).

    Args:
        hidden: units in each hidden layer of the MLP.
        layers: linear layers of the MLP (1: a linear model before propagating).
        dropout: dropout before each linear layer (on the non-zeros for sparse
            features).
        edge_dropout: dropout on the entries of the propagation matrix, drawn anew at
            every propagation step during training.
        alpha: teleport (restart) probability of the personalized PageRank.
        k: propagation steps (power iterations); 0 is the MLP alone.
        activation: non-linearity between the MLP's layers.
    """

    supports_blocks = False

    def __init__(self, in_dim: int, out_dim: int, *, hidden: Units = 64, layers: Count = 2,
                 dropout: DropoutRate = 0.5, edge_dropout: DropoutRate = 0.5,
                 alpha: Annotated[float, Ge(0), Le(1)] = 0.1, k: Annotated[int, Ge(0)] = 10,
                 activation: Activation = "relu") -> None:
        super().__init__()
        sizes = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.linears = nn.ModuleList(Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = make_activation(activation)
        self.p = dropout
        self.edge_p = edge_dropout
        self.alpha = alpha
        self.k = k
        self._prepared = GraphCache()

    def _prepare(self, graph: dgl.DGLGraph) -> dgl.DGLGraph:
        # Self-loops and the normalization copy the graph: once per input graph.
        return self._prepared.get(graph, renormalized_graph)

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The MLP's per-node predictions ``H`` and the last linear layer's input."""
        last = len(self.linears) - 1
        embedding = x
        for i, linear in enumerate(self.linears):
            if i == last:
                embedding = x
            x = linear(dropout(x, self.p, self.training))
            if i < last:
                x = self.act(x)
        return x, embedding

    def personalized_pagerank(self, graph: dgl.DGLGraph, h: torch.Tensor) -> torch.Tensor:
        """``K`` steps of ``Z <- (1 - alpha) S Z + alpha h`` from ``Z = h`` on ``graph``."""
        g = self._prepare(graph)
        norm = g.edata["norm"].to(h.device)
        z = h
        for _ in range(self.k):
            weight = F.dropout(norm, self.edge_p, self.training)
            z = (1.0 - self.alpha) * propagate(g, z, weight) + self.alpha * h
        return z

    def forward(self, graph: dgl.DGLGraph, x: torch.Tensor) -> ModelOutput:
        if not isinstance(graph, dgl.DGLGraph):
            raise ValueError("appnp runs on the whole graph only, not on sampled blocks; "
                             "use the full_graph batch source")
        h, embedding = self.predict(x)
        return ModelOutput(logits=self.personalized_pagerank(graph, h), embedding=embedding)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("node_model", "appnp", APPNP)
