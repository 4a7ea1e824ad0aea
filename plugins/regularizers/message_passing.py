"""Regularizer ``message_passing``: graph regularization written as a graph network.

NSL's ``experimental/gnn.py`` observes that graph regularization *is* a GNN: an edge
model computes ``w_e * d(out_u, out_v)`` on every edge, an aggregation sums them at each
sample, and a global model reduces the per-sample values. This regularizer does exactly
that with DGL message passing — ``apply_edges`` for the edge messages, ``update_all``
for the per-node sums and weighted degrees — and reads each node out as its weighted
mean distance. The global reduction weights each node by its weighted degree,

    sum_v deg_w(v) * (msg(v) / deg_w(v)) / sum_v deg_w(v) = sum_e w_e d_e / sum_e w_e,

so on the same graph and settings it equals the ``distance`` regularizer.
"""

from __future__ import annotations

import dgl
import dgl.function as fn
import torch

import zoo
from zoo_plugins.neighbors import neighbor_edges
from zoo_plugins.regularizers.distance import GraphDistance
from zoo_plugins.regularizers.distances import pairwise_distance


def node_regularization(graph: dgl.DGLGraph, sample_out: torch.Tensor,
                        neighbor_out: torch.Tensor, distance: str,
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-node ``(weighted mean distance to its neighbours, weighted degree)``.

    ``graph`` has an edge ``u -> v`` for each (sample ``u``, neighbour ``v``) pair and
    weights in ``edata['weight']``. A node without out-edges reads out 0, not NaN.
    """
    with graph.local_scope():
        graph.ndata["sample"] = sample_out
        graph.ndata["neighbor"] = neighbor_out
        graph.apply_edges(lambda edges: {"m": edges.data["weight"] * pairwise_distance(
            edges.src["sample"], edges.dst["neighbor"], distance)})
        # Messages are summed at the sample (the edge's source): reverse the edges.
        back = dgl.reverse(graph, copy_edata=True)
        back.update_all(fn.copy_e("m", "m"), fn.sum("m", "msg"))
        back.update_all(fn.copy_e("weight", "w"), fn.sum("w", "degree"))
        msg, degree = back.ndata["msg"], back.ndata["degree"]
    has_neighbors = degree > 0
    readout = torch.where(has_neighbors, msg / torch.where(has_neighbors, degree, 1.0), 0.0)
    return readout, degree


class MessagePassingRegularizer(GraphDistance):
    """Graph regularization as message passing: per-edge weighted distances summed at each node.

    Each edge ``u -> v`` sends ``w_e * d(out[u], out[v])``; node ``u`` reads out the sum
    over its edges divided by its weighted degree, and the term averages the node
    readouts weighted by weighted degree — numerically the ``distance`` regularizer.
    Nodes without neighbours read out 0; no edges give 0. Its parameters are those of
    ``distance``.
    """

    name = "message_passing"

    def forward(self, inp: zoo.RegularizerInput) -> torch.Tensor:
        """``multiplier`` times the weighted-degree average of the node readouts."""
        sample_out, neighbor_out = self.outputs(inp)
        graph = inp.graph
        if graph is None:  # a batch source without a regularization graph (items)
            return sample_out.sum() * 0.0
        if self.max_neighbors is not None or graph.edata.get("weight") is None:
            samples, neighbors, weight = neighbor_edges(graph, self.max_neighbors)
            graph = dgl.graph((samples, neighbors), num_nodes=graph.num_nodes())
            graph.edata["weight"] = weight
        if graph.num_edges() == 0:
            return sample_out.sum() * 0.0
        with graph.local_scope():
            graph.edata["weight"] = graph.edata["weight"].reshape(-1).float()
            readout, degree = node_regularization(graph, sample_out, neighbor_out,
                                                  self.distance)
        total = (degree * readout).sum() / degree.sum().clamp_min(torch.finfo(
            readout.dtype).tiny)
        return self.multiplier * total


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("regularizer", "message_passing", MessagePassingRegularizer)
