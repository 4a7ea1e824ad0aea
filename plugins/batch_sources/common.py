"""What the batch sources share: which nodes seed the batches, the loss scaling that
makes a mini-batch's loss an unbiased estimate of the full-graph loss, and the rows of
a (sparse or dense) feature matrix for a batch. Nothing here needs DGL: graph-free
sources (``items``) run where DGL is not installed."""

from __future__ import annotations

from typing import Literal

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
