"""The sampled-softmax classifier head and the optimizers' sparse-gradient split."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from zoo_plugins.optimizers.torch_optim import SplitOptimizer, adam, adamw, sgd
from zoo_plugins.tasks.sampled_softmax import (
    ClassifierHead,
    log_uniform_log_prob,
    log_uniform_sample,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def problem(num_classes: int = 50, dim: int = 8, rows: int = 32, **head_kw):
    head = ClassifierHead(dim, num_classes, **head_kw)
    embedding = torch.randn(rows, dim, requires_grad=True)
    return head, embedding, torch.randint(num_classes, (rows,))


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(), b.flatten(), 0))


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("num_sampled", [50, 80])
def test_all_classes_sampled_is_the_full_softmax(num_sampled: int, sparse: bool) -> None:
    head, e, y = problem(num_sampled=num_sampled, sparse=sparse)
    head.bias.data.normal_()
    got = torch.autograd.grad(head.loss(e, y), [e, head.weight, head.bias])
    ref_head = ClassifierHead(8, 50)
    ref_head.load_state_dict(head.state_dict())
    ref = F.cross_entropy(e @ ref_head.weight.T + ref_head.bias, y)
    torch.testing.assert_close(head.loss(e, y), ref)
    want = torch.autograd.grad(ref, [e, ref_head.weight, ref_head.bias])
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g.to_dense() if g.is_sparse else g, w)


def test_eval_mode_uses_the_full_softmax_also_in_chunks() -> None:
    head, e, y = problem(num_sampled=5)
    head.eval()
    full = F.cross_entropy(head.scores(e), y, reduction="sum")
    torch.testing.assert_close(head.loss(e, y, reduction="sum"), full)
    head.chunk = 7  # the no-grad loss runs a log-sum-exp over blocks of classes
    with torch.no_grad():
        torch.testing.assert_close(head.loss(e, y, reduction="sum"), full.detach())
    untrained = ClassifierHead(8, 50)  # num_sampled None: full softmax in training too
    torch.testing.assert_close(untrained.loss(e, y),
                               F.cross_entropy(untrained.scores(e), y))


def mean_sampled_grads(draws: int = 150, **head_kw) -> tuple[list, list]:
    """Full-softmax gradients (embedding, weight, bias) and the mean of ``draws``
    sampled-softmax ones, on one fixed problem (50 classes, 10 sampled)."""
    torch.manual_seed(101)
    head, e, y = problem(num_sampled=10, **head_kw)
    wrt = [e, head.weight, head.bias]
    full = torch.autograd.grad(F.cross_entropy(head.scores(e), y), wrt)
    mean = [torch.zeros_like(t) for t in wrt]
    for _ in range(draws):
        for m, g in zip(mean, torch.autograd.grad(head.loss(e, y), wrt), strict=True):
            m += g / draws
    return full, mean


def test_sampled_gradient_points_where_the_full_one_does() -> None:
    # Sampled softmax is a ratio estimator: biased for finite S but close; the mean of
    # many sampled gradients must align with the full gradient. Without the log-Q
    # correction a Zipfian proposal over-counts the frequent classes as negatives: the
    # bias gradient (one entry per class) shows it most plainly.
    full, mean = mean_sampled_grads(sampler="uniform")
    assert cosine(mean[0], full[0]) > 0.9
    assert cosine(mean[2], full[2]) > 0.9
    full, corrected = mean_sampled_grads(sampler="log_uniform")
    _, uncorrected = mean_sampled_grads(sampler="log_uniform", log_q_correction=False)
    assert cosine(corrected[0], full[0]) > 0.9
    assert cosine(corrected[2], full[2]) > 0.9
    assert cosine(uncorrected[2], full[2]) < cosine(corrected[2], full[2]) - 0.1


def test_log_uniform_sampler_matches_its_distribution() -> None:
    num_classes, draws = 20, 200_000
    counts = torch.bincount(log_uniform_sample(draws, num_classes), minlength=num_classes)
    q = log_uniform_log_prob(torch.arange(num_classes), num_classes).exp()
    torch.testing.assert_close(q.sum(), torch.tensor(1.0, dtype=torch.float64))
    expected = draws * q
    assert ((counts[:5] - expected[:5]).abs() / expected[:5] < 0.1).all()
    assert counts.sum() == draws and counts.shape == (num_classes,)
    # The head's expected count is S·q(k), in logs.
    head = ClassifierHead(4, num_classes, num_sampled=7)
    torch.testing.assert_close(head.log_expected_count(torch.arange(3)),
                               (7 * q[:3]).log())
    uniform = ClassifierHead(4, num_classes, num_sampled=7, sampler="uniform")
    assert torch.allclose(uniform.log_expected_count(torch.arange(3)),
                          torch.tensor(math.log(7 / num_classes), dtype=torch.float64))


def test_accidental_hits_are_masked() -> None:
    head, e, _ = problem(rows=3, num_sampled=4, sampler="uniform")
    y = torch.tensor([2, 5, 9])
    sampled = torch.tensor([5, 2, 7, 5])
    logits, got = head.sampled_logits(e, y, sampled)
    assert torch.equal(got, sampled)
    lowest = torch.finfo(logits.dtype).min
    hits = torch.tensor([[0, 0, 1, 0, 0], [0, 1, 0, 0, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    assert (logits[hits] == lowest).all() and (logits[~hits] > lowest).all()
    # The unmasked entries are the scores minus log(S/C), column 0 the true class.
    scores = head.scores(e) - math.log(4 / 50)
    want = torch.cat([scores.gather(1, y[:, None]), scores[:, sampled]], 1)
    torch.testing.assert_close(logits[~hits], want[~hits])
    head.remove_accidental_hits = False
    logits, _ = head.sampled_logits(e, y, sampled)
    torch.testing.assert_close(logits, want)


def test_sparse_head_gradients_touch_only_candidates() -> None:
    head, e, y = problem(num_classes=1000, num_sampled=20, sparse=True)
    assert head.weight.sparse_grad and head.bias.sparse_grad
    sampled = head.sample(20)
    logits, _ = head.sampled_logits(e, y, sampled)
    F.cross_entropy(logits, torch.zeros_like(y)).backward()
    candidates = set(torch.cat([y, sampled]).tolist())
    for p in (head.weight, head.bias):
        assert p.grad.is_sparse
        assert set(p.grad.coalesce().indices()[0].tolist()) <= candidates
    dense = ClassifierHead(8, 1000, num_sampled=20)
    dense.loss(e, y).backward()
    assert not dense.weight.grad.is_sparse and not getattr(dense.weight, "sparse_grad", False)


def test_adam_trains_a_sparse_head_and_its_state_round_trips() -> None:
    encoder = torch.nn.Linear(16, 8)
    head = ClassifierHead(8, 200, num_sampled=30, sparse=True)
    x, y = torch.randn(64, 16), torch.randint(200, (64,))
    opt = adam([*encoder.parameters(), *head.parameters()], lr=0.05, weight_decay=1e-4)
    assert isinstance(opt, SplitOptimizer) and isinstance(opt, torch.optim.Optimizer)
    dense_opt, sparse_opt = opt.optimizers
    assert isinstance(sparse_opt, torch.optim.SparseAdam)
    assert sparse_opt.param_groups[0]["params"] == [head.weight, head.bias]

    def full_loss() -> float:
        head.eval()
        with torch.no_grad():
            value = float(head.loss(encoder(x), y))
        head.train()
        return value

    before = full_loss()
    for _ in range(40):
        opt.zero_grad()
        head.loss(encoder(x), y).backward()
        opt.step()
    assert full_loss() < 0.7 * before
    assert head.weight in opt.state and len(opt.state) == 4

    saved = opt.state_dict()
    clone = adam([*encoder.parameters(), *head.parameters()], lr=0.05, weight_decay=1e-4)
    clone.load_state_dict(saved)
    for a, b in zip(opt.optimizers, clone.optimizers, strict=True):
        assert a.state_dict()["param_groups"] == b.state_dict()["param_groups"]
        for key in a.state:
            for name, value in a.state[key].items():
                torch.testing.assert_close(b.state[key][name], value)
    assert [g["lr"] for g in clone.param_groups] == [0.05, 0.05]


def test_split_param_groups_steer_the_inner_optimizers() -> None:
    encoder, head = torch.nn.Linear(4, 4), ClassifierHead(4, 10, num_sampled=3, sparse=True)
    opt = adamw([*encoder.parameters(), *head.parameters()], lr=0.01)
    dense_opt, sparse_opt = opt.optimizers
    assert isinstance(dense_opt, torch.optim.AdamW) and len(opt.param_groups) == 2
    opt.param_groups[1]["lr"] = 0.5
    assert sparse_opt.param_groups[0]["lr"] == 0.5 and dense_opt.param_groups[0]["lr"] == 0.01
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
    opt.step()
    scheduler.step()
    assert dense_opt.param_groups[0]["lr"] == pytest.approx(0.001)
    assert sparse_opt.param_groups[0]["lr"] == pytest.approx(0.05)
    with pytest.raises(NotImplementedError, match="build a new optimizer"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))]})


def test_optimizers_without_tagged_params_are_torchs_own() -> None:
    params = list(torch.nn.Linear(3, 3).parameters())
    assert type(adam(params)) is torch.optim.Adam
    assert type(adamw(params)) is torch.optim.AdamW
    assert type(sgd(params, momentum=0.9)) is torch.optim.SGD
    head = ClassifierHead(3, 10, num_sampled=2, sparse=True)
    assert type(sgd(list(head.parameters()))) is torch.optim.SGD  # takes sparse grads
    assert isinstance(sgd([*params, *head.parameters()], momentum=0.9), SplitOptimizer)


def test_predict_over_chunks_is_the_argmax() -> None:
    head, e, _ = problem(num_classes=1000, rows=64)
    head.bias.data.normal_()
    assert torch.equal(head.predict(e, chunk=64), head.scores(e).argmax(1))
    assert torch.equal(head.predict(e), head.scores(e).argmax(1))


def test_a_million_class_sparse_head_steps_with_sparse_gradients() -> None:
    batch, num_sampled = 32, 256
    head = ClassifierHead(16, 1_000_000, num_sampled=num_sampled, sparse=True)
    e = torch.randn(batch, 16, requires_grad=True)
    opt = adam([e, *head.parameters()], lr=0.01)
    before = head.weight.detach().clone()
    opt.zero_grad()
    head.loss(e, torch.randint(1_000_000, (batch,))).backward()
    assert head.weight.grad._nnz() <= batch + num_sampled
    assert head.bias.grad._nnz() <= batch + num_sampled
    opt.step()
    changed = (head.weight.detach() != before).any(1).sum()
    assert 0 < changed <= batch + num_sampled
