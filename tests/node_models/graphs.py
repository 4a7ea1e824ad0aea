"""Graphs, blocks and checks shared by the node-model tests (imported by path: the tests
run with ``--import-mode=importlib``, see ``tests/core/test_plugins.py``)."""

from __future__ import annotations

import dgl
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from zoo.contracts import ModelOutput
from zoo_plugins.batch_sources.neighbor_sampler import annotate_blocks
from zoo_plugins.datasets.fetch import mirror_file

# The slow tests that train a headline config on Cora need the local mirror.
needs_cora = pytest.mark.skipif(mirror_file("ind.cora.x", "planetoid") is None,
                                reason="needs the local Cora mirror")


def random_graph(n: int = 30, edges: int = 80, seed: int = 0, *,
                 weights: bool = False) -> dgl.DGLGraph:
    """A directed random graph with a few self-loops (on nodes 2 and 6) and an isolated
    last node; with ``weights``, uneven edge weights in ``edata['weight']``."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.cat([torch.randint(0, n - 1, (edges,), generator=gen), torch.tensor([2, 6])])
    dst = torch.cat([torch.randint(0, n - 1, (edges,), generator=gen), torch.tensor([2, 6])])
    g = dgl.graph((src, dst), num_nodes=n)
    if weights:
        g.edata["weight"] = 0.2 + 2.0 * torch.rand(g.num_edges(), generator=gen)
    return g


def small_graph() -> dgl.DGLGraph:
    """Six nodes, symmetric, with a self-loop on node 1 and an isolated node 5."""
    src = torch.tensor([0, 1, 1, 2, 3, 1])
    dst = torch.tensor([1, 2, 3, 3, 4, 1])
    g = dgl.graph((torch.cat([src, dst]), torch.cat([dst, src])), num_nodes=6)
    return dgl.to_simple(g)


def dense_propagation(g: dgl.DGLGraph) -> torch.Tensor:
    """``D^-1/2 (A + I) D^-1/2`` with the graph's own self-loops replaced by I."""
    n = g.num_nodes()
    a = torch.zeros(n, n)
    src, dst = g.edges()
    a[dst, src] = 1.0
    a.fill_diagonal_(1.0)
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


def without_edges(g: dgl.DGLGraph) -> dgl.DGLGraph:
    """A graph with ``g``'s nodes and no edges (what an MLP sees)."""
    return dgl.graph((torch.tensor([], dtype=torch.long),) * 2, num_nodes=g.num_nodes())


def sampled_blocks(graph: dgl.DGLGraph, seeds: torch.Tensor, layers: int = 2,
                   fanouts: list[int] | None = None) -> tuple[torch.Tensor, list[dgl.DGLGraph]]:
    """Input node ids and (annotated) blocks for ``seeds``: every neighbour in each of
    ``layers`` layers, or ``fanouts`` of them per layer."""
    sampler = (dgl.dataloading.MultiLayerFullNeighborSampler(layers) if fanouts is None
               else dgl.dataloading.NeighborSampler(fanouts))
    input_nodes, output_nodes, blocks = sampler.sample_blocks(graph, seeds)
    assert torch.equal(output_nodes, seeds)
    return input_nodes, annotate_blocks(graph, blocks)


def assert_full_blocks_give_the_whole_graph_rows(model: nn.Module, g: dgl.DGLGraph,
                                                 x: torch.Tensor, seeds: torch.Tensor,
                                                 layers: int) -> ModelOutput:
    """``model`` (in eval mode) on full-neighbour blocks for ``seeds`` gives the whole
    graph's rows of ``seeds``, logits and embedding; returns the blocks' output."""
    whole = model(g, x)
    input_nodes, blocks = sampled_blocks(g, seeds, layers)
    out = model(blocks, x[input_nodes])
    assert_close(out.logits, whole.logits[seeds], rtol=1e-5, atol=1e-5)
    assert_close(out.embedding, whole.embedding[seeds], rtol=1e-5, atol=1e-5)
    return out


def assert_sparse_equals_dense_on_both_paths(model: nn.Module, g: dgl.DGLGraph,
                                             x: torch.Tensor, seeds: torch.Tensor,
                                             layers: int) -> None:
    """``model`` (in eval mode) gives the same output for ``x`` sparse and dense, on the
    whole graph and on full-neighbour blocks for ``seeds``."""
    assert_close(model(g, x.to_sparse()).logits, model(g, x).logits, rtol=1e-5, atol=1e-6)
    input_nodes, blocks = sampled_blocks(g, seeds, layers)
    dense = model(blocks, x[input_nodes])
    sparse = model(blocks, x[input_nodes].to_sparse())
    assert_close(sparse.logits, dense.logits, rtol=1e-5, atol=1e-6)
    assert_close(sparse.embedding.to_dense(), dense.embedding, rtol=1e-5, atol=1e-6)


def assert_trains_on_sampled_blocks_with_sparse_features(model: nn.Module, g: dgl.DGLGraph,
                                                         x: torch.Tensor, out_dim: int) -> None:
    """``model`` (in training mode, two layers) on blocks of two sampled neighbours per
    layer for nodes 0..7, with ``x`` sparse, gives finite gradients to every parameter."""
    input_nodes, blocks = sampled_blocks(g, torch.arange(8), fanouts=[2, 2])
    out = model(blocks, x[input_nodes].to_sparse())
    assert out.logits.shape == (8, out_dim)
    out.logits.sum().backward()
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def assert_needs_one_block_per_layer(model_cls: type[nn.Module], g: dgl.DGLGraph,
                                     in_dim: int = 4) -> None:
    """A two-layer ``model_cls`` refuses a single block."""
    input_nodes, blocks = sampled_blocks(g, torch.arange(4), layers=1)
    with pytest.raises(ValueError, match="one block per layer"):
        model_cls(in_dim, 2, layers=2)(blocks, torch.rand(input_nodes.numel(), in_dim))
