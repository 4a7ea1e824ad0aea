"""The Planetoid citation graphs (Cora, Citeseer, Pubmed) with the standard split.

Raw files are the ``ind.<subset>.{x,y,tx,ty,allx,ally,graph,test.index}`` of the
Planetoid authors (github.com/kimiyoung/planetoid, folder ``data/``, MIT licence),
fetched through :mod:`zoo_plugins.datasets.fetch` (cache, ``ZOO_DATA_MIRROR``,
atomic verified writes) and unpickled only through
:mod:`zoo_plugins.datasets.safe_pickle`, because a pickle can run code.

Split and layout follow the loader of Kipf & Welling (GCN) that every paper on
these graphs uses: train = the first ``len(y)`` nodes, validation = the next 500,
test = the ids in ``test.index``. Rows of ``tx``/``ty`` belong to the ids of
``test.index`` in file order. Citeseer's test ids have gaps (isolated papers the
authors dropped); as in the standard loader those ids get all-zero feature and
label rows and belong to no mask. Any node whose label row is all zero gets
label 0 and is left out of every mask. Features are row-normalized and kept
sparse; the graph is made symmetric, without duplicate edges or self-loops.

Checksums (all 24 files are pinned in :data:`PINNED_SHA256`):

- Cora: copied from the ``SHA256SUMS`` of the project's dataset mirror.
- Citeseer and Pubmed: taken from public code that pins the same upstream
  commit (``af6abf468a772cc055bec88c52e4d6f51b7c37e3`` of kimiyoung/planetoid).
  Three unrelated public projects list identical values for all 16 files, and the
  two that also list Cora's agree with the mirror's ``SHA256SUMS`` exactly. They
  were not re-derived by downloading the files here (no network at build time).

A file whose pin is removed from the table is still verified, against a
``SHA256SUMS`` offered by the same source, with a warning; without one it is
refused (see :func:`zoo_plugins.datasets.fetch.fetch`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from zoo_plugins.datasets import fetch as fetch_mod
from zoo_plugins.datasets.safe_pickle import safe_load

import zoo
from zoo.contracts import GraphData
from zoo.errors import ConfigError, DataError

SUBSETS = ("cora", "citeseer", "pubmed")
PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index")
CANONICAL_BASE_URL = "https://github.com/kimiyoung/planetoid/raw/master/data"
CACHE_GROUP = "planetoid"
VAL_SIZE = 500
DOWNLOAD_TIMEOUT_S = 60.0

PINNED_SHA256: dict[str, str] = {
    "ind.cora.x": "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab",
    "ind.cora.y": "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1",
    "ind.cora.tx": "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a",
    "ind.cora.ty": "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad",
    "ind.cora.allx": "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543",
    "ind.cora.ally": "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71",
    "ind.cora.graph": "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d",
    "ind.cora.test.index": "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875",
    "ind.citeseer.x": "d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6",
    "ind.citeseer.y": "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924",
    "ind.citeseer.tx": "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21",
    "ind.citeseer.ty": "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce",
    "ind.citeseer.allx": "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668",
    "ind.citeseer.ally": "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95",
    "ind.citeseer.graph": "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7",
    "ind.citeseer.test.index": "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4",
    "ind.pubmed.x": "fbe9cb5c47200d1b7769a26e579be3b7130b556831f9d850e77c4c74f2599b33",
    "ind.pubmed.y": "e6c807633307a07ed659249006536a147c7999c797f11a2560752990181b41b3",
    "ind.pubmed.tx": "4eb5f5d0f30f26497eb0ac6ac9719d09c67e284f1ed0385c93f3ef27a671da3d",
    "ind.pubmed.ty": "ee2e0d4819d9fbcc403689c3bf2e49face401b605932f093bc58ab6461130fdd",
    "ind.pubmed.allx": "508e538e2abdccdd54c4d3e9f49d638b4af7107d85845f66ddea5a5152658b7e",
    "ind.pubmed.ally": "0c37bbe3b5014ec365e9d393cf4791925e5ed94fb194305d74f064a8d7b50f0e",
    "ind.pubmed.graph": "5b89f0036ca22909471f1e6558eb42fa06e0c730a577bde5b058b40638f81dc9",
    "ind.pubmed.test.index": "b101d421688bbaecbd82e8a18f1e282378d6830f3a37666f28ebc47f844341b5",
}


def planetoid(*, subset: str = "cora", self_loops: bool = False) -> GraphData:
    """Planetoid citation graph (Cora, Citeseer or Pubmed) with the standard GCN split.

    Args:
        subset: Which graph: ``cora``, ``citeseer`` or ``pubmed``.
        self_loops: Add one self-loop per node to the graph (none otherwise).
    """
    if not isinstance(subset, str) or subset.lower() not in SUBSETS:
        raise ConfigError(
            f"unknown planetoid subset {subset!r}; valid subsets are {', '.join(SUBSETS)}"
        )
    subset = subset.lower()
    parsed = _load_cached(
        subset, fetch_mod.source_for(CANONICAL_BASE_URL, CACHE_GROUP),
        str(fetch_mod.cache_root()),
    )
    return _to_graph_data(parsed, subset, self_loops=bool(self_loops))


@zoo.hookimpl
def zoo_register(registry: Any) -> None:
    """Register the ``planetoid`` dataset."""
    registry.add("dataset", "planetoid", planetoid)


@dataclass(frozen=True)
class ParsedPlanetoid:
    """A parsed Planetoid graph, independent of torch tensors handed to callers."""

    features: Any  # scipy.sparse.csr_matrix (N, F) float32, row-normalized
    labels: np.ndarray  # (N,) int64
    train_mask: np.ndarray  # (N,) bool
    val_mask: np.ndarray
    test_mask: np.ndarray
    src: np.ndarray  # (E,) int64, both directions of every undirected edge
    dst: np.ndarray
    num_classes: int
    missing_test_ids: tuple[int, ...]
    unlabeled_nodes: int


def raw_filenames(subset: str) -> dict[str, str]:
    """Return ``{part: file name}`` for the eight raw files of ``subset``."""
    return {part: f"ind.{subset}.{part}" for part in PARTS}


# Keyed by where the files come from and where they are cached, so that changing
# ZOO_DATA_MIRROR or ZOO_DATA_DIR (as tests do) never serves another source's data.
@functools.lru_cache(maxsize=4)
def _load_cached(subset: str, source: str, cache_dir: str) -> ParsedPlanetoid:
    paths = {
        part: fetch_mod.fetch(
            name,
            PINNED_SHA256.get(name),
            group=CACHE_GROUP,
            base_url=CANONICAL_BASE_URL,
            timeout=DOWNLOAD_TIMEOUT_S,
        )
        for part, name in raw_filenames(subset).items()
    }
    return parse_raw(paths)


def clear_cache() -> None:
    """Forget the parsed datasets kept in this process."""
    _load_cached.cache_clear()


def parse_raw(paths: Mapping[str, Path]) -> ParsedPlanetoid:
    """Parse the eight verified raw files (``{part: path}``) into the standard layout."""
    import scipy.sparse as sp

    objs = {part: safe_load(paths[part], what=paths[part].name) for part in PARTS[:-1]}
    for part in ("x", "tx", "allx"):
        if not sp.issparse(objs[part]):
            _bad(paths[part], "is not a sparse feature matrix")
        try:
            objs[part] = _fresh_csr(objs[part])
        except (AttributeError, TypeError, ValueError, IndexError):  # parts missing or wrong
            _bad(paths[part], "is a damaged sparse feature matrix")
    for part in ("y", "ty", "ally"):
        obj = objs[part]
        if not isinstance(obj, np.ndarray) or obj.ndim != 2:
            _bad(paths[part], "is not a 2-D one-hot label array")
    if not isinstance(objs["graph"], Mapping):
        _bad(paths["graph"], "is not a dict of adjacency lists")
    test_ids = _read_index(paths["test.index"])

    x, y, tx, ty = objs["x"], objs["y"], objs["tx"], objs["ty"]
    allx, ally = objs["allx"], objs["ally"]
    n_known, num_features = allx.shape
    num_classes = ally.shape[1]
    if x.shape[0] != y.shape[0] or x.shape[1] != num_features:
        _bad(paths["x"], "does not match the shapes of y and allx")
    if tx.shape != (len(test_ids), num_features):
        _bad(paths["tx"], "does not have one row per test id and allx's columns")
    if ally.shape[0] != n_known or ty.shape != (len(test_ids), num_classes) or num_classes < 1:
        _bad(paths["ty"], "does not match the shapes of allx, ally and the test ids")
    if y.shape[1] != num_classes or y.shape[0] + VAL_SIZE > n_known:
        _bad(paths["y"], f"leaves no room for {VAL_SIZE} validation nodes in allx")
    if len(np.unique(test_ids)) != len(test_ids):
        _bad(paths["test.index"], "lists a node id twice")
    if len(test_ids) and test_ids.min() < n_known:
        _bad(paths["test.index"], "names ids that overlap allx")
    # Ids may skip a few (Citeseer's gaps), never most: the arrays below have a row per id.
    if len(test_ids) and test_ids.max() >= 2 * (n_known + len(test_ids)):
        _bad(paths["test.index"], "names ids far beyond the graph's rows")

    # Node ids: allx rows are ids 0..n_known-1, tx rows are the test ids in file
    # order. Ids up to the largest test id that are not test ids (Citeseer's gaps)
    # stay all-zero, exactly as the standard loader's "extended" tx leaves them.
    num_nodes = max(n_known, int(test_ids.max()) + 1 if len(test_ids) else 0)
    row_ids = np.concatenate([np.arange(n_known, dtype=np.int64), test_ids])
    place = sp.csr_matrix(
        (np.ones(len(row_ids)), (row_ids, np.arange(len(row_ids)))),
        shape=(num_nodes, len(row_ids)),
    )
    features = (place @ sp.vstack([allx, tx], format="csr").astype(np.float64)).tocsr()
    features = _row_normalize(features).astype(np.float32)

    one_hot = np.zeros((num_nodes, num_classes), dtype=np.float64)
    one_hot[row_ids] = np.vstack([ally, ty])
    labeled = one_hot.sum(axis=1) > 0
    labels = one_hot.argmax(axis=1).astype(np.int64)

    train = np.zeros(num_nodes, dtype=bool)
    val = np.zeros(num_nodes, dtype=bool)
    test = np.zeros(num_nodes, dtype=bool)
    train[: y.shape[0]] = True
    val[y.shape[0] : y.shape[0] + VAL_SIZE] = True
    test[test_ids] = True
    src, dst = _symmetric_edges(objs["graph"], num_nodes, paths["graph"])
    return ParsedPlanetoid(
        features=features,
        labels=labels,
        # An unlabeled node carries no ground truth, so it cannot train or score.
        train_mask=train & labeled,
        val_mask=val & labeled,
        test_mask=test & labeled,
        src=src,
        dst=dst,
        num_classes=num_classes,
        missing_test_ids=tuple(
            int(i) for i in np.setdiff1d(np.arange(n_known, num_nodes), test_ids)
        ),
        unlabeled_nodes=int((~labeled).sum()),
    )


def _bad(path: Path, problem: str) -> NoReturn:
    raise DataError(
        f"{path.name} {problem}, so it is not a valid Planetoid file; delete it from "
        "the cache (and the mirror) so that a verified copy is fetched"
    )


def _fresh_csr(matrix: Any) -> Any:
    """Rebuild a CSR matrix from its arrays, dropping internals pickled by old scipy."""
    import scipy.sparse as sp

    if sp.isspmatrix_csr(matrix):
        fresh = sp.csr_matrix(
            (np.asarray(matrix.data), np.asarray(matrix.indices), np.asarray(matrix.indptr)),
            shape=tuple(int(d) for d in matrix.shape),
        )
        # scipy checks only the arrays' lengths; an index out of range would make its
        # C++ products read and write out of bounds (a crash, found by fuzzing).
        fresh.check_format(full_check=True)
        return fresh
    return sp.csr_matrix(matrix)


def _read_index(path: Path) -> np.ndarray:
    try:
        lines = path.read_text(encoding="ascii").split()
        return np.array([int(tok) for tok in lines], dtype=np.int64)
    except (OSError, ValueError, OverflowError):
        _bad(path, "is not a list of node ids, one a line")


def _row_normalize(features: Any) -> Any:
    import scipy.sparse as sp

    sums = np.asarray(features.sum(axis=1)).ravel()
    # Empty rows (Citeseer's gap ids) stay zero instead of dividing by zero.
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums != 0)
    normalized = (sp.diags(inv) @ features).tocsr()
    normalized.eliminate_zeros()
    return normalized


def _symmetric_edges(
    graph: Mapping[Any, Any], num_nodes: int, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Return both directions of every edge, deduplicated, sorted, without self-loops."""
    try:
        pairs = np.array(
            [(int(u), int(v)) for u, nbrs in graph.items() for v in nbrs], dtype=np.int64
        ).reshape(-1, 2)
    except (TypeError, ValueError, OverflowError):
        _bad(path, "holds adjacency entries that are not node ids")
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= num_nodes):
        _bad(path, f"names node ids outside 0..{num_nodes - 1}")
    both = np.concatenate([pairs, pairs[:, ::-1]])
    both = both[both[:, 0] != both[:, 1]]
    keys = np.unique(both[:, 0] * num_nodes + both[:, 1])
    return keys // num_nodes, keys % num_nodes


