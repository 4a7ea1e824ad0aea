"""The shared building blocks: dropout masks, CSR products and their gradients."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from zoo_plugins.layers import CSR, Linear, csr_of, dropout, keep_mask, sparse_dropout


@pytest.mark.parametrize("n", [100, 100_000])  # torch.rand below 4096 entries, NumPy above
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_keep_mask_has_dropouts_law(n, p):
    torch.manual_seed(0)
    x = torch.ones(n)
    mask = keep_mask(x, p)
    values = mask.unique()
    assert values[0] == 0 and len(values) == 2 and values[1] == pytest.approx(1 / (1 - p))
    dropped = float((mask == 0).float().mean())
    assert abs(dropped - p) < 5 * (p * (1 - p) / n) ** 0.5 + 1e-9
    torch.manual_seed(0)
    assert torch.equal(keep_mask(x, p), mask)  # torch's seed decides it
    assert not torch.equal(keep_mask(x, p), mask)  # and a new draw differs


def test_dropout_is_identity_in_eval_and_scales_in_training():
    x = torch.randn(300, 50)
    assert dropout(x, 0.5, training=False) is x
    out = dropout(x, 0.5, training=True)
    kept = out != 0
    assert_close(out[kept], 2 * x[kept])


def random_sparse(rows: int, cols: int, density: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    dense = torch.rand(rows, cols, generator=gen)
    dense[torch.rand(rows, cols, generator=gen) > density] = 0
    return dense.to_sparse().coalesce()


def test_sparse_linear_equals_dense_with_gradients():
    x = random_sparse(40, 30, 0.1)
    layer = Linear(30, 8)
    out = layer(x)
    ref = x.to_dense() @ layer.weight + layer.bias
    assert_close(out, ref)
    (g_sparse,) = torch.autograd.grad(out.square().sum(), layer.weight)
    (g_dense,) = torch.autograd.grad(ref.square().sum(), layer.weight)
    assert_close(g_sparse, g_dense)


def test_dropped_features_share_the_cached_structure():
    x = random_sparse(50, 20, 0.2)
    a = csr_of(x)
    dropped = sparse_dropout(x, 0.5, training=True)
    b = csr_of(dropped)
    assert b.crow is a.crow and b.col is a.col
    assert_close(b.matrix().to_dense(), dropped.to_dense())


def test_csr_product_and_transpose_of_a_directed_matrix():
    gen = torch.Generator().manual_seed(1)
    rows, cols = torch.randint(0, 12, (60,), generator=gen), torch.randint(0, 9, (60,),
                                                                          generator=gen)
    values = torch.rand(60, generator=gen)
    a = CSR.from_coo(rows, cols, values, (12, 9))  # duplicates summed
    dense = torch.zeros(12, 9).index_put_((rows, cols), values, accumulate=True)
    h = torch.randn(9, 4, requires_grad=True)
    out = a.mm(h)
    assert_close(out, dense @ h)
    (grad,) = torch.autograd.grad(out.sum(), h)
    assert_close(grad, dense.t() @ torch.ones(12, 4))
    assert_close(a.t_matrix().to_dense(), dense.t())
