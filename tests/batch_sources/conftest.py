"""A small synthetic node-classification dataset and a registry that offers it, shared
by the batch-source tests."""

from __future__ import annotations

import dgl
import pytest
import torch

import zoo
from zoo.registry import PluginRegistrar, Registry


def communities(*, nodes: int = 120, seed: int = 0) -> zoo.GraphData:
    """Three communities; sparse bag-of-words features only weakly tell them apart."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(nodes) % 3
    src = torch.randint(0, nodes, (nodes * 12,), generator=gen)
    dst = torch.randint(0, nodes, (nodes * 12,), generator=gen)
    keep = (labels[src] == labels[dst]) & (src != dst)
    g = dgl.to_bidirected(dgl.graph((src[keep], dst[keep]), num_nodes=nodes))
    words = (torch.rand(nodes, 30, generator=gen) < 0.1).float()
    words[torch.arange(nodes), labels * 10 + torch.randint(0, 10, (nodes,), generator=gen)] = 1
    features = (words / words.sum(1, keepdim=True)).to_sparse()
    order = torch.randperm(nodes, generator=gen)
    masks = [torch.zeros(nodes, dtype=torch.bool) for _ in range(3)]
    masks[0][order[:15]] = True
    masks[1][order[15:45]] = True
    masks[2][order[45:]] = True
    return zoo.GraphData(g, features, labels, *masks, num_classes=3, name="communities")


def items(*, count: int = 90, seed: int = 0) -> zoo.GraphData:
    """Dense 2-d points in three clusters, with no graph: a set of items."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 3
    centers = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    features = centers[labels] + 0.6 * torch.randn(count, 2, generator=gen)
    split = torch.arange(count) % 10
    return zoo.GraphData(None, features, labels, split < 3, (split >= 3) & (split < 5),
                         split >= 5, num_classes=3, name="items")


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The installed components plus the synthetic datasets."""
    reg = Registry()
    for comp in zoo.default_registry().list():
        reg.add_component(comp)
    extra = PluginRegistrar("tests", "tests", "0")
    extra.add("dataset", "communities", communities)
    extra.add("dataset", "items", items)
    extra.commit(reg)
    assert not extra.refused, extra.refused
    return reg
