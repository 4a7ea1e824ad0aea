"""Building blocks shared by the built-in models: sparse-aware linear layers and dropout.

Planetoid features are sparse bag-of-words (Cora: 2708 x 1433, 1.3% non-zero). Dense
dropout over them is most of a GCN epoch in the reference implementations; dropping
the non-zeros of the sparse matrix is exactly the same operation (a zero stays zero
under dropout) at a fraction of the cost.

Products with a constant sparse matrix (the features, a normalized adjacency) run in
CSR form through :class:`CSR`: torch multiplies a CSR matrix by a dense one some 20
times faster than a COO one on a CPU, and the backward pass multiplies by the
transpose, whose structure is computed once and reused by every step (a new COO
transpose would be sorted again each time).
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

import numpy as np
import torch
from torch import nn

from zoo.schema import Ge, Lt

# torch says once per process that CSR tensors are "in beta"; the products used here are
# the long-supported CPU/CUDA sparse-dense matmuls.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

# Config types the built-in models share (ranges are checked before anything is built).
Activation = Literal["relu", "elu", "leaky_relu", "gelu", "tanh", "sigmoid", "identity"]
Units = Annotated[int, Ge(1)]
Count = Annotated[int, Ge(1)]
DropoutRate = Annotated[float, Ge(0), Lt(1)]


class CSR:
    """A constant sparse matrix in CSR form, multiplied by dense matrices that autograd
    differentiates (``A @ H``, whose gradient is ``A^T @ G``).

    The transpose's structure (and where each value goes in it) is computed on first
    use and shared by :meth:`with_values`, so a matrix whose values change every step
    (dropout on the non-zeros) pays for it once. ``symmetric=True`` says ``A^T == A``
    (a normalized symmetric adjacency): no transpose is built at all.
    """

    def __init__(self, crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
                 shape: tuple[int, int], *, symmetric: bool = False,
                 transpose: dict[str, Any] | None = None) -> None:
        self.crow, self.col, self.values, self.shape = crow, col, values, tuple(shape)
        self.symmetric = symmetric
        self._t = transpose if transpose is not None else {}

    @classmethod
    def from_coo(cls, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
                 shape: tuple[int, int]) -> CSR:
        """The matrix with ``values`` at ``(rows, cols)``; duplicate entries are summed."""
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, shape,
                                      check_invariants=True).coalesce()
        return cls.from_sparse(coo)

    @classmethod
    def from_sparse(cls, x: torch.Tensor) -> CSR:
        """A coalesced sparse COO tensor's matrix (its values in the same order)."""
        r, c = x.indices()
        return cls(row_pointers(r, x.shape[0]), c, x.values(), tuple(x.shape))

    def with_values(self, values: torch.Tensor) -> CSR:
        """The same structure with other values (one per stored entry, in order)."""
        return CSR(self.crow, self.col, values, self.shape, symmetric=self.symmetric,
                   transpose=self._t)

    def matrix(self) -> torch.Tensor:
        return torch.sparse_csr_tensor(self.crow, self.col, self.values, self.shape,
                                       check_invariants=False)

    def t_matrix(self) -> torch.Tensor:
        """``A^T`` as a torch CSR tensor."""
        if self.symmetric:
            return self.matrix()
        if not self._t:
            rows = torch.repeat_interleave(
                torch.arange(self.shape[0], device=self.col.device), self.crow.diff())
            perm = torch.argsort(self.col * self.shape[0] + rows, stable=True)
            self._t.update(crow=row_pointers(self.col[perm], self.shape[1]),
                           col=rows[perm], perm=perm)
        t = self._t
        return torch.sparse_csr_tensor(t["crow"], t["col"], self.values[t["perm"]],
                                       (self.shape[1], self.shape[0]),
                                       check_invariants=False)

    def mm(self, dense: torch.Tensor) -> torch.Tensor:
        """``A @ dense``, differentiable in ``dense``."""
        return _CSRMatmul.apply(dense, self)


def row_pointers(rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    """CSR row pointers of sorted row indices."""
    counts = torch.bincount(rows, minlength=num_rows)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


class _CSRMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dense: torch.Tensor, a: CSR) -> torch.Tensor:  # noqa: ANN001
        ctx.a = a
        return a.matrix() @ dense

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        if not ctx.needs_input_grad[0]:
            return None, None
        return ctx.a.t_matrix() @ grad.contiguous(), None


_STRUCTURES: OrderedDict[int, tuple[torch.Tensor, CSR]] = OrderedDict()


