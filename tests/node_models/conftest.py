"""A tiny task only message passing can solve, shared by the node-model tests."""

from __future__ import annotations

from collections.abc import Callable

import dgl
import pytest
import torch
import torch.nn.functional as F


@pytest.fixture
def neighbour_task() -> tuple[dgl.DGLGraph, torch.Tensor, torch.Tensor]:
    """Two communities; a random half of the nodes show their class in one feature, the
    rest carry pure noise, so those must read the class from their neighbours."""
    gen = torch.Generator().manual_seed(0)
    n = 60
    labels = (torch.arange(n) >= n // 2).long()
    src = torch.randint(0, n, (600,), generator=gen)
    dst = torch.randint(0, n, (600,), generator=gen)
    same = labels[src] == labels[dst]
    g = dgl.to_bidirected(dgl.graph((src[same], dst[same]), num_nodes=n))
    informative = torch.rand(n, generator=gen) < 0.5
    x = torch.randn(n, 8, generator=gen)
    x[informative, 0] += 3.0 * (2 * labels[informative] - 1).float()
    return g, x, labels


@pytest.fixture
def held_out_accuracy() -> Callable[..., float]:
    """``fn(model, g, x, labels)``: train on the even nodes, accuracy on the odd ones."""

    def fn(model: torch.nn.Module, g, x, labels, steps: int = 150, lr: float = 0.02) -> float:
        torch.manual_seed(0)
        train, test = torch.arange(0, labels.numel(), 2), torch.arange(1, labels.numel(), 2)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(steps):
            model.train()
            opt.zero_grad()
            F.cross_entropy(model(g, x).logits[train], labels[train]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            predicted = model(g, x).logits[test].argmax(-1)
        return float((predicted == labels[test]).float().mean())

    return fn