def _to_graph_data(parsed: ParsedPlanetoid, subset: str, *, self_loops: bool) -> GraphData:
    """Build fresh tensors and a DGL graph, so callers cannot alter the cached copy."""
    import dgl

    coo = parsed.features.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    features = torch.sparse_coo_tensor(
        indices,
        torch.from_numpy(coo.data.astype(np.float32)),
        size=parsed.features.shape,
        dtype=torch.float32,
        check_invariants=True,  # cheap here, and torch warns unless told either way
    ).coalesce()
    num_nodes = parsed.labels.shape[0]
    graph = dgl.graph(
        (torch.from_numpy(parsed.src.copy()), torch.from_numpy(parsed.dst.copy())),
        num_nodes=num_nodes,
    )
    if self_loops:
        graph = dgl.add_self_loop(graph)
    return GraphData(
        graph=graph,
        features=features,
        labels=torch.from_numpy(parsed.labels.copy()),
        train_mask=torch.from_numpy(parsed.train_mask.copy()),
        val_mask=torch.from_numpy(parsed.val_mask.copy()),
        test_mask=torch.from_numpy(parsed.test_mask.copy()),
        num_classes=parsed.num_classes,
        name=subset,
        extra={
            "missing_test_ids": list(parsed.missing_test_ids),
            "unlabeled_nodes": parsed.unlabeled_nodes,
        },
    )
