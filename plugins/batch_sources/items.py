"""Batch source ``items``: plain mini-batches of items (images, or nodes without their
graph) for graph-free models."""

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


class Items:
    """Shuffled mini-batches of items for graph-free models (an encoder alone: MLP, ResNet).

    Args:
        batch_size: items per training batch.
        seeds: which items fill the batches: 'labeled' (the training items; the loss is
            the batch mean) or 'all' (the loss covers the labeled ones, scaled to the
            full-set mean; for regularizers that use unlabeled items).
        infer_batch_size: items per forward pass when the model is evaluated on all.
    """

    graph_input = "none"

    def __init__(self, *, batch_size: Annotated[int, Ge(1)] = 128, seeds: Seeds = "labeled",
                 infer_batch_size: Annotated[int, Ge(1)] = 4096) -> None:
        self.batch_size, self.seeds = batch_size, seeds
        self.infer_batch_size = infer_batch_size
        self.labeled = LabeledSet()

    def bind(self, data: zoo.GraphData, graph: Any, runtime: zoo.Runtime) -> None:
        """Index the feature rows once."""
        self.data, self.device = data, runtime.device
        self.rows = FeatureRows(data.features)
        self.share = RankShare(runtime)

    def inputs_of(self, node_ids: torch.Tensor) -> torch.Tensor:
        """Input rows of arbitrary items."""
        return self.rows.take(node_ids)

    def epoch(self, labels: torch.Tensor, labeled: torch.Tensor,
              with_reg_graph: bool = False) -> Iterator[zoo.Batch]:
        """Shuffled items in batches of ``batch_size``."""
        self.labeled.update(labeled, self.seeds)
        order = seed_order(self.seeds, self.labeled, self.data.num_nodes, self.device,
                           self.share)
        for ids in order.split(self.share.batch_size(self.batch_size)):
            rows, norm = loss_rows(labeled[ids], self.seeds, self.labeled)
            yield zoo.Batch(graph=None, inputs=self.rows.take(ids), node_ids=ids,
                            labels=labels[ids], labeled=labeled[ids], loss_rows=rows,
                            loss_norm=norm)

    def infer(self, model: Any) -> zoo.ModelOutput:
        """The model on every item, ``infer_batch_size`` at a time."""
        return infer_graph_free(model, self.rows, self.data.num_nodes, self.device,
                                self.infer_batch_size)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("batch_source", "items", Items)
