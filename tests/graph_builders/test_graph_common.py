"""The options every graph builder shares (max_neighbors, undirected, self_loops) and
the checks on the result, exercised through the ``dataset`` builder on tiny graphs."""

from __future__ import annotations

import dgl
import numpy as np
import pytest
import torch
from zoo_plugins.graph_builders.common import finalize_graph
from zoo_plugins.neighbors import neighbor_edges
from zoo_plugins.neighbors import pack_neighbors
from zoo_plugins.graph_builders.dataset import dataset_graph

from zoo.contracts import GraphData
from zoo.errors import ConfigError, DataError


def make_data(num_nodes: int, edges: list[tuple[int, int]], weights: list[float] | None = None,
              ) -> GraphData:
    src, dst = zip(*edges) if edges else ((), ())
    graph = dgl.graph((torch.tensor(src, dtype=torch.int64), torch.tensor(dst, dtype=torch.int64)),
                      num_nodes=num_nodes)
    if weights is not None:
        graph.edata["weight"] = torch.tensor(weights, dtype=torch.float32)
    n = num_nodes
    mask = torch.ones(n, dtype=torch.bool)
    return GraphData(graph, torch.eye(n), torch.zeros(n, dtype=torch.int64), mask, mask, mask,
                     num_classes=1, name="tiny")


def edge_dict(graph: dgl.DGLGraph) -> dict[tuple[int, int], float]:
    src, dst = graph.edges()
    return {(int(s), int(d)): float(w)
            for s, d, w in zip(src, dst, graph.edata["weight"])}


def test_dataset_graph_keeps_edges_and_weights_as_float32():
    data = make_data(3, [(0, 1), (1, 2)], [0.5, 2.0])
    graph = dataset_graph(data)
    assert graph.edata["weight"].dtype == torch.float32
    assert edge_dict(graph) == {(0, 1): 0.5, (1, 2): 2.0}
    assert edge_dict(dataset_graph(data, use_weights=False)) == {(0, 1): 1.0, (1, 2): 1.0}


def test_unweighted_dataset_graph_gets_weight_one():
    graph = dataset_graph(make_data(3, [(0, 1), (2, 1)]))
    assert edge_dict(graph) == {(0, 1): 1.0, (2, 1): 1.0}


def test_undirected_merges_directions_by_max_or_sum():
    data = make_data(3, [(0, 1), (1, 0), (1, 2)], [0.5, 2.0, 3.0])
    assert edge_dict(dataset_graph(data, undirected=True)) == {
        (0, 1): 2.0, (1, 0): 2.0, (1, 2): 3.0, (2, 1): 3.0}
    assert edge_dict(dataset_graph(data, undirected=True, combine="sum")) == {
        (0, 1): 2.5, (1, 0): 2.5, (1, 2): 3.0, (2, 1): 3.0}


def test_duplicate_edges_keep_the_largest_weight():
    data = make_data(2, [(0, 1), (0, 1)], [0.25, 0.75])
    assert edge_dict(dataset_graph(data)) == {(0, 1): 0.75}


def test_self_loops_added_removed_or_kept():
    data = make_data(3, [(0, 1), (2, 2)], [0.5, 4.0])
    assert edge_dict(dataset_graph(data)) == {(0, 1): 0.5, (2, 2): 4.0}
    assert edge_dict(dataset_graph(data, self_loops=False)) == {(0, 1): 0.5}
    assert edge_dict(dataset_graph(data, self_loops=True)) == {
        (0, 1): 0.5, (0, 0): 1.0, (1, 1): 1.0, (2, 2): 1.0}
    # A self-loop is not doubled by symmetrizing with 'sum'.
    assert edge_dict(dataset_graph(data, undirected=True, combine="sum"))[(2, 2)] == 4.0


