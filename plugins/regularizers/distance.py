"""Regularizer ``distance``: Neural Structured Learning's graph regularization.

NSL (``keras/graph_regularization.py``) adds ``multiplier * sum_e w_e d(out_u, out_v)``
over each sample ``u``'s neighbours ``v``, reduced by the edge weights. Here every edge
``u -> v`` of the graph (the whole graph in full-graph training, the packed batch in
mini-batch training) is a (sample, neighbour) pair, labeled or not.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

import zoo
from zoo.schema import Ge
from zoo_plugins.neighbors import neighbor_edges
from zoo_plugins.regularizers.distances import (
    Distance,
    Target,
    Transform,
    check_distance_config,
    endpoint_outputs,
    pairwise_distance,
    target_output,
)


class GraphDistance(nn.Module):
    """Graph regularization (NSL): weighted distance between each node's output and its neighbours'.

    The term is ``multiplier * sum_e w_e d(out[u], out[v]) / sum_e w_e`` over the edges
    ``u -> v`` used (each node's top ``max_neighbors`` by weight), so it is a weighted
    mean distance per edge; no edges, or zero total weight, give 0. NSL reduces by the
    number of non-zero weights instead (SUM_BY_NONZERO_WEIGHTS); the two agree for
    unit weights. Distances follow NSL's ``pairwise_distance_wrapper`` with
    ``sum_over_axis=-1``; note that NSL's ``l2`` is the squared Euclidean distance.

    Args:
        multiplier: weight of this term in the loss (NSL's default is 0.01).
        distance: 'l1', 'l2' (squared), 'cosine', 'kl_divergence' (KL(sample ||
            neighbour)) or 'jensen_shannon'; the last two need transform 'softmax'.
        transform: applied to both sides' outputs before the distance: 'none' or
            'softmax'.
        target: which output is regularized: 'logits' (the model's output: class scores
            in NSL, the embedding itself for the embedding task), 'embedding' (the last
            hidden layer) or 'scores' (the class scores of the embedding task's head:
            with transform 'softmax', the predicted label distributions).
        max_neighbors: use only each node's top-k out-edges by weight (ties: the smaller
            neighbour id); null uses every edge.
        stop_gradient_neighbors: treat the neighbours' outputs as fixed targets (no
            gradient through them). NSL does not (its neighbours go through the same
            model with gradients), so the default is false.
    """

    name = "distance"

    def __init__(self, *, multiplier: Annotated[float, Ge(0)] = 0.01, distance: Distance = "l2",
                 transform: Transform = "none", target: Target = "logits",
                 max_neighbors: Annotated[int, Ge(1)] | None = None,
                 stop_gradient_neighbors: bool = False) -> None:
        super().__init__()
        check_distance_config(self.name, distance, transform)
        self.multiplier = multiplier
        self.distance = distance
        self.transform = transform
        self.target = target
        self.max_neighbors = max_neighbors
        self.stop_gradient_neighbors = stop_gradient_neighbors

    def outputs(self, inp: zoo.RegularizerInput) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample-side and neighbour-side rows (transformed; neighbours maybe detached)."""
        out = target_output(inp, self.target, self.name)
        return endpoint_outputs(out, self.transform, self.stop_gradient_neighbors)

    def forward(self, inp: zoo.RegularizerInput) -> torch.Tensor:
        """``multiplier`` times the weighted mean edge distance of ``inp.graph``."""
        sample_out, neighbor_out = self.outputs(inp)
        if inp.graph is None:  # a batch source without a regularization graph (items)
            return sample_out.sum() * 0.0
        samples, neighbors, weight = neighbor_edges(inp.graph, self.max_neighbors)
        if samples.numel() == 0:
            return sample_out.sum() * 0.0  # keeps the graph connected for backward
        d = pairwise_distance(sample_out[samples], neighbor_out[neighbors], self.distance)
        total_weight = weight.sum()
        loss = (weight * d).sum() / total_weight.clamp_min(torch.finfo(d.dtype).tiny)
        return self.multiplier * loss


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("regularizer", "distance", GraphDistance)
