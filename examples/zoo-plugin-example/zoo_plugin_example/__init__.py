"""An example zoo plugin: a residual MLP encoder, registered through an entry point."""

from __future__ import annotations

import torch
from torch import nn

import zoo


class ResidualMLP(nn.Module):
    """MLP with residual hidden blocks and layer norm over node features.

    Args:
        hidden: width of every hidden block.
        blocks: number of residual blocks after the input projection.
        dropout: dropout inside each block.
    """

    def __init__(self, in_dim: int, out_dim: int | None, *, hidden: int = 64, blocks: int = 1,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.ReLU(), nn.Dropout(dropout),
                          nn.Linear(hidden, hidden))
            for _ in range(blocks))
        self.head = nn.Linear(hidden, out_dim) if out_dim is not None else None
        self.dropout = nn.Dropout(dropout)
        self.out_dim = out_dim if out_dim is not None else hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_sparse:  # the zoo's Planetoid features are sparse
            x = x.to_dense()
        h = self.inp(self.dropout(x))
        for block in self.blocks:
            h = h + block(h)
        h = torch.relu(h)
        return self.head(self.dropout(h)) if self.head is not None else h


@zoo.hookimpl
def zoo_register(registry) -> None:
    """Register the example's components."""
    registry.add("encoder", "residual_mlp", ResidualMLP)
