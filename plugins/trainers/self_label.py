"""Self-labeling for co-training: extend the labeled set with the classifier's most
confident predictions (Graph Agreement Models, Stretcu et al. 2019, Section 3)."""

from __future__ import annotations

import torch


def class_quotas(labels: torch.Tensor, num_classes: int, num_samples: int) -> torch.Tensor:
    """How many nodes of each class one self-labeling round may add: ``num_samples``
    split in proportion to ``labels`` (the original labeled nodes), rounded down."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    return torch.floor(counts / max(labels.numel(), 1) * num_samples).long()


def select_self_labels(probs: torch.Tensor, candidates: torch.Tensor, num_samples: int,
                       min_confidence: float, quotas: torch.Tensor | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The nodes to self-label and their predicted labels, most confident first.

    Only ``candidates`` (a boolean mask; the caller leaves out labeled and validation
    nodes, and test nodes unless the setting is transductive) whose top class
    probability is at least ``min_confidence`` qualify.
    Without ``quotas`` the ``num_samples`` most confident qualify; with per-class
    ``quotas`` the most confident of each predicted class, up to its quota (classes
    short of candidates add fewer, so the round may add fewer than ``num_samples``).
    """
    confidence, predicted = probs.max(dim=1)
    eligible = (candidates & (confidence >= min_confidence)).nonzero().squeeze(1)
    order = torch.argsort(confidence[eligible], descending=True, stable=True)
    nodes, labels = eligible[order], predicted[eligible[order]]
    if quotas is None:
        return nodes[:num_samples], labels[:num_samples]
    # Rank of each node among the candidates of its predicted class (0 = most confident).
    one_hot = torch.nn.functional.one_hot(labels, quotas.numel())
    rank = one_hot.cumsum(0).gather(1, labels.unsqueeze(1)).squeeze(1) - 1
    keep = rank < quotas[labels]
    return nodes[keep], labels[keep]
