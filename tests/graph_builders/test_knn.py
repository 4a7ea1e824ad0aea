"""The ``knn`` graph builder: NSL's threshold semantics, top-k with deterministic ties,
the exact path against a brute-force reference, the approximate searches' recall (faiss
HNSW and NN-descent) and the choice between them."""

from __future__ import annotations

import logging
import sys

import dgl
import numpy as np
import pytest
import torch
from zoo_plugins.graph_builders.knn import exact_knn, faiss_available, knn_graph, l2_normalize

import zoo
from zoo.contracts import GraphData
from zoo.errors import ConfigError, DataError
from zoo_plugins.datasets.fetch import mirror_file

HAVE_CORA = mirror_file("ind.cora.x", "planetoid") is not None
requires_cora = pytest.mark.skipif(not HAVE_CORA, reason="Cora is not available offline "
                                   "(no ZOO_DATA_MIRROR folder)")
requires_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed "
                                    "(pip install zoo[faiss])")
ANN = [pytest.param("faiss", marks=requires_faiss), "nn_descent"]


def make_data(features: torch.Tensor | np.ndarray) -> GraphData:
    x = torch.as_tensor(features, dtype=torch.float32)
    n = x.shape[0]
    mask = torch.ones(n, dtype=torch.bool)
    return GraphData(dgl.graph(([], []), num_nodes=n), x, torch.zeros(n, dtype=torch.int64),
                     mask, mask, mask, num_classes=1, name="points")


def edge_dict(graph: dgl.DGLGraph) -> dict[tuple[int, int], float]:
    src, dst = graph.edges()
    return {(int(s), int(d)): float(w) for s, d, w in zip(src, dst, graph.edata["weight"])}


# Unit vectors with cosines cos(0,1) = 0.8 (exactly the threshold), cos(1,2) = 0.96,
# cos(0,2) = 0.6; node 3 is opposite node 0, so negative with everyone.
POINTS = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [-1.0, 0.0]])


def test_threshold_is_inclusive_and_weights_are_cosines():
    graph = knn_graph(make_data(POINTS), threshold=0.8)
    # At least the threshold is kept (as NSL), both directions written.
    assert edge_dict(graph) == pytest.approx(
        {(0, 1): 0.8, (1, 0): 0.8, (1, 2): 0.96, (2, 1): 0.96}, abs=1e-6)
    assert graph.edata["weight"].dtype == torch.float32
    directed = knn_graph(make_data(POINTS), threshold=0.9, undirected=False)
    assert set(edge_dict(directed)) == {(1, 2), (2, 1)}


def test_non_positive_similarities_never_become_edges():
    # Threshold off, k larger than the graph: every positive pair and nothing else.
    graph = knn_graph(make_data(POINTS), k=10, threshold=None)
    edges = edge_dict(graph)
    assert set(edges) == {(0, 1), (1, 0), (1, 2), (2, 1), (0, 2), (2, 0)}
    assert edges[(0, 2)] == pytest.approx(0.6, abs=1e-6)
    assert all(w > 0 for w in edges.values())
    # A negative threshold does not let negative similarities in either.
    assert set(edge_dict(knn_graph(make_data(POINTS), threshold=-1.0))) == set(edges)


def test_top_k_breaks_ties_by_smaller_node_id():
    # Nodes 1..4 are identical, so node 0 sees four neighbours at the same similarity.
    x = np.array([[1.0, 0.0]] + [[1.0, 1.0]] * 4)
    # Edges run node -> neighbour (the zoo's convention): a node's k neighbours are its
    # out-edges.
    graph = knn_graph(make_data(x), k=2, threshold=None, undirected=False)
    of_0 = sorted(d for (s, d) in edge_dict(graph) if s == 0)
    assert of_0 == [1, 2]
    of_3 = sorted(d for (s, d) in edge_dict(graph) if s == 3)
    assert of_3 == [1, 2]  # 1, 2, 4 tie at cosine 1; node 3 is never its own neighbour
    assert (graph.out_degrees() == 2).all()
    # Node 0 is nobody's top 2 (nodes 1..4 prefer each other at cosine 1).
    assert int(graph.in_degrees()[0]) == 0


