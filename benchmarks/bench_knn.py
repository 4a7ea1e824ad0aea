"""Benchmark the ``knn`` graph builder: both approximate searches against exact.

For ``--n`` random 64-d vectors (default 100,000) it times the builder's two
approximate paths, a faiss HNSW index (``ann: faiss``, skipped if faiss is not
installed) and DGL's NN-descent (``ann: nn_descent``), each followed by the k most
similar of the candidates, and the exact path (blocked matrix products), and measures
the recall@k of each approximate graph against the exact one. Exact neighbours of all
nodes would take a minute at this size, so by default they are computed for a random
sample of ``--sample`` query nodes (exactly the work the full exact path does per
node); the full exact time is that time scaled by n / sample, and recall is measured
on the same sample. ``--full-exact`` times the whole exact graph instead.

Uniform random vectors are the hardest case for neighbour-of-neighbour search (every
point is about equally far from every other), so the same measurement is repeated on
clustered vectors (a Gaussian mixture), closer to real embeddings. Finally it times
the exact path on Cora's sparse features against a bare dense product + top-k.

    python benchmarks/bench_knn.py            # 1-2 minutes on 2 CPU cores
    python benchmarks/bench_knn.py --n 20000  # quicker
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

os.environ.setdefault("DGLBACKEND", "pytorch")

from zoo_plugins.graph_builders.knn import (  # noqa: E402
    EF_CONSTRUCTION,
    HNSW_M,
    approximate_knn,
    exact_knn,
    faiss_available,
    faiss_knn,
    l2_normalize,
    to_scipy_csr,
)


def random_vectors(n: int, dim: int, clustered: bool, seed: int = 0) -> torch.Tensor:
    """Unit vectors: standard normal, or a 100-component Gaussian mixture."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim))
    if clustered:
        centers = 3.0 * rng.standard_normal((100, dim))
        x += centers[rng.integers(0, 100, n)]
    return l2_normalize(torch.from_numpy(x.astype(np.float32)))


def neighbour_sets(src: torch.Tensor, dst: torch.Tensor, queries: np.ndarray,
                   ) -> dict[int, set[int]]:
    """Neighbours (edge sources) of each query node (edge destination)."""
    wanted = torch.isin(dst, torch.from_numpy(queries))
    sets: dict[int, set[int]] = {int(q): set() for q in queries}
    for s, d in zip(src[wanted].tolist(), dst[wanted].tolist()):
        sets[d].add(s)
    return sets


def recall_at_k(src: torch.Tensor, dst: torch.Tensor, true: dict[int, set[int]]) -> float:
    """Share of the exact neighbours of the sampled queries that a graph also has."""
    found = neighbour_sets(src, dst, np.fromiter(true, dtype=np.int64))
    hits = sum(len(found[q] & true[q]) for q in true)
    return hits / max(1, sum(len(t) for t in true.values()))


def compare(name: str, x: torch.Tensor, k: int, sample: int, candidates: int | None,
            full_exact: bool, hnsw: dict) -> None:
    n = x.shape[0]
    rng = np.random.default_rng(1)
    queries = np.sort(rng.choice(n, size=min(sample, n), replace=False))

    start = time.perf_counter()
    if full_exact:
        e_src, e_dst, _ = exact_knn(x, k, None)
        exact_s = time.perf_counter() - start
        how = "all nodes"
    else:
        e_src, e_dst, _ = exact_knn(x, k, None, queries=torch.from_numpy(queries))
        exact_s = (time.perf_counter() - start) * n / len(queries)
        how = f"{len(queries)} sampled queries, time scaled by n/sample"
    true = neighbour_sets(e_src, e_dst, queries)

    searches = {"nn-descent": lambda: approximate_knn(x, k, None, candidates=candidates)}
    if faiss_available():
        searches["faiss hnsw"] = lambda: faiss_knn(x, k, None, **hnsw)
    print(f"{name}: n={n}, d={x.shape[1]}, k={k}; nn-descent candidates="
          f"{candidates or 2 * k}; hnsw M={hnsw['hnsw_m']}, efConstruction="
          f"{hnsw['ef_construction']}, efSearch={hnsw['ef_search'] or 2 * (k + 1)}")
    print(f"  exact (blocked)     {exact_s:8.2f} s   ({how})")
    for search, run in searches.items():
        start = time.perf_counter()
        src, dst, _ = run()
        seconds = time.perf_counter() - start
        print(f"  {search:<18}  {seconds:8.2f} s   speed-up vs exact {exact_s / seconds:5.2f}x   "
              f"recall@{k} {recall_at_k(src, dst, true):.4f}")
    if not faiss_available():
        print("  faiss hnsw: skipped (faiss is not installed: pip install zoo[faiss])")


def bench_cora(k: int) -> None:
    try:
        import zoo

        data = zoo.default_registry().build("dataset", {"name": "planetoid",
                                                         "subset": "cora"})
    except Exception as e:  # no offline copy: say so, the rest still ran
        print(f"cora: skipped ({e})")
        return
    sparse = l2_normalize(to_scipy_csr(data.features))
    dense = torch.from_numpy(sparse.toarray())
    start = time.perf_counter()
    exact_knn(sparse, k, None)
    ours_s = time.perf_counter() - start
    # Bare baseline: one dense product of the whole matrix and top-k, no blocking,
    # no deterministic ties, no filtering.
    start = time.perf_counter()
    sims = dense @ dense.T
    sims.fill_diagonal_(-torch.inf)
    torch.topk(sims, k, dim=1)
    bare_s = time.perf_counter() - start
    print(f"cora exact knn: n={data.num_nodes}, {data.num_features} sparse features, k={k}")
    print(f"  knn builder (sparse, blocked)   {ours_s:6.3f} s")
    print(f"  bare dense product + topk       {bare_s:6.3f} s")
    print(f"  ratio builder / bare: {ours_s / bare_s:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="number of random vectors")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--sample", type=int, default=2000, help="query nodes for exact recall")
    p.add_argument("--candidates", type=int, default=None,
                   help="NN-descent candidates per node (default 2k, as the builder)")
    p.add_argument("--hnsw-m", type=int, default=HNSW_M, help="faiss HNSW M")
    p.add_argument("--ef-construction", type=int, default=EF_CONSTRUCTION)
    p.add_argument("--ef-search", type=int, default=None, help="default 2(k+1)")
    p.add_argument("--full-exact", action="store_true",
                   help="time the exact graph of all nodes instead of a sample")
    p.add_argument("--no-clustered", action="store_true", help="skip the clustered data")
    args = p.parse_args()
    hnsw = {"hnsw_m": args.hnsw_m, "ef_construction": args.ef_construction,
            "ef_search": args.ef_search}
    print(f"torch threads: {torch.get_num_threads()} (faiss uses as many)")
    compare("uniform random vectors", random_vectors(args.n, args.dim, False), args.k,
            args.sample, args.candidates, args.full_exact, hnsw)
    if not args.no_clustered:
        compare("clustered vectors (100-component mixture)",
                random_vectors(args.n, args.dim, True), args.k, args.sample,
                args.candidates, args.full_exact, hnsw)
    bench_cora(args.k)


if __name__ == "__main__":
    main()
