"""Building blocks shared by the built-in models: sparse-aware linear layers and dropout.

Planetoid features are sparse bag-of-words (Cora: 2708 x 1433, 1.3% non-zero). Dense
dropout over them is most of a GCN epoch in the reference implementations; dropping
the non-zeros of the sparse matrix is exactly the same operation (a zero stays zero
under dropout) at a fraction of the cost.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from torch import nn

from zoo.schema import Ge, Lt

# Config types the built-in models share (ranges are checked before anything is built).
Activation = Literal["relu", "elu", "leaky_relu", "gelu", "tanh", "sigmoid", "identity"]
Units = Annotated[int, Ge(1)]
Count = Annotated[int, Ge(1)]
DropoutRate = Annotated[float, Ge(0), Lt(1)]


def sparse_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout on a sparse COO tensor's non-zeros (identical in law to dense dropout)."""
    if not training or p <= 0.0:
        return x
    x = x.coalesce()
    values = x.values()
    keep = torch.rand_like(values) >= p
    # The indices come from a valid coalesced tensor, so the invariant check is waste.
    return torch.sparse_coo_tensor(x.indices(), values * keep / (1.0 - p), x.shape,
                                   is_coalesced=True, check_invariants=False)


def dst_rows(x: torch.Tensor, num_dst: int) -> torch.Tensor:
    """The first ``num_dst`` rows of a dense or sparse COO ``x`` (a block's dst nodes)."""
    if num_dst == x.shape[0]:
        return x
    # Sparse COO tensors cannot be sliced with ``x[:n]`` (no as_strided); narrow_copy can.
    return x.narrow_copy(0, 0, num_dst) if x.is_sparse else x[:num_dst]


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout for dense or sparse inputs."""
    if x.is_sparse:
        return sparse_dropout(x, p, training)
    return nn.functional.dropout(x, p, training)


class Linear(nn.Module):
    """A linear layer that accepts a dense or a sparse COO input (Glorot-initialized)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None
        bound = math.sqrt(6.0 / (in_dim + out_dim))
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.sparse.mm(x, self.weight) if x.is_sparse else x @ self.weight
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
