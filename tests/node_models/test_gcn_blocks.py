"""``gcn`` on sampled blocks: with every neighbour sampled it gives the whole graph's
rows for every normalization, self-loop and edge-weight setting; with fewer it is the
``deg / sampled``-scaled estimator, unbiased over re-samples; sparse features agree with
dense ones on both paths."""

from __future__ import annotations

import sys
from pathlib import Path

import dgl
import pytest
import torch
from torch.testing import assert_close

from zoo_plugins.batch_sources.neighbor_sampler import annotate_blocks
from zoo_plugins.node_models.gcn import GCN

sys.path.insert(0, str(Path(__file__).parent))
from graphs import (  # noqa: E402
    assert_full_blocks_give_the_whole_graph_rows,
    assert_needs_one_block_per_layer,
    assert_sparse_equals_dense_on_both_paths,
    assert_trains_on_sampled_blocks_with_sparse_features,
    sampled_blocks,
)


def random_graph(n: int = 30, edges: int = 70, *, self_loops: bool = False,
                 seed: int = 0) -> dgl.DGLGraph:
    """A symmetric random graph whose last node is isolated, with uneven edge weights
    (the same weight both ways) and, if asked, self-loops on a few nodes."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n - 1, (edges,), generator=gen)
    dst = torch.randint(0, n - 1, (edges,), generator=gen)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    w = 0.2 + 2.0 * torch.rand(src.numel(), generator=gen)
    src, dst, w = torch.cat([src, dst]), torch.cat([dst, src]), torch.cat([w, w])
    if self_loops:
        loops = torch.tensor([0, 3, 5])
        src, dst = torch.cat([src, loops]), torch.cat([dst, loops])
        w = torch.cat([w, torch.tensor([7.0, 0.5, 3.0])])
    g = dgl.graph((src, dst), num_nodes=n)
    g.edata["weight"] = w
    return g


def test_supports_blocks():
    assert GCN.supports_blocks is True
    assert GCN(4, 2, layers=3).num_layers == 3


@pytest.mark.parametrize("edge_weights", [False, True])
@pytest.mark.parametrize("self_loops", [True, False])
@pytest.mark.parametrize("norm", ["both", "right", "none"])
def test_full_neighbour_blocks_give_the_whole_graph_rows(norm, self_loops, edge_weights):
    # With the renormalization trick the graph's own self-loops are replaced, so the
    # graph has some; without it GraphConv would count them as neighbours, so it has none.
    g = random_graph(self_loops=self_loops)
    torch.manual_seed(0)
    x = torch.randn(g.num_nodes(), 5)
    model = GCN(5, 3, hidden=8, layers=2, norm=norm, self_loops=self_loops,
                edge_weights=edge_weights).eval()
    seeds = torch.tensor([29, 0, 3, 7, 12, 5])  # 29 is isolated
    out = assert_full_blocks_give_the_whole_graph_rows(model, g, x, seeds, layers=2)
    assert out.logits.shape == (6, 3) and out.embedding.shape == (6, 8)


def test_uneven_weights_change_the_output():
    # Guards the test above: weights it uses must matter.
    g = random_graph()
    x = torch.randn(g.num_nodes(), 5)
    model = GCN(5, 3, layers=1, edge_weights=True).eval()
    input_nodes, blocks = sampled_blocks(g, torch.arange(10), layers=1)
    weighted = model(blocks, x[input_nodes]).logits
    blocks[0].edata["weight"] = torch.ones(blocks[0].num_edges())
    assert (weighted - model(blocks, x[input_nodes]).logits).abs().max() > 0.1


@pytest.mark.parametrize("layers", [1, 3])
def test_full_neighbour_blocks_on_the_neighbour_task(neighbour_task, layers):
    g, x, _ = neighbour_task
    model = GCN(8, 2, hidden=16, layers=layers).eval()
    seeds = torch.arange(0, g.num_nodes(), 3)
    input_nodes, blocks = sampled_blocks(g, seeds, layers)
    assert_close(model(blocks, x[input_nodes]).logits, model(g, x).logits[seeds],
                 rtol=1e-5, atol=1e-5)


def test_sampled_block_is_the_scaled_neighbour_sum_and_unbiased():
    """One layer, 'both', self-loops: each sample is ``h_v / d_v + deg_v / s_v * sum_u
    h_u / sqrt(d_u d_v) + b`` over the sampled ``u``; its mean over re-samples approaches
    the whole graph, while the same sums without ``deg / s`` stay far off."""
    g = random_graph(n=12, edges=30, seed=1)
    deg = g.in_degrees()
    assert int((deg > 2).sum()) >= 8  # a fanout of 2 leaves out neighbours of most nodes
    torch.manual_seed(0)
    x = torch.randn(g.num_nodes(), 4)
    model = GCN(4, 3, layers=1).eval()
    with torch.no_grad():
        model.convs[0].bias.uniform_(-1, 1)
        whole = model(g, x).logits
        h = model.linears[0](x)
    d = deg.float() + 1
    own = h / d.unsqueeze(-1) + model.convs[0].bias.detach()
    sampler = dgl.dataloading.NeighborSampler([2])
    seeds = torch.arange(g.num_nodes())
    dgl.seed(0)
    scaled, unscaled = torch.zeros_like(whole), torch.zeros_like(whole)
    samples = 300
    for _ in range(samples):
        input_nodes, _, blocks = sampler.sample_blocks(g, seeds)
        with torch.no_grad():
            out = model(annotate_blocks(g, blocks), x[input_nodes]).logits
        # The estimator by hand, over the sampled in-edges by whole-graph node ids.
        src, dst = blocks[0].edges()
        u, v = input_nodes[src], seeds[dst]
        neighbour_sum = torch.zeros_like(whole).index_add_(
            0, v, h[u] / (d[u] * d[v]).sqrt().unsqueeze(-1))
        s = torch.bincount(v, minlength=g.num_nodes()).clamp(min=1).float()
        assert_close(out, own + (deg / s).unsqueeze(-1) * neighbour_sum, rtol=1e-5, atol=1e-5)
        scaled += out / samples
        unscaled += (own + neighbour_sum) / samples
    # Over seeds the scaled mean's largest error is 4-9% of the largest neighbour term
    # (Monte Carlo noise), the unscaled one's 60-80% (it sums 2 of deg neighbours).
    neighbours = (whole - own).abs().max()
    assert_close(scaled, whole, rtol=0, atol=0.15 * neighbours)
    assert (unscaled - whole).abs().max() > 0.45 * neighbours


@pytest.mark.parametrize("layers", [1, 2])
def test_sparse_features_equal_dense_on_both_paths(layers):
    g = random_graph()
    x = torch.rand(g.num_nodes(), 20)
    x[x < 0.8] = 0.0
    model = GCN(20, 3, hidden=6, layers=layers).eval()
    assert_sparse_equals_dense_on_both_paths(model, g, x, torch.tensor([1, 4, 29]), layers)


def test_training_on_sampled_blocks_with_sparse_features_backpropagates():
    g = random_graph()
    x = (torch.rand(g.num_nodes(), 20) > 0.8).float()
    model = GCN(20, 3, hidden=6, layers=2, dropout=0.5).train()
    assert_trains_on_sampled_blocks_with_sparse_features(model, g, x, out_dim=3)


def test_one_block_per_layer():
    assert_needs_one_block_per_layer(GCN, random_graph(), in_dim=5)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("edge_weights", [False, True])
@pytest.mark.parametrize("self_loops", [True, False])
@pytest.mark.parametrize("norm", ["both", "right", "none"])
def test_whole_graph_layers_equal_dgl_graphconv(norm, self_loops, edge_weights, symmetric):
    """The whole-graph path (one CSR product per layer) computes GraphConv's layer,
    outputs and gradients, on symmetric and directed graphs."""
    from dgl.nn import GraphConv

    g = random_graph(self_loops=self_loops)
    if not symmetric:  # drop some edges one way (the first half are one direction)
        keep = torch.arange(g.num_edges()) >= g.num_edges() // 4
        g = dgl.graph((g.edges()[0][keep], g.edges()[1][keep]), num_nodes=g.num_nodes())
        g.edata["weight"] = 0.5 + torch.rand(g.num_edges())
    torch.manual_seed(0)
    x = torch.randn(g.num_nodes(), 5, requires_grad=True)
    model = GCN(5, 3, hidden=8, layers=2, norm=norm, self_loops=self_loops,
                edge_weights=edge_weights, dropout=0.0)
    ours = model(g, x).logits
    ref_graph = dgl.add_self_loop(dgl.remove_self_loop(g)) if self_loops else g
    weight = None
    if edge_weights:
        weight = ref_graph.edata["weight"].clone()
        if self_loops:
            weight[-g.num_nodes():] = 1.0
    h = x
    for i, (linear, conv) in enumerate(zip(model.linears, model.convs)):
        ref = GraphConv(8, 8, norm=norm, weight=False, bias=False, allow_zero_in_degree=True)
        h = ref(ref_graph, h @ linear.weight, edge_weight=weight) + conv.bias
        h = torch.relu(h) if i == 0 else h
    # Sums in another order (CSR rows vs DGL's kernel): equal up to float rounding.
    assert_close(ours, h, rtol=1e-4, atol=1e-4)
    (g_ours,) = torch.autograd.grad(ours.square().sum(), x)
    (g_ref,) = torch.autograd.grad(h.square().sum(), x)
    assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-4)
    assert model._adjacency.symmetric == (symmetric and norm != "right")