def test_exact_knn_is_blocked_without_changing_the_result():
    rng = np.random.default_rng(0)
    x = l2_normalize(torch.from_numpy(rng.standard_normal((60, 8)).astype(np.float32)))
    whole = exact_knn(x, 5, None)
    blocked = exact_knn(x, 5, None, block_entries=7 * 60)
    # The same edges; the weights are matrix products of different block shapes, which
    # round differently on some CPUs (AMD EPYC: ~1e-7), so they are compared closely.
    assert torch.equal(whole[0], blocked[0]) and torch.equal(whole[1], blocked[1])
    torch.testing.assert_close(blocked[2], whole[2], rtol=1e-5, atol=1e-6)
    # Neighbours of a few query nodes only: the same edges as in the whole graph.
    src, dst, weight = exact_knn(x, 5, None, queries=torch.tensor([3, 41]))
    into = (whole[1] == 3) | (whole[1] == 41)
    assert torch.equal(dst, whole[1][into]) and torch.equal(src, whole[0][into])
    torch.testing.assert_close(weight, whole[2][into], rtol=1e-5, atol=1e-6)


def test_sparse_and_dense_features_give_the_same_graph():
    rng = np.random.default_rng(1)
    dense = (rng.random((40, 30)) < 0.2).astype(np.float32)
    dense[0] = 0.0  # a row without words: similar to nothing, but allowed
    sparse = torch.from_numpy(dense).to_sparse()
    a = knn_graph(make_data(dense), k=3, threshold=None)
    b = knn_graph(make_data(sparse), k=3, threshold=None)
    assert edge_dict(a) == pytest.approx(edge_dict(b), abs=1e-6)
    assert int(a.out_degrees()[0]) == 0 and int(a.in_degrees()[0]) == 0


@pytest.mark.parametrize("ann", ANN)
def test_approximate_path_finds_most_true_neighbours(ann):
    # Clustered points, like real embeddings (uniform noise is NN-descent's worst case).
    rng = np.random.default_rng(2)
    centers = 3.0 * rng.standard_normal((12, 16))
    x = (centers[rng.integers(0, 12, 600)] + rng.standard_normal((600, 16))).astype(np.float32)
    data = make_data(x)
    exact = knn_graph(data, k=5, threshold=None, method="exact", undirected=False)
    approx = knn_graph(data, k=5, threshold=None, method="approximate", ann=ann,
                       undirected=False)
    true, found = set(edge_dict(exact)), edge_dict(approx)
    assert len(set(found) & true) / len(true) > 0.9
    again = knn_graph(data, k=5, threshold=None, method="approximate", ann=ann,
                      undirected=False)
    assert edge_dict(again) == found  # seeded: the same graph every time
    assert int(approx.out_degrees().max()) <= 5  # node -> neighbour, as the exact path
    assert (approx.out_degrees() == 5).float().mean() > 0.95
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    for (s, d), w in list(found.items())[:50]:
        assert w == pytest.approx(float(xn[s] @ xn[d]), abs=1e-5)
        assert s != d


@requires_faiss
def test_faiss_graph_matches_the_exact_one_on_uniform_random_vectors():
    import faiss

    # Uniform random directions: no cluster structure for the index to exploit.
    x = np.random.default_rng(4).standard_normal((2000, 16)).astype(np.float32)
    data = make_data(x)
    exact = edge_dict(knn_graph(data, k=10, threshold=None, method="exact", undirected=False))
    threads = faiss.omp_get_max_threads()
    graph = knn_graph(data, k=10, threshold=None, method="approximate", ann="faiss",
                      undirected=False)
    assert faiss.omp_get_max_threads() == threads  # faiss's process-wide setting restored
    found = edge_dict(graph)
    assert len(set(found) & set(exact)) / len(exact) >= 0.95
    assert (graph.out_degrees() == 10).all()  # node -> neighbour, k each, never itself
    src, dst = graph.edges()
    assert not (src == dst).any()
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    cosines = np.einsum("ij,ij->i", xn[src.numpy()], xn[dst.numpy()])
    np.testing.assert_allclose(graph.edata["weight"].numpy(), cosines, atol=1e-5)
    # The threshold filters what was found: exactly the found pairs at or above it.
    kept = edge_dict(knn_graph(data, k=10, threshold=0.6, method="approximate", ann="faiss",
                               undirected=False))
    assert kept == {e: w for e, w in found.items() if w >= 0.6 - 1e-6}
    assert kept  # uniform 16-d directions do have neighbours above 0.6


