"""A linear classifier head for huge label spaces: sampled softmax with the log-Q correction.

A full softmax over C classes scores every class for every row: a (B, C) logit matrix and
its gradient, O(B·C·D) time, and a dense (C, D) weight gradient each step. At C = 1M,
B = 256 the logits alone are 1 GiB (twice that with their gradient) before the weight,
its gradient and Adam's two moments (4·C·D floats). Sampled softmax (Bengio & Senécal
2008; Jean et al. 2015, "On Using Very Large Target Vocabulary"; TensorFlow's
``tf.nn.sampled_softmax_loss``) scores, per step, each row's true class and S classes
drawn from a proposal distribution q, shared by the batch: a (B, 1 + S) logit matrix,
O(B·S·D) time, and a weight gradient touching only those ≤ B + S rows.

The softmax over a sample is biased toward the classes q favours; subtracting
``log(expected count)`` from every candidate's logit (the log-Q correction) makes the
sampled partition function an importance-sampled estimate of the full one (the estimate
is a ratio, so the loss stays slightly biased for finite S, but consistent). Candidates
are drawn *with replacement*, so a class's expected count among S draws is exactly
``S·q(k)`` (TensorFlow's default draws without replacement and needs
another expression). A drawn class that equals a row's own label (an accidental hit) is
masked out of that row when ``remove_accidental_hits``, so the true class is not also
counted as a negative.

Proposals: ``uniform`` (q = 1/C, ``torch.randint``) and ``log_uniform`` (Zipfian,
q(k) = log((k + 2)/(k + 1)) / log(C + 1)), which assumes classes are numbered by
decreasing frequency (class 0 the most frequent), as word vocabularies usually are. It is
sampled in O(S) by inverse CDF, k = ⌊exp(u·log(C + 1))⌋ − 1, never materialising a
C-long probability vector. Both use torch's global RNG, which the zoo seeds.

Memory: with ``sparse=True`` the candidate rows of the weight and bias are gathered so
that their gradients are sparse tensors over those rows; the parameters carry
``sparse_grad = True`` so the zoo's ``adam``/``adamw`` give them ``torch.optim.SparseAdam``
(whose moments are still dense, C·D each, but whose step touches only the gradient's
rows). In evaluation the full softmax is used; ``predict`` takes the arg-max over chunks
of classes and the no-grad loss a running log-sum-exp, so neither builds a (B, C) matrix.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

Sampler = Literal["uniform", "log_uniform"]


def log_uniform_sample(num_sampled: int, num_classes: int,
                       device: torch.device | str | None = None) -> torch.Tensor:
    """``num_sampled`` class ids drawn with replacement from the log-uniform (Zipfian)
    distribution over ``num_classes``, by inverse CDF in O(num_sampled)."""
    # The CDF of class k is log(k + 2)/log(C + 1); float64 keeps the floor exact at 1M.
    u = torch.rand(num_sampled, dtype=torch.float64, device=device)
    ids = torch.exp(u * math.log(num_classes + 1)).floor_().long() - 1
    return ids.clamp_(0, num_classes - 1)


def log_uniform_log_prob(ids: torch.Tensor, num_classes: int) -> torch.Tensor:
    """log q(k) of the log-uniform distribution for each id (float64)."""
    k = ids.to(torch.float64)
    return torch.log(torch.log1p(1.0 / (k + 1.0))) - math.log(math.log(num_classes + 1))


class _SparseRowGather(torch.autograd.Function):
    """``table[ids]`` whose gradient is a sparse COO tensor over the gathered rows.

    ``F.embedding(sparse=True)`` needs a 2-D table, and a 1-D bias cannot be viewed as
    one: a sparse gradient cannot flow back through the reshape."""

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.shape = table.shape
        return table[ids]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (ids,) = ctx.saved_tensors
        return torch.sparse_coo_tensor(ids.unsqueeze(0), grad, ctx.shape,
                                       check_invariants=False), None


class ClassifierHead(nn.Module):
    """Linear class scores ``embedding @ weight.T + bias``, trained with a full or a
    sampled softmax.

    Args:
        dim: embedding width D.
        num_classes: number of classes C.
        num_sampled: negatives S drawn per step in training (None: full softmax). At or
            above C, training uses the full softmax too.
        sampler: the proposal q, ``uniform`` or ``log_uniform`` (classes numbered by
            decreasing frequency).
        remove_accidental_hits: mask a drawn class out of the rows whose label it is.
        sparse: gather candidate rows so ``weight``/``bias`` get sparse gradients, and
            tag them ``sparse_grad = True`` for the optimizers.
        bias: learn a per-class bias.
        log_q_correction: subtract log(S·q) from candidate logits (off only to measure
            what the correction is worth).
        chunk: classes per block in ``predict`` and in the no-grad full loss.
    """

    def __init__(self, dim: int, num_classes: int, *, num_sampled: int | None = None,
                 sampler: Sampler = "log_uniform", remove_accidental_hits: bool = True,
                 sparse: bool = False, bias: bool = True, log_q_correction: bool = True,
                 chunk: int = 65536) -> None:
        super().__init__()
        if sampler not in ("uniform", "log_uniform"):
            raise ValueError(f"sampler must be 'uniform' or 'log_uniform', not {sampler!r}")
        if num_sampled is not None and num_sampled < 1:
            raise ValueError(f"num_sampled must be at least 1 (or None), not {num_sampled}")
        self.dim, self.num_classes, self.num_sampled = dim, num_classes, num_sampled
        self.sampler, self.remove_accidental_hits = sampler, remove_accidental_hits
        self.sparse, self.log_q_correction, self.chunk = sparse, log_q_correction, chunk
        self.weight = nn.Parameter(torch.randn(num_classes, dim) / math.sqrt(dim))
        self.bias = nn.Parameter(torch.zeros(num_classes)) if bias else None
        self._tag_sparse()

    def _tag_sparse(self) -> None:
        for p in self.parameters(recurse=False):
            p.sparse_grad = self.sparse

    def __setstate__(self, state: dict[str, Any]) -> None:
        # deepcopy and unpickling rebuild Parameters without their Python attributes.
        super().__setstate__(state)
        self._tag_sparse()

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_classes={self.num_classes}, "
                f"num_sampled={self.num_sampled}, sampler={self.sampler}, sparse={self.sparse}")

    # -- gathering rows -----------------------------------------------------------------
    def _rows(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias rows of ``ids``, with sparse gradients when ``sparse``."""
        if self.sparse and torch.is_grad_enabled():
            w = F.embedding(ids, self.weight, sparse=True)
            b = None if self.bias is None else _SparseRowGather.apply(self.bias, ids)
            return w, b
        return self.weight[ids], None if self.bias is None else self.bias[ids]

    @staticmethod
    def _linear(embedding: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
                ) -> torch.Tensor:
        return embedding @ w.T if b is None else torch.addmm(b, embedding, w.T)

    # -- full softmax -------------------------------------------------------------------
    def scores(self, embedding: torch.Tensor) -> torch.Tensor:
        """Every class's score, ``embedding @ weight.T + bias``: (B, C)."""
        if self.sparse and torch.is_grad_enabled():
            # A dense gradient would reach SparseAdam, which refuses it.
            all_ids = torch.arange(self.num_classes, device=self.weight.device)
            return self._linear(embedding, *self._rows(all_ids))
        return self._linear(embedding, self.weight, self.bias)

    def _blocks(self, embedding: torch.Tensor, chunk: int):
        for start in range(0, self.num_classes, chunk):
            stop = min(start + chunk, self.num_classes)
            b = None if self.bias is None else self.bias[start:stop]
            yield start, self._linear(embedding, self.weight[start:stop], b)

    @torch.no_grad()
    def predict(self, embedding: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """The arg-max class of each row, over blocks of ``chunk`` classes (a running
        max: memory O(B·chunk) even for millions of classes)."""
        best = embedding.new_full((embedding.shape[0],), -math.inf)
        best_id = torch.zeros(embedding.shape[0], dtype=torch.long, device=embedding.device)
        for start, block in self._blocks(embedding, chunk or self.chunk):
            value, idx = block.max(1)
            better = value > best  # strict: ties keep the lower id, as argmax does
            best = torch.where(better, value, best)
            best_id = torch.where(better, idx + start, best_id)
        return best_id

    def _full_loss(self, embedding: torch.Tensor, labels: torch.Tensor,
                   reduction: str) -> torch.Tensor:
        if torch.is_grad_enabled() or self.num_classes <= self.chunk:
            return F.cross_entropy(self.scores(embedding), labels, reduction=reduction)
        return self.chunked_cross_entropy(embedding, labels, reduction=reduction)

    @torch.no_grad()
    def chunked_cross_entropy(self, embedding: torch.Tensor, labels: torch.Tensor,
                              chunk: int | None = None,
                              reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
        """The full softmax cross-entropy without gradients, its log-partition a running
        log-sum-exp over blocks of ``chunk`` classes: memory O(B·chunk) for any C."""
        lse = embedding.new_full((embedding.shape[0],), -math.inf)
        for _, block in self._blocks(embedding, chunk or self.chunk):
            lse = torch.logaddexp(lse, torch.logsumexp(block, 1))
        w, b = self._rows(labels)
        true = (embedding * w).sum(1) + (0 if b is None else b)
        losses = lse - true
        return losses.mean() if reduction == "mean" else losses.sum()

    # -- sampled softmax ----------------------------------------------------------------
    def sample(self, n: int) -> torch.Tensor:
        """``n`` class ids drawn with replacement from the proposal."""
        device = self.weight.device
        if self.sampler == "uniform":
            return torch.randint(self.num_classes, (n,), device=device)
        return log_uniform_sample(n, self.num_classes, device)

    def log_expected_count(self, ids: torch.Tensor,
                           num_sampled: int | None = None) -> torch.Tensor:
        """log(S·q(k)): how often S draws with replacement (S: ``num_sampled``, default
        the head's) are expected to yield k."""
        s = math.log(num_sampled or self.num_sampled or 1)
        if self.sampler == "uniform":
            return torch.full(ids.shape, s - math.log(self.num_classes), dtype=torch.float64,
                              device=ids.device)
        return s + log_uniform_log_prob(ids, self.num_classes)

    def sampled_logits(self, embedding: torch.Tensor, labels: torch.Tensor,
                       sampled: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrected logits of the candidates, (B, 1 + S): column 0 the row's true class,
        then the ``sampled`` classes (drawn now when None), accidental hits at the
        dtype's minimum. Returns them with the sampled ids (S,)."""
        if sampled is None:
            sampled = self.sample(self.num_sampled)
        n = labels.shape[0]
        # Gather each distinct row once: Zipfian draws repeat the frequent classes.
        ids, inverse = torch.unique(torch.cat([labels, sampled]), return_inverse=True)
        logits = self._linear(embedding, *self._rows(ids))  # (B, distinct ids)
        true = logits.gather(1, inverse[:n, None])
        logits = torch.cat([true, logits[:, inverse[n:]]], 1)
        if self.log_q_correction:
            log_count = self.log_expected_count(torch.cat([labels, sampled]), sampled.numel())
            correction = torch.cat([log_count[:n, None],
                                    log_count[None, n:].expand(n, -1)], 1)
            logits = logits - correction.to(logits.dtype)
        if self.remove_accidental_hits:
            hits = F.pad(sampled[None, :] == labels[:, None], (1, 0))
            logits = logits.masked_fill(hits, torch.finfo(logits.dtype).min)
        return logits, sampled

    def uses_sampling(self) -> bool:
        """Whether ``loss`` samples now: training mode and 0 < S < C."""
        return (self.training and self.num_sampled is not None
                and self.num_sampled < self.num_classes)

    def loss(self, embedding: torch.Tensor, labels: torch.Tensor,
             reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
        """Cross-entropy of ``labels``: sampled softmax in training when 0 < S < C,
        else the full softmax (evaluation, S None, or S ≥ C: every class a candidate)."""
        if not self.uses_sampling():
            return self._full_loss(embedding, labels, reduction)
        logits, _ = self.sampled_logits(embedding, labels)
        target = torch.zeros_like(labels)
        return F.cross_entropy(logits, target, reduction=reduction)
