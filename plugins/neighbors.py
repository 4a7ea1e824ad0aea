"""Graph helpers shared by graph builders, regularizers, batch sources and trainers:
ranking each node's neighbours by edge weight, and neighbour packing for mini-batch
graph regularization (NSL's ``pack_nbrs``).

Edges follow the zoo's convention (``graph_builders/common.py``): ``u -> v`` says ``v``
is a neighbour of sample ``u``, so a node's neighbours are its out-edges.

NSL's ``tools/pack_nbrs.py`` augments every training example with the features of its
top-``max_nbrs`` neighbours by edge weight, so a batch carries everything the graph
regularizer needs. :func:`pack_neighbors` does the same on a DGL graph: each seed node
gets its top ``max_neighbors`` out-neighbours, and the batch becomes a small graph of
seed -> neighbour edges over the seeds plus those neighbours. Everything is vectorised
CSR slicing: per-node neighbour lists are ranked once (:class:`NeighborTable`) and a
batch is a gather over the seeds' row ranges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import dgl


def edge_weights(graph: dgl.DGLGraph) -> torch.Tensor:
    """The graph's float edge weights (``edata['weight']``), or ones if it has none."""
    weight = graph.edata.get("weight")
    if weight is None:
        return torch.ones(graph.num_edges(), device=graph.device)
    return weight.reshape(-1).float()


def neighbor_edges(graph: dgl.DGLGraph, max_neighbors: int | None,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(samples, neighbors, weights)`` of the edges graph regularization uses: every
    edge ``u -> v`` pairs sample ``u`` with its neighbour ``v``; with ``max_neighbors``
    only each sample's top-``max_neighbors`` out-edges by weight are kept (ties go to
    the smaller neighbour id)."""
    src, dst = graph.edges()
    weight = edge_weights(graph)
    if max_neighbors is not None:
        keep = top_neighbor_edges(src, dst, weight, graph.num_nodes(), max_neighbors)
        if keep.numel() < src.numel():
            src, dst, weight = src[keep], dst[keep], weight[keep]
    return src, dst, weight


def rank_edges(src: torch.Tensor, dst: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Edge ids ordered by source node, then by descending weight, then by ascending
    destination id — so a tie in weight always resolves the same way."""
    order = torch.argsort(dst, stable=True)
    order = order[torch.argsort(-weight[order], stable=True)]
    return order[torch.argsort(src[order], stable=True)]


def top_neighbor_edges(src: torch.Tensor, dst: torch.Tensor, weight: torch.Tensor,
                       num_nodes: int, k: int) -> torch.Tensor:
    """Ids of each source node's top-``k`` out-edges by weight (ties: smaller
    destination id first), grouped by source node in :func:`rank_edges` order."""
    order = rank_edges(src, dst, weight)
    counts = torch.bincount(src, minlength=num_nodes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(order.numel(), device=order.device) - starts[src[order]]
    return order[rank < k]


def gather_rows(indptr: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the entries of CSR ``rows`` (concatenated in order) and, for each
    position, the index into ``rows`` it belongs to."""
    starts = indptr[rows]
    counts = indptr[rows + 1] - starts
    owner = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), counts)
    first = torch.cumsum(counts, 0) - counts
    positions = starts[owner] + torch.arange(owner.numel(), device=owner.device) - first[owner]
    return positions, owner


class NeighborTable:
    """Every node's top-``max_neighbors`` out-neighbours by weight, ranked once, as CSR.

    ``max_neighbors=None`` keeps every neighbour. :meth:`pack` builds a batch's graph.
    """

    def __init__(self, graph: dgl.DGLGraph, max_neighbors: int | None) -> None:
        src, dst = graph.edges()
        weight = edge_weights(graph)
        if max_neighbors is None:
            keep = rank_edges(src, dst, weight)
        else:
            keep = top_neighbor_edges(src, dst, weight, graph.num_nodes(), max_neighbors)
        self.num_nodes = graph.num_nodes()
        self.neighbors = dst[keep]
        self.weights = weight[keep]
        counts = torch.bincount(src[keep], minlength=self.num_nodes)
        self.indptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])

    def pack(self, seeds: torch.Tensor) -> tuple[dgl.DGLGraph, torch.Tensor]:
        """The batch graph of ``seeds`` (distinct node ids) and its dataset node ids.

        Node ``i`` of the returned graph is dataset node ``node_ids[i]``; the seeds come
        first, in the order given, then their neighbours that are not seeds (ascending
        id). Edges run seed -> neighbour and carry their weights in ``edata['weight']``.
        """
        seeds = seeds.long()
        positions, owner = gather_rows(self.indptr, seeds)
        neighbors = self.neighbors[positions]
        extra = torch.unique(neighbors)
        extra = extra[~torch.isin(extra, seeds)]
        node_ids = torch.cat([seeds, extra])
        # Local ids through a sorted lookup, so a batch costs O(batch) and not O(graph).
        sorted_ids, perm = torch.sort(node_ids)
        local = perm[torch.searchsorted(sorted_ids, neighbors)]
        import dgl  # here, so that the DGL-free helpers above load without it

        packed = dgl.graph((owner, local), num_nodes=node_ids.numel())
        packed.edata["weight"] = self.weights[positions]
        return packed, node_ids


def pack_neighbors(graph: dgl.DGLGraph, seeds: torch.Tensor,
                   max_neighbors: int | None) -> tuple[dgl.DGLGraph, torch.Tensor]:
    """Pack ``seeds`` with their top-``max_neighbors`` neighbours by weight (ties: the
    smaller node id) into ``(packed graph, node_ids)``; node ``i`` of the packed graph is
    dataset node ``node_ids[i]``, the seeds first. For many batches over one graph,
    build a :class:`NeighborTable` once and call its ``pack``."""
    return NeighborTable(graph, max_neighbors).pack(seeds)
