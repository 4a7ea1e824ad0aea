"""Graph builder ``knn``: a cosine-similarity graph over node features or embeddings.

The semantics follow NSL's ``build_graph`` (tensorflow/neural-structured-learning,
``neural_structured_learning/tools/build_graph.py``): vectors are L2-normalized (a
norm below 1e-6 counts as 1e-6, as ``tf.math.l2_normalize``), two distinct nodes are
linked when their cosine similarity is *at least* ``threshold`` (default 0.8, NSL's
``similarity_threshold``; up to float32 rounding, see ``THRESHOLD_TOLERANCE``), the
edge weight is that similarity, and both directions are written (here:
``undirected: true``). On top of NSL, ``k`` keeps only each node's ``k`` most
similar neighbours, as edges node -> neighbour (the zoo's convention, see
``common.py``: a node's neighbours are its out-edges, as in NSL's graph TSV), so with
``undirected: false`` every node has exactly ``k`` out-edges (fewer if too few nodes
pass the threshold). The two search functions below return ``(neighbours, nodes,
similarities)`` instead, the direction of ``dgl.knn_graph``; the builder reverses it.

Edges with similarity <= 0 are always dropped, whatever the threshold: a weight must
be positive to mean "similar", and zero-weight edges would only pad degrees.

Large inputs take an approximate search (``ann``): a faiss HNSW index when faiss is
installed (``pip install zoo[faiss]``), else DGL's NN-descent. On 100,000 uniform random
64-d vectors with k=10 HNSW finds about 91% of the true neighbours, NN-descent about
17% (``benchmarks/bench_knn.py``).
"""

from __future__ import annotations

import logging
import typing
from pathlib import Path
from typing import Annotated, Literal

import dgl
import numpy as np
import scipy.sparse as sp
import torch

import zoo
from zoo.contracts import GraphData, ModelOutput
from zoo.errors import ConfigError, DataError
from zoo.schema import ComponentSpec, Kind
from zoo_plugins.graph_builders.common import Combine, finalize_graph, with_common_args
from zoo_plugins.neighbors import top_neighbor_edges

Method = Literal["auto", "exact", "approximate"]
Ann = Literal["auto", "faiss", "nn_descent"]
Embeddings = Literal["features", "file", "encoder"]

log = logging.getLogger(__name__)

MIN_NORM = 1e-6  # tf.math.l2_normalize's epsilon, as NSL uses
# Float32 dot products of unit vectors carry rounding errors of about 1e-7, so a pair whose
# similarity is exactly the threshold (two bag-of-words rows of 4 and 1 words sharing one
# word: 1/2) would be kept or lost by chance; such near-ties count as reaching it.
THRESHOLD_TOLERANCE = 1e-6
# Similarity rows are computed in blocks of about this many entries (64 MiB of float32).
BLOCK_ENTRIES = 1 << 24
# HNSW defaults, measured on 100,000 uniform random 64-d vectors, k=10, 2 threads (the
# hardest case: no cluster structure to exploit): M=64, efConstruction=64 and an
# efSearch of 2(k+1) find 91% of the true top-10 (over HNSW seeds: 91-92%) 2.2x faster
# than the exact graph. Recall there depends far more on the graph (M, efConstruction)
# than on efSearch: efConstruction 80 gives 95% for ~40% more time; M=32 with
# efConstruction 64 below 80%; IVF indexes needed more time than HNSW for any recall.
HNSW_M = 64
EF_CONSTRUCTION = 64


def l2_normalize(x: torch.Tensor | sp.spmatrix) -> torch.Tensor | sp.csr_matrix:
    """Rows scaled to unit L2 norm (a norm below 1e-6 counts as 1e-6)."""
    if sp.issparse(x):
        x = sp.csr_matrix(x, dtype=np.float32)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        return sp.diags(1.0 / np.maximum(norms, MIN_NORM)).astype(np.float32) @ x
    return x / x.norm(dim=1, keepdim=True).clamp_min(MIN_NORM)