def test_max_neighbors_keeps_heaviest_outgoing_edges_ties_to_smaller_id():
    # Node 0 lists 4 (0.75) and 3, 1, 2 (all 0.5) as neighbours: with 2 places the tie
    # goes to node 1, whatever order the edges come in. Node 1's one edge is untouched,
    # and so are the edges *into* 0 from elsewhere: only out-edges are capped.
    edges = [(0, 3), (0, 1), (0, 4), (0, 2), (1, 0), (2, 0), (3, 0)]
    weights = [0.5, 0.5, 0.75, 0.5, 0.125, 1.0, 1.0]
    expected = {(0, 4): 0.75, (0, 1): 0.5, (1, 0): 0.125, (2, 0): 1.0, (3, 0): 1.0}
    rng = np.random.default_rng(0)
    for _ in range(5):
        order = rng.permutation(len(edges))
        data = make_data(5, [edges[i] for i in order], [weights[i] for i in order])
        graph = dataset_graph(data, max_neighbors=2)
        assert edge_dict(graph) == expected
        assert int(graph.out_degrees().max()) == 2
        assert int(graph.in_degrees()[0]) == 3  # in-edges are not capped


def test_max_neighbors_is_a_hard_bound_after_symmetrizing():
    # A star: every leaf points at the hub; symmetrized, the hub has 4 neighbours and
    # keeps its 2 heaviest, while every leaf still lists the hub.
    data = make_data(5, [(1, 0), (2, 0), (3, 0), (4, 0)], [0.125, 0.5, 0.375, 0.25])
    graph = dataset_graph(data, undirected=True, max_neighbors=2)
    assert int(graph.out_degrees().max()) == 2
    assert {d for (s, d) in edge_dict(graph) if s == 0} == {2, 3}
    assert {s for (s, d) in edge_dict(graph) if d == 0} == {1, 2, 3, 4}


def test_self_loops_do_not_count_towards_max_neighbors():
    data = make_data(3, [(0, 1), (0, 2)], [0.5, 0.25])
    graph = dataset_graph(data, max_neighbors=1, self_loops=True)
    assert edge_dict(graph) == {(0, 1): 0.5, (0, 0): 1.0, (1, 1): 1.0, (2, 2): 1.0}


def test_builder_cap_keeps_the_edges_the_regularizers_and_packing_keep():
    # One convention across the zoo: capping in the builder, in the regularizer or in
    # mini-batch packing selects the same (sample, neighbour) edges, ties included.
    rng = np.random.default_rng(1)
    n = 30
    src, dst = rng.integers(0, n, 200), rng.integers(0, n, 200)
    off = src != dst
    weight = rng.choice([0.25, 0.5, 1.0], 200)[off]  # coarse weights: many ties
    data = make_data(n, list(zip(src[off].tolist(), dst[off].tolist())), weight.tolist())
    full = dataset_graph(data)
    for k in (1, 2, 4):
        built = set(edge_dict(dataset_graph(data, max_neighbors=k)))
        samples, neighbours, _ = neighbor_edges(full, k)
        assert built == set(zip(samples.tolist(), neighbours.tolist()))
        packed, node_ids = pack_neighbors(full, torch.arange(n), k)
        p_src, p_dst = packed.edges()
        assert built == set(zip(node_ids[p_src].tolist(), node_ids[p_dst].tolist()))


def test_empty_graph_is_an_error_but_isolated_nodes_are_fine():
    with pytest.raises(ConfigError, match="no edges"):
        dataset_graph(make_data(3, []))
    with pytest.raises(ConfigError, match="no edges"):
        dataset_graph(make_data(3, [(1, 1)]), self_loops=True)
    graph = dataset_graph(make_data(4, [(0, 1)]))
    assert graph.num_nodes() == 4 and graph.num_edges() == 1


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_negative_or_nan_weights_are_rejected(bad):
    with pytest.raises(DataError, match="finite and non-negative"):
        dataset_graph(make_data(3, [(0, 1), (1, 2)], [1.0, bad]))


def test_max_neighbors_below_one_is_a_config_error():
    with pytest.raises(ConfigError, match="max_neighbors"):
        finalize_graph(np.array([0]), np.array([1]), np.array([1.0]), 2, source="test",
                       max_neighbors=0)


def test_endpoints_outside_the_dataset_are_rejected():
    with pytest.raises(DataError, match=r"\[0, 2\)"):
        finalize_graph(np.array([0]), np.array([2]), np.array([1.0]), 2, source="test")