def csr_of(x: torch.Tensor) -> CSR:
    """A coalesced sparse COO tensor as a :class:`CSR` with ``x``'s values. The structure
    is cached by the indices tensor (which dropout on the non-zeros keeps), so feature
    matrices are converted, and their transposes built, once; the cache holds a few."""
    indices = x.indices()
    key = indices.data_ptr()
    hit = _STRUCTURES.get(key)
    if hit is not None and hit[0].shape == indices.shape and hit[1].shape == tuple(x.shape):
        _STRUCTURES.move_to_end(key)
        return hit[1].with_values(x.values())
    csr = CSR.from_sparse(x)
    # The cached structure keeps its indices alive: their address cannot be reused.
    _STRUCTURES[key] = (indices, csr)
    while len(_STRUCTURES) > 8:
        _STRUCTURES.popitem(last=False)
    return csr


def sparse_matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight`` for a sparse COO ``x`` (constant) and a dense ``weight``."""
    if x.requires_grad or x.layout != torch.sparse_coo:
        return torch.sparse.mm(x, weight)
    x = x if x.is_coalesced() else x.coalesce()
    return csr_of(x).mm(weight)  # W's gradient: X^T G, through the cached transpose


def keep_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """A dropout mask for ``x``: each entry 1 / (1 - p) with probability 1 - p, else 0.

    On a CPU, large masks come from NumPy's PCG64 bit generator (seeded from torch's, so
    ``torch.manual_seed`` still decides them): one 32-bit draw per entry, compared with
    ``p`` scaled to 2^32, costs about a quarter of ``torch.rand``'s draw and a tenth of
    torch's Bernoulli sampling; ``p`` is thereby rounded to a multiple of 2^-32.
    """
    n = x.numel()
    if x.device.type != "cpu" or n < 4096:
        return (torch.rand_like(x) >= p).to(x.dtype) * (1.0 / (1.0 - p))
    seed = int(torch.randint(0, 2**62, (1,)))
    bits = np.random.PCG64(seed).random_raw((n + 1) // 2).view(np.int32)[:n]
    # int32 reinterprets a uniform 32-bit draw: P(bits >= c) = (2^31 - c) / 2^32.
    threshold = round(p * 2**32) - 2**31
    keep = torch.from_numpy(bits).reshape(x.shape) >= threshold
    return keep.to(x.dtype) * (1.0 / (1.0 - p))


def sparse_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout on a sparse COO tensor's non-zeros (identical in law to dense dropout)."""
    if not training or p <= 0.0:
        return x
    x = x if x.is_coalesced() else x.coalesce()
    values = x.values()
    # The indices come from a valid coalesced tensor, so the invariant check is waste.
    return torch.sparse_coo_tensor(x.indices(), values * keep_mask(values, p), x.shape,
                                   is_coalesced=True, check_invariants=False)


def dst_rows(x: torch.Tensor, num_dst: int) -> torch.Tensor:
    """The first ``num_dst`` rows of a dense or sparse COO ``x`` (a block's dst nodes)."""
    if num_dst == x.shape[0]:
        return x
    # Sparse COO tensors cannot be sliced with ``x[:n]`` (no as_strided); narrow_copy can.
    return x.narrow_copy(0, 0, num_dst) if x.is_sparse else x[:num_dst]


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout for dense or sparse inputs (the mask of :func:`keep_mask`: the law of
    ``torch.nn.functional.dropout`` at a fraction of its cost on a CPU)."""
    if x.is_sparse:
        return sparse_dropout(x, p, training)
    if not training or p <= 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    return x * keep_mask(x, p)


class Linear(nn.Module):
    """A linear layer that accepts a dense or a sparse COO input (Glorot-initialized)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None
        bound = math.sqrt(6.0 / (in_dim + out_dim))
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = sparse_matmul(x, self.weight) if x.is_sparse else x @ self.weight
        return out + self.bias if self.bias is not None else out


ACTIVATIONS = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    """The activation module called ``name`` (one of ``ACTIVATIONS``)."""
    return ACTIVATIONS[name]()


class GraphCache:
    """What a model derives from its input graph (self-loops replaced or removed, edges
    normalized), built once per input graph: :meth:`get` with the graph it last saw
    returns the same object. The input is held by a weak reference, since an id can be
    reused once its graph is gone."""

    def __init__(self) -> None:
        self._key: weakref.ref | None = None
        self._value: Any = None

    def get(self, graph: Any, build: Callable[[Any], Any]) -> Any:
        """``build(graph)``, built anew only when ``graph`` is not the last one seen."""
        if self._key is None or self._key() is not graph:
            self._value, self._key = build(graph), weakref.ref(graph)
        return self._value


def one_block_per_layer(model: str, blocks: Iterable[Any], layers: int) -> list[Any]:
    """The sampled ``blocks`` as a list, which must hold one block per layer of ``model``."""
    blocks = list(blocks)
    if len(blocks) != layers:
        raise ValueError(f"{model} has {layers} layers but got {len(blocks)} blocks; "
                         "sample one block per layer")
    return blocks