def to_scipy_csr(x: torch.Tensor) -> sp.csr_matrix:
    """A sparse torch tensor (COO or CSR) as a SciPy CSR matrix of float32."""
    x = x.to_sparse_coo().coalesce()
    rows, cols = x.indices().numpy()
    return sp.csr_matrix((x.values().numpy().astype(np.float32), (rows, cols)),
                         shape=tuple(x.shape))


def _ranked_top_k(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices of each row's ``k`` largest entries, equal values going
    to the smaller column, so the result does not depend on ``torch.topk``'s tie order.

    ``topk`` with one extra column shows which rows have a tie across the k-th place;
    only those rows (rare for real-valued similarities) are re-ranked over the full row.
    """
    b, n = sims.shape
    if k >= n:
        return torch.arange(b).repeat_interleave(n), torch.arange(n).repeat(b)
    values, cols = torch.topk(sims, k + 1, dim=1)
    kth = values[:, k - 1]
    tied = (values[:, k] == kth) & (kth > -torch.inf)
    cols = cols[:, :k].clone()
    rows = tied.nonzero().squeeze(1)
    if len(rows):
        sub, level = sims[rows], kth[rows].unsqueeze(1)
        above = sub > level
        ties = sub == level
        need = k - above.sum(dim=1, keepdim=True)
        chosen = above | (ties & (ties.cumsum(dim=1) <= need))  # exactly k per row
        cols[rows] = chosen.nonzero(as_tuple=True)[1].reshape(len(rows), k)
    return torch.arange(b).repeat_interleave(k), cols.reshape(-1)


def exact_knn(x: torch.Tensor | sp.csr_matrix, k: int | None, threshold: float | None,
              block_entries: int = BLOCK_ENTRIES, queries: torch.Tensor | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact cosine neighbours of L2-normalized rows ``x`` (dense tensor or CSR matrix):
    ``(neighbours, nodes, similarities)`` (the direction of ``dgl.knn_graph``), each
    node's ``k`` most similar (all if ``k`` is null; ties to the smaller neighbour id)
    among those with similarity >= ``threshold`` and > 0.
    ``queries`` limits the nodes whose neighbours are found (default: all).

    Similarities are computed a block of rows at a time (one matrix product each) so
    memory stays bounded; a sparse ``x`` is densified one block at a time.
    """
    n = x.shape[0]
    query_ids = torch.arange(n) if queries is None else torch.as_tensor(queries).long()
    rows_per_block = max(1, block_entries // max(n, 1))
    lowest = 0.0 if threshold is None else max(0.0, threshold - THRESHOLD_TOLERANCE)
    srcs, dsts, weights = [], [], []
    for start in range(0, len(query_ids), rows_per_block):
        ids = query_ids[start:start + rows_per_block]
        if sp.issparse(x):
            # SciPy's sparse x dense product (several times faster than torch.sparse.mm
            # on COO here); only this block of rows is ever dense.
            block = x[ids.numpy()].toarray()
            sims = torch.from_numpy(np.ascontiguousarray((x @ block.T).T))
        else:
            sims = (x[ids] @ x.T).contiguous()
        sims[torch.arange(len(ids)), ids] = -torch.inf  # a node is not its own neighbour
        if k is None:
            r, c = (sims >= lowest).nonzero(as_tuple=True)
        else:
            # The accepted similarities are an upper set, so filtering the top k after
            # ranking keeps exactly the top k of the accepted ones.
            r, c = _ranked_top_k(sims, k)
        w = sims[r, c]
        keep = (w > 0) & (w >= lowest)
        srcs.append(c[keep])
        dsts.append(ids[r[keep]])
        weights.append(w[keep])
    return torch.cat(srcs), torch.cat(dsts), torch.cat(weights)


def _top_candidates(neighbors: torch.Tensor, nodes: torch.Tensor, weight: torch.Tensor,
                    num_nodes: int, k: int, threshold: float | None,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The candidate edges an approximate search found, filtered as :func:`exact_knn`
    filters: no self-pairs, similarity > 0 and >= ``threshold``, and each node's ``k``
    most similar, ties to the smaller neighbour id (among the candidates found)."""
    keep = (neighbors >= 0) & (neighbors != nodes) & (weight > 0)
    if threshold is not None:
        keep &= weight >= threshold - THRESHOLD_TOLERANCE
    neighbors, nodes, weight = neighbors[keep], nodes[keep], weight[keep]
    top = top_neighbor_edges(nodes, neighbors, weight, num_nodes, k)
    return neighbors[top], nodes[top], weight[top]


def approximate_knn(x: torch.Tensor, k: int, threshold: float | None,
                    candidates: int | None = None, seed: int = 0,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Approximate cosine neighbours with NN-descent (``dgl.knn_graph``), same output
    and filtering as :func:`exact_knn`. ``x`` must be dense and L2-normalized.

    NN-descent searches ``candidates`` neighbours per node (default ``2k``) and the
    ``k`` most similar are kept: DGL's NN-descent samples only half of each list per
    iteration, so asking for just ``k`` finds few true neighbours (measured on Cora's
    features: 56% of the true top-10 with about 10 candidates, 90% with 20, 97% with 30).
    """
    n = x.shape[0]
    dgl.seed(seed)  # NN-descent starts from random neighbour lists
    # Plus one because a node usually finds itself; that edge is dropped below.
    searched = min((candidates or 2 * k) + 1, n)
    g = dgl.knn_graph(x, searched, algorithm="nn-descent", dist="cosine")
    src, dst = g.edges()
    # Each node (dst here, as dgl.knn_graph) keeps its k most similar candidates.
    return _top_candidates(src, dst, (x[src] * x[dst]).sum(dim=1), n, k, threshold)


def faiss_knn(x: torch.Tensor, k: int, threshold: float | None, hnsw_m: int = HNSW_M,
              ef_construction: int = EF_CONSTRUCTION, ef_search: int | None = None,
              seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Approximate cosine neighbours with a faiss HNSW index over the inner product,
    same output and filtering as :func:`exact_knn`. ``x`` must be dense and
    L2-normalized, so the inner product is the cosine similarity.

    Every node is searched among all nodes for its ``k + 1`` best matches, one of
    which is usually itself and is dropped. ``ef_search`` (default ``2(k + 1)``) is
    the size of the search's candidate list; faiss raises it to at least ``k + 1``.
    faiss runs on ``torch.get_num_threads()`` threads. ``seed`` draws the HNSW levels;
    faiss 1.15's build is deterministic, so the graph is the same for every thread
    count, while older releases build reproducibly only on one thread.
    """
    import faiss

    n, d = x.shape
    vectors = np.ascontiguousarray(x.numpy(), dtype=np.float32)
    index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.hnsw.efSearch = ef_search or 2 * (k + 1)
    # The level generator is `rng` in faiss >= 1.15, `level_generator` before.
    field = "rng" if hasattr(index.hnsw, "rng") else "level_generator"
    setattr(index.hnsw, field, faiss.RandomGenerator(seed))
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(torch.get_num_threads())
    try:
        index.add(vectors)
        # faiss's own inner products: recomputing them would gather (n, k+1, d) floats.
        sims, found = index.search(vectors, min(k + 1, n))
    finally:
        faiss.omp_set_num_threads(threads)  # faiss's thread count is process-wide
    width = found.shape[1]
    nodes = torch.arange(n).repeat_interleave(width)
    # Missing results (fewer nodes than asked) come back as id -1; dropped there.
    return _top_candidates(torch.from_numpy(found).reshape(-1), nodes,
                           torch.from_numpy(sims).reshape(-1), n, k, threshold)


def faiss_available() -> bool:
    """Whether faiss can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_ann(ann: Ann) -> Literal["faiss", "nn_descent"]:
    """The approximate search ``ann`` names: 'faiss' or 'nn_descent' ('auto': faiss if
    it is installed, else NN-descent with a warning)."""
    if ann == "nn_descent":
        return ann
    if faiss_available():
        return "faiss"
    if ann == "faiss":
        raise ConfigError("graph.ann is 'faiss' but faiss is not installed; run "
                          "`pip install zoo[faiss]` or set graph.ann: nn_descent")
    log.warning("faiss is not installed, so the approximate kNN graph uses NN-descent, "
                "whose recall is low on large or high-dimensional inputs; "
                "`pip install zoo[faiss]` fixes it (graph.ann: nn_descent silences this)")
    return "nn_descent"


def load_embeddings(path: str, num_nodes: int) -> torch.Tensor:
    """A ``(num_nodes, d)`` float32 tensor from a ``.npy`` file."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"embeddings file '{path}' not found; give the path of a .npy file "
                        f"with one row per node ({num_nodes} rows)")
    try:
        array = np.load(file, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"embeddings file '{path}' is not a readable .npy array ({e}); "
                        "save it with numpy.save") from None
    if array.ndim != 2 or array.shape[0] != num_nodes or not np.issubdtype(array.dtype,
                                                                           np.number):
        raise DataError(f"embeddings file '{path}' holds a {array.dtype} array of shape "
                        f"{array.shape}; expected a numeric (num_nodes={num_nodes}, d) array")
    if not np.isfinite(array).all():
        raise DataError(f"embeddings file '{path}' contains NaN or infinite values; fix them")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def encode(data: GraphData, encoder: ComponentSpec) -> torch.Tensor:
    """Embeddings of every node from an encoder section (built from the experiment's
    registry, with no output size), in eval mode."""
    model = encoder(data.num_features, None)
    model.eval()
    with torch.no_grad():
        out = model(data.features)
    out = out.embedding if isinstance(out, ModelOutput) else out
    return out.detach().to(torch.float32)


@with_common_args
def knn_graph(data: GraphData, *, k: int | None = None, threshold: float | None = 0.8,
              embeddings: Embeddings = "features", embeddings_file: str | None = None,
              encoder: Annotated[dict, Kind("encoder")] | None = None,
              method: Method = "auto", exact_max_nodes: int = 20000, ann: Ann = "auto",
              hnsw_m: int = HNSW_M, ef_construction: int = EF_CONSTRUCTION,
              ef_search: int | None = None, candidates: int | None = None, seed: int = 0,
              max_neighbors: int | None = None, undirected: bool = True,
              combine: Combine = "max", self_loops: bool | None = None) -> dgl.DGLGraph:
    """Cosine-similarity graph from node features or embeddings (top-k and/or threshold, as NSL).

    Two distinct nodes are linked when their cosine similarity is >= ``threshold``;
    with ``k`` each node keeps only its ``k`` most similar such neighbours (ties go to
    the smaller node id). The weight is the similarity; pairs with similarity <= 0 are
    always dropped.

    Args:
        k: neighbours per node (its out-edges node -> neighbour); null: every pair
            above the threshold (needs ``method`` exact).
        threshold: minimum cosine similarity of an edge (NSL's default 0.8); null: no
            threshold (then ``k`` is required). Similarities <= 0 never make an edge.
        embeddings: 'features' (the dataset's node features, sparse or dense), 'file'
            (a .npy array with one row per node, named by ``embeddings_file``) or
            'encoder' (the output of the ``encoder`` section run over the features,
            e.g. a plugin encoder that loads pretrained weights).
        embeddings_file: path of the .npy embeddings when ``embeddings`` is 'file'.
        encoder: the encoder section (``{name: ..., ...}``) when ``embeddings`` is
            'encoder'; it is built with no output size and run in eval mode.
        method: 'exact' (blocked matrix products), 'approximate' (the ``ann``
            search; needs ``k``) or 'auto' (exact up to ``exact_max_nodes`` nodes).
        exact_max_nodes: largest node count 'auto' still computes exactly.
        ann: the approximate search: 'faiss' (an HNSW index, ``pip install
            zoo[faiss]``; 91% of the true top-10 on 100k uniform random 64-d vectors),
            'nn_descent' (DGL's NN-descent; 17% there) or 'auto' (faiss if installed,
            else NN-descent with a warning).
        hnsw_m: faiss HNSW links per node (M; 2M on the bottom layer); more raises
            recall, slower to build, more memory.
        ef_construction: faiss HNSW candidate list while building; the main
            recall/time knob (64: 91% above, 80: 95% at ~1.4x the time).
        ef_search: faiss HNSW candidate list while searching (null: 2(k+1)).
        candidates: neighbours NN-descent searches per node before the ``k`` most
            similar are kept (null: 2k); more finds more true neighbours, slower.
        seed: random seed of the approximate search (NN-descent's start, HNSW's
            levels). faiss uses torch's thread count; its graph is the same for any
            thread count from faiss 1.15 on, on one thread only before.
    """
    if k is None and threshold is None:
        raise ConfigError("graph.k and graph.threshold are both null; set k (neighbours per "
                          "node), threshold (minimum similarity) or both")
    if k is not None and k < 1:
        raise ConfigError(f"graph.k must be >= 1 or null, got {k}")
    if ann not in typing.get_args(Ann):
        raise ConfigError(f"graph.ann must be 'auto', 'faiss' or 'nn_descent', got {ann!r}")
    if hnsw_m < 2 or ef_construction < 1 or (ef_search is not None and ef_search < 1):
        raise ConfigError(f"graph.hnsw_m ({hnsw_m}) must be >= 2 and graph.ef_construction "
                          f"({ef_construction}) and graph.ef_search ({ef_search}) >= 1; "
                          "the defaults are 64, 64 and null")
    if candidates is not None and k is not None and candidates < k:
        raise ConfigError(f"graph.candidates ({candidates}) must be at least graph.k ({k}); "
                          "NN-descent keeps the k best of the candidates it finds")
    n = data.num_nodes
    if method == "auto":
        method = "exact" if n <= exact_max_nodes or k is None else "approximate"
    if method == "approximate" and k is None:
        raise ConfigError("graph.method 'approximate' needs graph.k (the approximate "
                          "search finds k neighbours per node); set k or use method: exact")
    # Resolved before the embeddings are computed, so a missing faiss fails fast.
    search = resolve_ann(ann) if method == "approximate" else None

    if embeddings == "file":
        if not embeddings_file:
            raise ConfigError("graph.embeddings is 'file' but graph.embeddings_file is not "
                              "set; give the path of a .npy array with one row per node")
        x: torch.Tensor | sp.csr_matrix = load_embeddings(embeddings_file, n)
    elif embeddings == "encoder":
        if encoder is None:
            raise ConfigError("graph.embeddings is 'encoder' but graph.encoder is not set; "
                              "give an encoder section, e.g. {name: mlp, hidden: 64}")
        x = encode(data, encoder)
    else:
        if embeddings_file or encoder is not None:
            raise ConfigError("graph.embeddings_file or graph.encoder is set but "
                              "graph.embeddings is 'features'; set embeddings: file or "
                              "embeddings: encoder to use it")
        x = data.features.detach().cpu()
        x = to_scipy_csr(x) if x.layout != torch.strided else x.to(torch.float32)
    x = l2_normalize(x)

    with torch.no_grad():
        if method == "exact":
            neighbors, nodes, weight = exact_knn(x, k, threshold)
        else:
            dense = torch.from_numpy(x.toarray()) if sp.issparse(x) else x
            if search == "faiss":
                neighbors, nodes, weight = faiss_knn(  # type: ignore[arg-type]
                    dense, k, threshold, hnsw_m, ef_construction, ef_search, seed)
            else:
                neighbors, nodes, weight = approximate_knn(  # type: ignore[arg-type]
                    dense, k, threshold, candidates, seed)
    # node -> neighbour: the zoo's edge convention (see common.py).
    return finalize_graph(nodes, neighbors, weight, n, source="graph builder 'knn'",
                          max_neighbors=max_neighbors, undirected=undirected, combine=combine,
                          self_loops=self_loops,
                          empty_hint="no pair of nodes is similar enough; lower "
                                     "graph.threshold or set graph.k")


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("graph_builder", "knn", knn_graph)