@requires_faiss
def test_faiss_graph_drops_negative_similarities_and_self_matches():
    # Node 3 is opposite everyone; nodes 1 and 2 are duplicates (either may be found
    # before the node itself, so the self-match is not always the first result).
    x = np.array([[1.0, 0.0], [0.6, 0.8], [0.6, 0.8], [-1.0, 0.0]])
    graph = knn_graph(make_data(x), k=3, threshold=None, method="approximate", ann="faiss",
                      undirected=False)
    assert edge_dict(graph) == pytest.approx(
        {(0, 1): 0.6, (0, 2): 0.6, (1, 2): 1.0, (1, 0): 0.6, (2, 1): 1.0, (2, 0): 0.6},
        abs=1e-6)


@requires_faiss
def test_faiss_graph_does_not_depend_on_the_thread_count():
    import faiss

    if tuple(int(p) for p in faiss.__version__.split(".")[:2]) < (1, 15):
        pytest.skip("faiss before 1.15 builds HNSW reproducibly only on one thread")
    x = np.random.default_rng(5).standard_normal((3000, 8)).astype(np.float32)
    data = make_data(x)
    threads = torch.get_num_threads()
    graphs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            graphs.append(edge_dict(knn_graph(data, k=5, threshold=None, method="approximate",
                                              ann="faiss", undirected=False)))
    finally:
        torch.set_num_threads(threads)
    assert graphs[0] == graphs[1]


def test_ann_option_is_validated():
    data = make_data(POINTS)
    reg = zoo.default_registry()
    with pytest.raises(ConfigError, match="graph.ann: .*'hnsw' is not one of"):
        reg.validate("graph_builder", {"name": "knn", "k": 2, "ann": "hnsw"}, "graph")
    reg.validate("graph_builder", {"name": "knn", "k": 2, "ann": "nn_descent",
                                   "hnsw_m": 32, "ef_construction": 40, "ef_search": 16},
                 "graph")
    with pytest.raises(ConfigError, match="graph.ann must be"):
        knn_graph(data, k=2, ann="hnsw")
    with pytest.raises(ConfigError, match="graph.hnsw_m"):
        knn_graph(data, k=2, hnsw_m=1)
    with pytest.raises(ConfigError, match="graph.ef_search"):
        knn_graph(data, k=2, ef_search=0)


