"""What the batch sources share: which nodes seed the batches, and the loss scaling that
makes a mini-batch's loss an unbiased estimate of the full-graph loss."""

from __future__ import annotations

from typing import Literal

import torch

Seeds = Literal["all", "labeled"]


class LabeledSet:
    """The labeled node ids and the labeled share of the seeds, recomputed only when the
    labeled mask changes (a self-training trainer grows it in place between phases);
    reading them costs a host synchronisation, so not once per epoch."""

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self.ids = torch.zeros(0, dtype=torch.long)
        self.rate = 1.0

    def update(self, labeled: torch.Tensor, seeds: Seeds) -> None:
        key = (id(labeled), labeled._version)
        if key != self._key:
            self._key = key
            self.ids = labeled.nonzero().squeeze(1)
            count = labeled.numel() if seeds == "all" else self.ids.numel()
            # Labeled seeds expected per seed: scaling a batch's summed cross-entropy by
            # it makes every batch an unbiased estimate of the full-graph mean loss.
            self.rate = max(self.ids.numel() / max(count, 1), 1e-12)


def seed_order(seeds: Seeds, labeled: LabeledSet, num_nodes: int,
               device: torch.device) -> torch.Tensor:
    """This epoch's seed nodes, shuffled."""
    pool = (torch.arange(num_nodes, device=device) if seeds == "all" else labeled.ids)
    return pool[torch.randperm(pool.numel(), device=device)]


def loss_rows(labeled_seeds: torch.Tensor, seeds: Seeds, labeled: LabeledSet,
              ) -> tuple[torch.Tensor, float | None]:
    """The loss rows of a batch whose seeds' labeled flags are ``labeled_seeds`` and the
    loss's divisor: every row and the mean when only labeled nodes seed the batches;
    the labeled rows and ``rate * batch size`` when every node does."""
    if seeds == "labeled":
        return torch.arange(labeled_seeds.numel(), device=labeled_seeds.device), None
    return labeled_seeds.nonzero().squeeze(1), labeled.rate * labeled_seeds.numel()
