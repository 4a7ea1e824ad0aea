"""Node model ``graphnet``: stacked full Graph Network blocks (Battaglia et al. 2018,
"Relational inductive biases, deep learning, and graph networks", Algorithm 1; DeepMind
graph_nets ``modules.GraphNetwork``).

One block updates edges, then nodes, then the global::

    e'_k = phi_e(e_k, v_src(k), v_dst(k), u)
    v'_i = phi_v(rho_e->v({e'_k : dst(k) = i}), v_i, u)
    u'   = phi_u(rho_e->u(E'), rho_v->u(V'), u)

with each ``rho`` a configurable sum / mean / max (graph_nets defaults to sums). The
input edge feature is the edge weight, the global starts at zero, and the features are
projected once (sparse-aware) before the first block. A batched DGL graph gets one
global per member graph.
"""

from __future__ import annotations

from typing import Literal

import dgl
import dgl.function as fn
import torch
from torch import nn

import zoo
from zoo.contracts import ModelOutput
from zoo_plugins.layers import Activation, Count, DropoutRate, Units
from zoo_plugins.node_models.commnet import MLPFunction

Aggregation = Literal["sum", "mean", "max"]
REDUCERS = {"sum": fn.sum, "mean": fn.mean, "max": fn.max}


class GraphNetBlock(nn.Module):
    """One Graph Network block: edge, node and global updates (Battaglia et al., Alg. 1)."""

    def __init__(self, node_dim: int, edge_dim: int, global_dim: int, hidden: int, *,
                 mlp_layers: int, activation: str, dropout: float, edge_to_node: str,
                 node_to_global: str, edge_to_global: str, update_global: bool = True,
                 ) -> None:
        super().__init__()
        common = {"hidden": hidden, "layers": mlp_layers, "activation": activation,
                  "dropout": dropout, "activate_output": True}
        self.edge_model = MLPFunction(edge_dim + 2 * node_dim + global_dim, hidden, **common)
        self.node_model = MLPFunction(hidden + node_dim + global_dim, hidden, **common)
        # The last block's global is never read, so it gets no global function.
        self.global_model = (MLPFunction(2 * hidden + global_dim, hidden, **common)
                             if update_global else None)
        self.edge_to_node = edge_to_node
        self.node_to_global = node_to_global
        self.edge_to_global = edge_to_global

    def forward(self, graph: dgl.DGLGraph, nodes: torch.Tensor, edges: torch.Tensor,
                globals_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Updated ``(nodes, edges, globals)``; ``globals_`` has one row per member graph."""
        with graph.local_scope():
            graph.ndata["v"] = nodes
            graph.edata["e"] = edges
            graph.edata["u"] = dgl.broadcast_edges(graph, globals_)
            graph.apply_edges(lambda e: {"x": torch.cat(
                [e.data["e"], e.src["v"], e.dst["v"], e.data["u"]], dim=-1)})
            edges = self.edge_model(graph.edata["x"])
            graph.edata["e"] = edges
            # Nodes with no in-edges receive 0 from every reducer (DGL's convention).
            graph.update_all(fn.copy_e("e", "m"), REDUCERS[self.edge_to_node]("m", "agg"))
            nodes = self.node_model(torch.cat(
                [graph.ndata["agg"], nodes, dgl.broadcast_nodes(graph, globals_)], dim=-1))
            if self.global_model is None:
                return nodes, edges, globals_
            graph.ndata["v"] = nodes
            # A member graph without edges reads out 0 from every op (DGL's convention).
            edge_summary = dgl.readout_edges(graph, "e", op=self.edge_to_global)
            node_summary = dgl.readout_nodes(graph, "v", op=self.node_to_global)
        globals_ = self.global_model(torch.cat([edge_summary, node_summary, globals_], -1))
        return nodes, edges, globals_


class GraphNet(nn.Module):
    """Graph Network blocks (graph_nets): edge, node and global updates, sum/mean/max aggregation.

    The features are projected to ``hidden`` units (dropout, sparse-aware linear,
    activation); ``blocks`` Graph Network blocks follow, each with MLP edge, node and
    global functions (``phi_e(e, v_src, v_dst, u)``, ``phi_v(rho(e'), v, u)``,
    ``phi_u(rho(e'), rho(v'), u)``); a linear layer maps the last node states (the
    embedding) to the logits. Input edge features are the edge weights (ones if the
    graph has none) and the global starts at zero.

    Args:
        hidden: units of node, edge and global states.
        blocks: number of stacked Graph Network blocks.
        mlp_layers: linear layers in each edge, node and global function.
        activation: non-linearity inside and after every function.
        dropout: dropout before every linear layer (on the non-zeros for sparse
            features).
        edge_to_node: how a node aggregates its received edges: 'sum', 'mean' or 'max'.
        node_to_global: how the global aggregates the nodes: 'sum', 'mean' or 'max'.
        edge_to_global: how the global aggregates the edges: 'sum', 'mean' or 'max'.
    """

    def __init__(self, in_dim: int, out_dim: int, *, hidden: Units = 64, blocks: Count = 2,
                 mlp_layers: Count = 1, activation: Activation = "relu", dropout: DropoutRate = 0.5,
                 edge_to_node: Aggregation = "mean", node_to_global: Aggregation = "mean",
                 edge_to_global: Aggregation = "mean") -> None:
        super().__init__()
        if blocks < 1 or mlp_layers < 1:
            raise ValueError("graphnet needs blocks >= 1 and mlp_layers >= 1")
        self.hidden = hidden
        self.encoder = MLPFunction(in_dim, hidden, hidden=hidden, layers=1,
                                   activation=activation, dropout=dropout,
                                   activate_output=True)
        self.blocks = nn.ModuleList(
            GraphNetBlock(hidden, 1 if i == 0 else hidden, hidden, hidden,
                          mlp_layers=mlp_layers, activation=activation, dropout=dropout,
                          edge_to_node=edge_to_node, node_to_global=node_to_global,
                          edge_to_global=edge_to_global, update_global=i < blocks - 1)
            for i in range(blocks))
        self.decoder = MLPFunction(hidden, out_dim, hidden=hidden, layers=1,
                                   activation=activation, dropout=dropout,
                                   activate_output=False)

    def forward(self, graph: dgl.DGLGraph, x: torch.Tensor) -> ModelOutput:
        nodes = self.encoder(x)
        weight = graph.edata.get("weight")
        edges = (torch.ones(graph.num_edges(), 1) if weight is None
                 else weight.reshape(-1, 1).to(nodes.dtype))
        globals_ = nodes.new_zeros(graph.batch_size, self.hidden)
        for block in self.blocks:
            nodes, edges, globals_ = block(graph, nodes, edges, globals_)
        return ModelOutput(logits=self.decoder(nodes), embedding=nodes)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("node_model", "graphnet", GraphNet)