def test_auto_falls_back_to_nn_descent_without_faiss(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now fails
    assert not faiss_available()
    x = np.random.default_rng(6).standard_normal((200, 8))
    data = make_data(x)
    with caplog.at_level(logging.WARNING):
        fallback = knn_graph(data, k=4, threshold=None, method="approximate", ann="auto")
    warning, = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "NN-descent" in warning and "pip install zoo[faiss]" in warning
    assert "\n" not in warning
    nn_descent = knn_graph(data, k=4, threshold=None, method="approximate", ann="nn_descent")
    assert edge_dict(fallback) == edge_dict(nn_descent)
    with pytest.raises(ConfigError, match="faiss is not installed.*pip install zoo"):
        knn_graph(data, k=4, method="approximate", ann="faiss")
    # The exact path never needs faiss: no warning, no error.
    caplog.clear()
    knn_graph(data, k=4, threshold=None, ann="faiss")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_auto_switches_to_approximate_above_exact_max_nodes():
    x = np.random.default_rng(3).standard_normal((50, 4))
    graph = knn_graph(make_data(x), k=3, threshold=None, exact_max_nodes=10,
                      undirected=False)
    assert int(graph.out_degrees().max()) <= 3


def test_embeddings_from_a_npy_file(tmp_path):
    path = tmp_path / "emb.npy"
    np.save(path, POINTS)
    data = make_data(np.eye(4))  # features that would give no edges at all
    graph = knn_graph(data, threshold=0.9, embeddings="file", embeddings_file=str(path))
    assert set(edge_dict(graph)) == {(1, 2), (2, 1)}
    np.save(path, POINTS[:3])
    with pytest.raises(DataError, match="shape"):
        knn_graph(data, embeddings="file", embeddings_file=str(path))
    with pytest.raises(ConfigError, match="embeddings_file"):
        knn_graph(data, embeddings="file")


def test_config_errors():
    data = make_data(POINTS)
    with pytest.raises(ConfigError, match="both null"):
        knn_graph(data, k=None, threshold=None)
    with pytest.raises(ConfigError, match="needs graph.k"):
        knn_graph(data, k=None, method="approximate")
    with pytest.raises(ConfigError, match="lower graph.threshold"):
        knn_graph(make_data(np.eye(3)), threshold=0.5)


@requires_cora
def test_exact_knn_on_cora_matches_brute_force():
    exp = zoo.build({"dataset": {"name": "planetoid", "subset": "cora"},
                     "graph": {"name": "knn", "k": 10, "threshold": None, "undirected": False},
                     "encoder": {"name": "mlp"}, "trainer": {"name": "supervised"}})
    graph, data = exp.graph, exp.data
    x = data.features.to_dense().numpy().astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")
    reference = np.zeros_like(sims, dtype=bool)
    np.put_along_axis(reference, order[:, :10], True, axis=1)

    src, dst = (t.numpy() for t in graph.edges())
    weight = graph.edata["weight"].numpy().astype(np.float64)
    assert graph.num_edges() == 10 * data.num_nodes
    assert (graph.out_degrees().numpy() == 10).all()  # edges node -> neighbour
    np.testing.assert_allclose(weight, sims[src, dst], atol=1e-6)
    # Each node's neighbours are its 10 most similar: nothing left out is more similar
    # than the 10th (the reference's 10th similarity), up to float32 rounding. Which of
    # several equally similar nodes fills the last places (Cora's binary bag-of-words
    # tie often) may differ from float64 ties, so ties are compared by value only.
    kth = np.take_along_axis(sims, order[:, 9:10], axis=1)[:, 0]
    mine_kth = np.full(data.num_nodes, np.inf)
    np.minimum.at(mine_kth, src, weight)
    np.testing.assert_allclose(mine_kth, kth, atol=1e-6)
    found = np.zeros_like(reference)
    found[src, dst] = True
    clearly_in = sims > kth[:, None] + 1e-6
    assert (found | ~clearly_in).all()
    # Where the 11th is clearly less similar than the 10th, the set is unique.
    eleventh = np.take_along_axis(sims, order[:, 10:11], axis=1)[:, 0]
    unique = eleventh < kth - 1e-6
    assert unique.mean() > 0.4
    assert (found[unique] == reference[unique]).all()


def test_knn_from_encoder_embeddings():
    """`embeddings: encoder` runs an encoder section over the features (eval mode)."""
    import zoo
    from zoo.data import GraphData

    torch.manual_seed(0)
    n = 40
    features = torch.randn(n, 6)
    src = torch.arange(n - 1)
    data = GraphData(graph=dgl.graph((src, src + 1), num_nodes=n), features=features,
                     labels=torch.zeros(n, dtype=torch.long),
                     train_mask=torch.ones(n, dtype=torch.bool),
                     val_mask=torch.zeros(n, dtype=torch.bool),
                     test_mask=torch.zeros(n, dtype=torch.bool), num_classes=1, name="toy")
    reg = zoo.default_registry()
    section = {"name": "knn", "k": 3, "threshold": None, "embeddings": "encoder",
               "encoder": {"name": "mlp", "hidden": 8, "layers": 1, "dropout": 0.5}}
    graph = reg.build("graph_builder", section, data)
    assert graph.num_nodes() == n and graph.num_edges() >= 3 * n
    with pytest.raises(zoo.errors.ConfigError, match="graph.encoder.hiden: unknown key"):
        reg.validate("graph_builder", {**section, "encoder": {"name": "mlp", "hiden": 3}},
                     "graph")
