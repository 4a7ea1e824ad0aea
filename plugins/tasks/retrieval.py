"""Retrieval metrics of an embedding: held-out queries against an index of items.

An index item is *relevant* to a query when both have the same class. Similarity is
the cosine of the embeddings. With ``R`` the relevant items in the index and ``rel_j``
whether the ``j``-th nearest index item is relevant:

- ``precision_at_k``: ``sum_{j<=k} rel_j / k``;
- ``recall_at_k``: ``sum_{j<=k} rel_j / R``;
- ``map_at_k``: the mean over queries of ``AP@k = sum_{j<=k} P@j rel_j / min(k, R)``
  (the usual truncated average precision);
- ``triplet_accuracy``: for a query (anchor), a relevant index item (positive) and an
  irrelevant one (negative), whether the anchor is more similar to the positive (a tie
  counts one half, so a collapsed embedding scores 0.5 whatever the order). It is
  computed exactly over every (positive, negative) pair of every query — the area under
  the ROC curve of each query's similarities, from their ranks — rather than on a
  sampled set of triplets, so it does not depend on a sampling seed.

Each is the mean over queries that have at least one relevant (and, for triplets, one
irrelevant) index item. Queries are processed in chunks, so memory is
``O(chunk x index size)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_similarity_matrix(queries: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``(Q, N)`` cosine similarities (a zero vector is similar to nothing: 0)."""
    return F.normalize(queries, dim=1) @ F.normalize(index, dim=1).T


def tie_averaged_ranks(sims: torch.Tensor, ascending: torch.Tensor) -> torch.Tensor:
    """1-based ascending ranks within each row, tied values sharing their mean rank (so
    a tied positive/negative pair counts one half in the rank-sum AUC)."""
    rows, n = sims.shape
    values, order = sims.sort(1)
    starts = torch.ones_like(values, dtype=torch.bool)
    starts[:, 1:] = values[:, 1:] != values[:, :-1]
    offsets = torch.arange(rows, device=sims.device).unsqueeze(1) * n
    group = (starts.cumsum(1) - 1 + offsets).flatten()
    positions = ascending.expand(rows, -1).flatten()
    mean = torch.zeros(rows * n, dtype=torch.float64, device=sims.device).scatter_reduce_(
        0, group, positions, "mean", include_self=False)
    return torch.empty_like(values, dtype=torch.float64).scatter_(
        1, order, mean[group].view(rows, n))


def retrieval_metrics(queries: torch.Tensor, query_classes: torch.Tensor,
                      index: torch.Tensor, index_classes: torch.Tensor, *, k: int = 10,
                      chunk: int = 1024) -> dict[str, torch.Tensor]:
    """Precision, recall and mAP at ``k`` and triplet accuracy of ``queries`` against
    ``index`` (0-dim tensors on the embeddings' device; 0 when nothing can be measured)."""
    zero = queries.new_zeros(())
    names = (f"precision_at_{k}", f"recall_at_{k}", f"map_at_{k}", "triplet_accuracy")
    if queries.shape[0] == 0 or index.shape[0] == 0:
        return dict.fromkeys(names, zero)
    k_eff = min(k, index.shape[0])
    num_classes = int(max(int(query_classes.max()), int(index_classes.max()))) + 1
    per_class = torch.bincount(index_classes, minlength=num_classes)
    sums = torch.zeros(4, dtype=torch.float64, device=queries.device)
    counts = torch.zeros(2, dtype=torch.float64, device=queries.device)
    positions = torch.arange(1, k_eff + 1, device=queries.device, dtype=torch.float64)
    ascending = torch.arange(1, index.shape[0] + 1, device=queries.device,
                             dtype=torch.float64).unsqueeze(0)  # 1-based ranks
    for start in range(0, queries.shape[0], chunk):
        q, qc = queries[start:start + chunk], query_classes[start:start + chunk]
        sims = cosine_similarity_matrix(q, index)
        relevant = index_classes.unsqueeze(0) == qc.unsqueeze(1)  # (q, N)
        r = per_class[qc].double()
        has = r > 0
        top = sims.topk(k_eff, dim=1).indices
        hits = relevant.gather(1, top).double()  # (q, k)
        precision_at = hits.cumsum(1) / positions
        ap = (precision_at * hits).sum(1) / r.clamp(max=k).clamp_min(1)
        sums[0] += (hits.sum(1) / k)[has].sum()
        sums[1] += (hits.sum(1) / r.clamp_min(1))[has].sum()
        sums[2] += ap[has].sum()
        counts[0] += has.sum()
        # AUC from ranks: the positives' rank sum minus its minimum, over P * N_neg.
        negatives = index.shape[0] - r
        ranks = tie_averaged_ranks(sims, ascending)
        pos_rank_sum = (ranks * relevant).sum(1)
        auc = (pos_rank_sum - r * (r + 1) / 2) / (r * negatives).clamp_min(1)
        both = has & (negatives > 0)
        sums[3] += auc[both].sum()
        counts[1] += both.sum()
    values = torch.stack([sums[0] / counts[0].clamp_min(1), sums[1] / counts[0].clamp_min(1),
                          sums[2] / counts[0].clamp_min(1), sums[3] / counts[1].clamp_min(1)])
    return {name: v.float() for name, v in zip(names, values)}
