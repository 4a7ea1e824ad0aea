"""What the batch sources share: which nodes seed the batches, the loss scaling that
makes a mini-batch's loss an unbiased estimate of the full-graph loss, and the rows of
a (sparse or dense) feature matrix for a batch. Nothing here needs DGL: graph-free
sources (``items``) run where DGL is not installed."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from zoo_plugins.neighbors import gather_rows

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


class RankShare:
    """This process's share of each epoch's seeds when several train together
    (``torch.distributed``; see :class:`zoo.Runtime`).

    In one process an epoch is the seeds shuffled by torch's generator, in batches of
    ``batch_size``. With ``W`` processes every rank shuffles the same way (a generator
    seeded alike on every rank when the source is bound, advanced each epoch), pads the
    order by repeating its first seeds to a multiple of ``W``, takes every ``W``-th seed
    from its rank on, and batches them by ``ceil(batch_size / W)``: each step's
    ``W`` batches together make one batch of about ``batch_size`` seeds, gradients are
    averaged over them, and every rank takes the same number of steps.
    """

    def __init__(self, runtime: Any) -> None:
        self.rank = int(getattr(runtime, "rank", 0))
        self.world = int(getattr(runtime, "world_size", 1))
        # Drawn from torch's generator right after the seed is set: equal on every rank.
        self.seed = int(torch.randint(0, 2**62, (1,))) if self.world > 1 else 0
        self.epochs = 0

    def order(self, pool: torch.Tensor) -> torch.Tensor:
        """This rank's seeds of ``pool`` for the next epoch, shuffled."""
        if self.world == 1:
            return pool[torch.randperm(pool.numel(), device=pool.device)]
        generator = torch.Generator().manual_seed(self.seed + self.epochs)
        self.epochs += 1
        order = pool[torch.randperm(pool.numel(), generator=generator).to(pool.device)]
        pad = (-order.numel()) % self.world
        if pad:
            order = torch.cat([order, order[:pad].repeat(math.ceil(pad / max(order.numel(),
                                                                                1)))[:pad]])
        return order[self.rank::self.world]

    def batch_size(self, batch_size: int) -> int:
        """Seeds per batch on this rank."""
        return max(1, math.ceil(batch_size / self.world))


def seed_order(seeds: Seeds, labeled: LabeledSet, num_nodes: int,
               device: torch.device, share: RankShare | None = None) -> torch.Tensor:
    """This epoch's seed nodes, shuffled (this rank's share of them, with ``share``)."""
    pool = (torch.arange(num_nodes, device=device) if seeds == "all" else labeled.ids)
    if share is not None:
        return share.order(pool)
    return pool[torch.randperm(pool.numel(), device=device)]


def loss_rows(labeled_seeds: torch.Tensor, seeds: Seeds, labeled: LabeledSet,
              ) -> tuple[torch.Tensor, float | None]:
    """The loss rows of a batch whose seeds' labeled flags are ``labeled_seeds`` and the
    loss's divisor: every row and the mean when only labeled nodes seed the batches;
    the labeled rows and ``rate * batch size`` when every node does."""
    if seeds == "labeled":
        return torch.arange(labeled_seeds.numel(), device=labeled_seeds.device), None
    return labeled_seeds.nonzero().squeeze(1), labeled.rate * labeled_seeds.numel()


class FeatureRows:
    """Rows of a (sparse or dense) node-feature matrix for a batch's node ids.

    A sparse COO matrix is indexed through its CSR row pointers, once computed, and the
    batch's rows come back as a coalesced COO matrix (what the sparse-aware layers take).
    """

    def __init__(self, features: torch.Tensor) -> None:
        self.features = features
        if features.is_sparse:
            coo = features.coalesce()
            row, self.columns = coo.indices()
            self.values = coo.values()
            counts = torch.bincount(row, minlength=features.shape[0])
            self.indptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])

    def take(self, node_ids: torch.Tensor) -> torch.Tensor:
        """The feature rows of ``node_ids``, in that order."""
        if not self.features.is_sparse:
            return self.features[node_ids]
        positions, owner = gather_rows(self.indptr, node_ids)
        indices = torch.stack([owner, self.columns[positions]])
        # Rows come out in order and columns stay sorted within a row: already coalesced,
        # and valid by construction, so the invariant check would be waste.
        return torch.sparse_coo_tensor(indices, self.values[positions],
                                       (node_ids.numel(), self.features.shape[1]),
                                       is_coalesced=True, check_invariants=False)


def infer_graph_free(model, rows: FeatureRows, num_nodes: int, device: torch.device,
                     batch_size: int):
    """A graph-free model's output for every node, ``batch_size`` rows per forward pass
    (what bounds the memory of an image encoder evaluated over a whole image set)."""
    from zoo.contracts import ModelOutput

    ids = torch.arange(num_nodes, device=device)
    return ModelOutput.cat([model(None, rows.take(chunk)) for chunk in ids.split(batch_size)])
