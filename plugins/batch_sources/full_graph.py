"""Batch source ``full_graph``: the whole graph in every step (full-batch training)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import torch

import zoo
from zoo.schema import Ge
from zoo_plugins.batch_sources.common import LabeledSet, RankShare


class FullGraph:
    """The whole graph in every step: the model sees every node, the loss the labeled ones.

    The classic semi-supervised setting of GCN, GAM and NSL's full-graph mode: each step
    computes every node's output; regularizers see the whole (weighted) graph.

    Args:
        batch_size: labeled nodes in the loss of one step; an epoch is then one step per
            batch of the shuffled labeled nodes, each still running the model on the
            whole graph. null: all labeled nodes, one step per epoch. Several processes
            (``torch.distributed``) split each step's labeled nodes between them.
    """

    graph_input = "whole"

    def __init__(self, *, batch_size: Annotated[int, Ge(1)] | None = None) -> None:
        self.batch_size = batch_size
        self.labeled = LabeledSet()

    def bind(self, data: zoo.GraphData, graph: Any, runtime: zoo.Runtime) -> None:
        """Keep the data and graph; node ids are the rows."""
        self.data, self.graph = data, graph
        self.node_ids = torch.arange(data.num_nodes, device=runtime.device)
        self.share = RankShare(runtime)

    def epoch(self, labels: torch.Tensor, labeled: torch.Tensor,
              with_reg_graph: bool = False) -> Iterator[zoo.Batch]:
        """One batch (or one per ``batch_size`` labeled nodes), all on the whole graph."""
        self.labeled.update(labeled, "labeled")
        ids = self.labeled.ids
        size = self.batch_size or ids.numel()
        if self.share.world == 1 and size >= ids.numel():
            chunks = [ids]  # one step on every labeled node: no shuffle needed
        else:  # shuffled batches (this rank's share of each, with several processes)
            chunks = self.share.order(ids).split(self.share.batch_size(size))
        for rows in chunks:
            yield zoo.Batch(graph=self.graph, inputs=self.data.features, node_ids=self.node_ids,
                            labels=labels, labeled=labeled, loss_rows=rows,
                            reg_graph=self.graph)

    def infer(self, model: Any) -> zoo.ModelOutput:
        """The model on the whole graph."""
        return model(self.graph, self.data.features)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("batch_source", "full_graph", FullGraph)
