"""Node model ``commnet``: CommNet (Sukhbaatar et al., NeurIPS 2016) as DeepMind's
graph_nets ``modules.CommNet`` builds it.

graph_nets' CommNet is three blocks: an edge block whose model sees only the sender
node, ``m_e = phi_e(h_src)``; a node-encoder block, ``c_v = phi_enc(h_v)``; and a node
block that reads the *mean* of the received edges and the encoded node,
``h_v' = phi_v([mean_{e -> v} m_e, c_v])``. Because ``phi_e`` sees only the sender, the
messages are computed once per node and averaged with DGL's ``copy_u``/``mean``.
Stacking two blocks with a linear first encoder gives NSL's
``GraphConvolutionalNodeClassifier`` (``experimental/gnn.py``).
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
    Linear,
    Units,
    dropout,
    make_activation,
)


class MLPFunction(nn.Module):
    """A graph-network update function: ``layers`` linear layers, each after dropout
    (on the non-zeros for a sparse input), with ``activation`` between them and, if
    ``activate_output``, after the last one."""

    def __init__(self, in_dim: int, out_dim: int, *, hidden: int, layers: int,
                 activation: str, dropout: float, activate_output: bool) -> None:
        super().__init__()
        sizes = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.linears = nn.ModuleList(Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = make_activation(activation)
        self.p = dropout
        self.activate_output = activate_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, linear in enumerate(self.linears):
            x = linear(dropout(x, self.p, self.training))
            if i < len(self.linears) - 1 or self.activate_output:
                x = self.act(x)
        return x


class CommNetBlock(nn.Module):
    """One CommNet block: ``h_v' = phi_v([mean_{u -> v} phi_e(h_u), phi_enc(h_v)])``."""

    def __init__(self, in_dim: int, out_dim: int, *, hidden: int, mlp_layers: int,
                 activation: str, dropout: float, share_encoder: bool,
                 last: bool) -> None:
        super().__init__()
        common = {"hidden": hidden, "layers": mlp_layers, "activation": activation,
                  "dropout": dropout}
        self.edge_model = MLPFunction(in_dim, hidden, activate_output=True, **common)
        self.node_encoder = self.edge_model if share_encoder else MLPFunction(
            in_dim, hidden, activate_output=True, **common)
        self.node_model = MLPFunction(2 * hidden, out_dim, activate_output=not last, **common)

    def forward(self, graph: dgl.DGLGraph, h: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The new node states and the node function's input ``[mean message, encoding]``."""
        messages = self.edge_model(h)
        encoded = messages if self.node_encoder is self.edge_model else self.node_encoder(h)
        with graph.local_scope():
            graph.ndata["m"] = messages
            # A node with no in-edges averages nothing: DGL leaves its mean at 0.
            graph.update_all(fn.copy_u("m", "m"), fn.mean("m", "mean"))
            received = graph.ndata["mean"]
        node_input = torch.cat([received, encoded], dim=-1)
        return self.node_model(node_input), node_input


class CommNet(nn.Module):
    """CommNet (graph_nets): a node updates from its own state and its neighbours' mean message.

    Each block computes a message ``phi_e(h_u)`` per sender, an encoding
    ``phi_enc(h_v)`` per node and the new state ``phi_v([mean of received messages,
    encoding])``; the last block's ``phi_v`` outputs the class logits and its input
    (mean message and encoding, ``2 * hidden`` units) is the embedding. Edge,
    node-encoder and node functions are MLPs of ``mlp_layers`` linear layers. Edge
    weights are not used (CommNet averages).

    Args:
        hidden: units of the messages, encodings and hidden node states.
        blocks: number of CommNet blocks (2 gives NSL's GCN-style classifier).
        mlp_layers: linear layers in each edge, node-encoder and node function.
        activation: non-linearity inside the functions and after each hidden state.
        dropout: dropout before every linear layer (on the non-zeros for sparse
            features).
        share_encoder: the edge function and the node encoder are one module in each
            block (NSL's first GCN block shares them); the features are then projected
            once per block.
    """

    def __init__(self, in_dim: int, out_dim: int, *, hidden: Units = 16, blocks: Count = 2,
                 mlp_layers: Count = 1, activation: Activation = "relu", dropout: DropoutRate = 0.5,
                 share_encoder: bool = True) -> None:
        super().__init__()
        if blocks < 1 or mlp_layers < 1:
            raise ValueError("commnet needs blocks >= 1 and mlp_layers >= 1")
        sizes = [in_dim] + [hidden] * (blocks - 1) + [out_dim]
        self.blocks = nn.ModuleList(
            CommNetBlock(a, b, hidden=hidden, mlp_layers=mlp_layers, activation=activation,
                         dropout=dropout, share_encoder=share_encoder,
                         last=i == blocks - 1)
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])))

    def forward(self, graph: dgl.DGLGraph, x: torch.Tensor) -> ModelOutput:
        for block in self.blocks:
            x, embedding = block(graph, x)
        return ModelOutput(logits=x, embedding=embedding)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("node_model", "commnet", CommNet)
