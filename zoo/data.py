"""The values that flow between components: a graph dataset, a model's output, and
what a regularizer sees. These are the contracts plugins code against."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class GraphData:
    """A node-classification dataset: one graph, node features, labels and a split.

    ``features`` is ``(N, F)`` float32 and may be a sparse COO tensor (row-normalized
    bag-of-words stay sparse); ``labels`` is ``(N,)`` int64; the masks are ``(N,)`` bool.
    ``graph`` is a DGL graph over the same N nodes (edge weights, if any, in
    ``graph.edata["weight"]``). ``extra`` carries dataset-specific values.
    """

    graph: Any  # dgl.DGLGraph; typed loosely so the core does not import DGL eagerly
    features: torch.Tensor
    labels: torch.Tensor
    train_mask: torch.Tensor
    val_mask: torch.Tensor
    test_mask: torch.Tensor
    num_classes: int
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.features.shape[1])

    def describe(self) -> str:
        """One line: nodes, edges, features, classes and split sizes."""
        return (
            f"{self.name}: {self.num_nodes} nodes, {self.graph.num_edges()} edges, "
            f"{self.num_features} features, {self.num_classes} classes, "
            f"split {int(self.train_mask.sum())}/{int(self.val_mask.sum())}/"
            f"{int(self.test_mask.sum())}"
        )


@dataclass
class ModelOutput:
    """What a classifier returns: class ``logits`` and the ``embedding`` they came
    from (the last hidden layer), both with one row per input node."""

    logits: torch.Tensor
    embedding: torch.Tensor


@dataclass
class RegularizerInput:
    """Everything a regularizer may use for one training step.

    Rows of ``logits``/``embedding`` are the nodes of ``graph``: in full-graph mode
    ``graph`` is the whole (weighted) graph; in mini-batch mode it is the packed
    subgraph of a batch (seed nodes plus up to ``max_neighbors`` neighbours each),
    with ``node_ids`` mapping its rows back to the dataset's node ids. Edge weights,
    when present, are in ``graph.edata["weight"]``. ``labels``/``labeled`` are
    row-aligned; only rows where ``labeled`` is true carry a trustworthy label.
    ``model(ids)`` gives the :class:`ModelOutput` of arbitrary rows/node ids (in
    full-graph mode it indexes this step's outputs) for regularizers that sample their
    own pairs; ``step`` is the optimizer step count.
    """

    graph: Any
    logits: torch.Tensor
    embedding: torch.Tensor
    labels: torch.Tensor
    labeled: torch.Tensor
    node_ids: torch.Tensor
    model: Any = None
    step: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
