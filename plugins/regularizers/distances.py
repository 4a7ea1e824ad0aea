"""Distances between a node's output and its neighbours', as Neural Structured Learning
defines them (``neural_structured_learning/lib/distances.py``).

NSL computes every distance through ``pairwise_distance_wrapper``; with
``sum_over_axis=-1`` (one distance per sample pair, the setting graph regularization
needs) its definitions are, for a sample's output ``a`` and a neighbour's output ``b``:

- ``l1``: ``sum |a - b|`` (``absolute_difference`` rescaled by the feature count).
- ``l2``: ``sum (a - b)^2`` — the *squared* Euclidean distance (``mean_squared_error``
  rescaled by the feature count), not its square root.
- ``cosine``: ``1 - <a/|a|, b/|b|>`` (both sides L2-normalized first, with NSL's
  ``l2_normalize`` floor of 1e-12 on the squared norm).
- ``kl_divergence``: ``KL(a || b) = sum a log(a + eps) - a log(b + eps)``, eps = 1e-7;
  the sample is the "true" distribution and the neighbour the "predicted" one.
- ``jensen_shannon``: ``KL(a || m)/2 + KL(b || m)/2`` with ``m = (a + b)/2``.

KL and Jensen-Shannon compare probability distributions, so they need
``transform: softmax`` (NSL asserts the same).
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from zoo.errors import ConfigError

Distance = Literal["l1", "l2", "cosine", "kl_divergence", "jensen_shannon"]
Transform = Literal["none", "softmax"]
Target = Literal["logits", "embedding", "scores"]

KL_EPSILON = 1e-7  # NSL's _kl_divergence_fn: keeps log() finite where a probability is 0
NORMALIZE_EPSILON = 1e-12  # tf.nn.l2_normalize's floor on the squared norm


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Row-wise ``KL(p || q)`` of probability rows, with NSL's epsilon inside the logs."""
    return (p * torch.log(p + KL_EPSILON) - p * torch.log(q + KL_EPSILON)).sum(-1)


def pairwise_distance(sources: torch.Tensor, targets: torch.Tensor,
                      distance: Distance) -> torch.Tensor:
    """One distance per row pair of ``sources`` and ``targets`` (``(E, D)`` -> ``(E,)``)."""
    if distance == "l1":
        return (sources - targets).abs().sum(-1)
    if distance == "l2":
        return (sources - targets).pow(2).sum(-1)
    if distance == "cosine":
        a = sources * torch.rsqrt(sources.pow(2).sum(-1, keepdim=True).clamp_min(
            NORMALIZE_EPSILON))
        b = targets * torch.rsqrt(targets.pow(2).sum(-1, keepdim=True).clamp_min(
            NORMALIZE_EPSILON))
        return 1.0 - (a * b).sum(-1)
    if distance == "kl_divergence":
        return kl_divergence(sources, targets)
    if distance == "jensen_shannon":
        mean = 0.5 * (sources + targets)
        return 0.5 * kl_divergence(sources, mean) + 0.5 * kl_divergence(targets, mean)
    raise ValueError(f"unknown distance {distance!r}")


def transform_outputs(x: torch.Tensor, transform: Transform) -> torch.Tensor:
    """Apply ``transform`` to a model's output rows before measuring distances."""
    return torch.softmax(x, dim=-1) if transform == "softmax" else x


def check_distance_config(name: str, distance: Distance, transform: Transform) -> None:
    """Raise :class:`ConfigError` for a graph-regularization setting that cannot work."""
    if distance in ("kl_divergence", "jensen_shannon") and transform != "softmax":
        raise ConfigError(f"regularizer '{name}': distance '{distance}' compares probability "
                          "distributions; set transform: softmax")


def target_output(inp: Any, target: Target, who: str) -> torch.Tensor:
    """The output rows a regularizer acts on: the model's output (``logits``), its last
    hidden layer (``embedding``), or the class scores of the task's head (``scores``:
    the embedding task's predicted label distribution, with transform 'softmax')."""
    if target == "logits":
        return inp.logits
    if target == "embedding":
        return inp.embedding
    if inp.head is None:
        raise ConfigError(f"regularizer '{who}': target 'scores' needs a task whose models "
                          "have a classifier head (task 'embedding'); use 'logits'")
    return inp.head.scores(inp.logits)


def endpoint_outputs(outputs: torch.Tensor, transform: Transform,
                     stop_gradient_neighbors: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample-side and neighbour-side output rows after ``transform`` (the neighbour
    side detached when ``stop_gradient_neighbors``)."""
    sample = transform_outputs(outputs, transform)
    neighbor = sample.detach() if stop_gradient_neighbors else sample
    return sample, neighbor
