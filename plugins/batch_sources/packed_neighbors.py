"""Batch source ``packed_neighbors``: NSL's ``pack_nbrs`` mode of graph regularization.

NSL's ``tools/pack_nbrs.py`` augments every training example with the features of its
top-``max_nbrs`` neighbours by edge weight, so that a batch carries everything the graph
regularizer needs. Here each batch of seed nodes is packed with every seed's top
``max_neighbors`` neighbours (:class:`zoo_plugins.neighbors.NeighborTable`); the model
(encoder-only: it sees no graph) runs on the packed nodes' features, the loss covers the
labeled seeds and the regularizers see the packed graph (seed -> neighbour edges).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import torch

import zoo
from zoo.schema import Ge
from zoo_plugins.batch_sources.common import (
    FeatureRows,
    LabeledSet,
    RankShare,
    infer_graph_free,
    Seeds,
    loss_rows,
    seed_order,
)
from zoo_plugins.neighbors import NeighborTable


class PackedNeighbors:
    """Seed nodes packed with their top neighbours (NSL's pack_nbrs), for encoder-only models.

    Seeding with 'all' nodes visits every edge of the regularized graph once per epoch,
    as full-graph training does, so both modes agree; 'labeled' seeds only the labeled
    nodes (NSL's mode, which leaves out the edges between unlabeled nodes). With 'all',
    a batch's summed cross-entropy is divided by the expected number of labeled seeds,
    so that its mean over an epoch is the full-graph loss.

    Args:
        batch_size: seed nodes per mini-batch.
        max_neighbors: neighbours packed with each seed (its top-k by edge weight, ties
            to the smaller node id); null packs all of them.
        seeds: which nodes seed the mini-batches: 'all' (agrees with full-graph
            training) or 'labeled' (the labeled nodes only, as NSL).
        infer_batch_size: nodes per forward pass when the model is evaluated on all
            (bounds the memory of evaluating an image encoder over a whole image set).
    """

    graph_input = "none"

    def __init__(self, *, batch_size: Annotated[int, Ge(1)] = 128,
                 max_neighbors: Annotated[int, Ge(1)] | None = None,
                 seeds: Seeds = "all", infer_batch_size: Annotated[int, Ge(1)] = 4096) -> None:
        self.batch_size, self.max_neighbors, self.seeds = batch_size, max_neighbors, seeds
        self.infer_batch_size = infer_batch_size
        self.labeled = LabeledSet()

    def bind(self, data: zoo.GraphData, graph: Any, runtime: zoo.Runtime) -> None:
        """Rank every node's neighbours once; index the feature rows once."""
        if graph is None:
            raise zoo.ConfigError("batch source 'packed_neighbors' needs a graph to pack "
                                  "neighbours from; add a graph: section or use 'items'")
        self.data, self.device = data, runtime.device
        self.table = NeighborTable(graph, self.max_neighbors)
        self.rows = FeatureRows(data.features)
        self.share = RankShare(runtime)

    def inputs_of(self, node_ids: torch.Tensor) -> torch.Tensor:
        """Feature rows of arbitrary nodes (what ``RegularizerInput.model`` runs on)."""
        return self.rows.take(node_ids)

    def epoch(self, labels: torch.Tensor, labeled: torch.Tensor,
              with_reg_graph: bool = False) -> Iterator[zoo.Batch]:
        """Shuffled seeds in batches, each packed with its seeds' neighbours."""
        self.labeled.update(labeled, self.seeds)
        order = seed_order(self.seeds, self.labeled, self.data.num_nodes, self.device,
                           self.share)
        for seeds in order.split(self.share.batch_size(self.batch_size)):
            # Without a regularizer the neighbours would only cost time: seeds alone.
            packed, node_ids = (self.table.pack(seeds) if with_reg_graph else (None, seeds))
            rows, norm = loss_rows(labeled[seeds], self.seeds, self.labeled)
            yield zoo.Batch(graph=None, inputs=self.rows.take(node_ids), node_ids=node_ids,
                            labels=labels[node_ids], labeled=labeled[node_ids], loss_rows=rows,
                            loss_norm=norm, reg_graph=packed)

    def infer(self, model: Any) -> zoo.ModelOutput:
        """The (graph-free) model on every node's features, ``infer_batch_size`` at a time."""
        return infer_graph_free(model, self.rows, self.data.num_nodes, self.device,
                                self.infer_batch_size)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("batch_source", "packed_neighbors", PackedNeighbors)
