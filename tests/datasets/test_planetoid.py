"""Tests of the Planetoid dataset plugin, its fetch/cache module and safe unpickler."""

from __future__ import annotations

import collections
import functools
import hashlib
import os
import pickle
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from zoo_plugins.datasets import fetch as fetch_mod
from zoo_plugins.datasets import planetoid as planetoid_mod
from zoo_plugins.datasets.planetoid import planetoid
from zoo_plugins.datasets.safe_pickle import safe_load

from zoo.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]
SHARED_MIRROR = REPO.parent / "shared" / "datasets" / "planetoid"
needs_cora = pytest.mark.skipif(
    not (SHARED_MIRROR / "ind.cora.x").is_file(), reason="Cora mirror folder not present"
)


@pytest.fixture(autouse=True)
def data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the cache at a fresh folder and the mirror at the shared Cora files."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZOO_DATA_DIR", str(cache))
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(SHARED_MIRROR))
    # A proxy from the environment would swallow requests to the local test server.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return cache


def _cache_files(cache: Path) -> list[str]:
    folder = cache / "planetoid"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _mirror_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "mirror"
    shutil.copytree(SHARED_MIRROR, copy)
    for path in copy.iterdir():
        path.chmod(0o644)  # the shared files are read-only; the tests damage copies
    return copy


# --- Cora -----------------------------------------------------------------------------


@needs_cora
def test_cora_has_the_standard_counts_and_split() -> None:
    data = planetoid(subset="cora")
    assert data.describe() == (
        "cora: 2708 nodes, 10556 edges, 1433 features, 7 classes, split 140/500/1000"
    )
    assert data.features.is_sparse and data.features.is_coalesced()
    assert data.features.dtype == torch.float32 and data.labels.dtype == torch.int64
    row_sums = torch.sparse.sum(data.features, dim=1).to_dense()
    assert torch.all(((row_sums - 1).abs() < 1e-5) | (row_sums == 0))
    masks = torch.stack([data.train_mask, data.val_mask, data.test_mask]).int()
    assert masks.sum(0).max() == 1  # disjoint
    assert torch.equal(data.train_mask.nonzero().ravel(), torch.arange(140))
    assert torch.equal(data.val_mask.nonzero().ravel(), torch.arange(140, 640))
    assert torch.bincount(data.labels[data.train_mask]).tolist() == [20] * 7
    src, dst = data.graph.edges()
    assert not torch.any(src == dst)
    assert bool(data.graph.has_edges_between(dst, src).all())  # symmetric
    assert data.extra == {"missing_test_ids": [], "unlabeled_nodes": 0}


@needs_cora
def test_self_loops_option_adds_one_per_node() -> None:
    data = planetoid(subset="Cora", self_loops=True)
    assert data.graph.num_edges() == 10556 + 2708


@needs_cora
def test_parsed_data_is_cached_but_callers_get_independent_copies() -> None:
    first = planetoid()
    hits = planetoid_mod._load_cached.cache_info().hits
    first.labels[:] = -1
    second = planetoid()
    assert planetoid_mod._load_cached.cache_info().hits == hits + 1
    assert int(second.labels.min()) == 0


def test_unknown_subset_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError, match="cora, citeseer, pubmed"):
        planetoid(subset="reddit")


def test_every_raw_file_has_a_pinned_hash() -> None:
    names = {f"ind.{s}.{p}" for s in planetoid_mod.SUBSETS for p in planetoid_mod.PARTS}
    assert set(planetoid_mod.PINNED_SHA256) == names
    if (SHARED_MIRROR / "SHA256SUMS").is_file():
        sums = fetch_mod.parse_sums((SHARED_MIRROR / "SHA256SUMS").read_text())
        assert sums and all(planetoid_mod.PINNED_SHA256[n] == h for n, h in sums.items())


def test_plugin_registers_the_dataset() -> None:
    calls = []

    class Registry:
        def add(self, *args: object) -> None:
            calls.append(args)

    planetoid_mod.zoo_register(Registry())
    assert calls == [("dataset", "planetoid", planetoid)]


# --- fetch: verification, corruption, atomicity ----------------------------------------


@needs_cora
@pytest.mark.parametrize("damage", ["corrupt", "truncate"])
def test_bad_mirror_file_is_refused_and_nothing_is_cached(
    damage: str, tmp_path: Path, data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = _mirror_copy(tmp_path)
    victim = mirror / "ind.cora.x"
    raw = bytearray(victim.read_bytes())
    if damage == "corrupt":
        raw[len(raw) // 2] ^= 0xFF
    else:
        del raw[len(raw) // 3 :]
    victim.write_bytes(bytes(raw))
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(mirror))
    with pytest.raises(DataError, match=r"checksum mismatch for ind\.cora\.x .*ZOO_DATA_MIRROR"):
        planetoid()
    assert "ind.cora.x" not in _cache_files(data_env)
    assert not [n for n in _cache_files(data_env) if n.endswith(".part")]


@needs_cora
def test_corrupted_cached_file_is_fetched_again(data_env: Path) -> None:
    name = "ind.cora.graph"
    args = {"group": "planetoid", "base_url": "https://invalid.example"}
    path = fetch_mod.fetch(name, planetoid_mod.PINNED_SHA256[name], **args)
    path.write_bytes(b"damaged")
    again = fetch_mod.fetch(name, planetoid_mod.PINNED_SHA256[name], **args)
    assert again == path
    assert fetch_mod.sha256_of(path) == planetoid_mod.PINNED_SHA256[name]
    assert _cache_files(data_env) == [name]


def test_missing_mirror_file_and_bad_mirror_setting(
    tmp_path: Path, data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = {"group": "planetoid", "base_url": "https://invalid.example"}
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(tmp_path))
    with pytest.raises(DataError, match="cannot read ind.x.y from the mirror"):
        fetch_mod.fetch("ind.x.y", "0" * 64, **args)
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="neither an http"):
        fetch_mod.fetch("ind.x.y", "0" * 64, **args)
    assert _cache_files(data_env) == []


def test_unpinned_file_is_checked_against_the_mirrors_sums(
    tmp_path: Path, data_env: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mirror = tmp_path / "sums_mirror"
    mirror.mkdir()
    (mirror / "a.bin").write_bytes(b"alpha")
    (mirror / "b.bin").write_bytes(b"beta")
    digest = hashlib.sha256(b"alpha").hexdigest()
    (mirror / "SHA256SUMS").write_text(f"{digest}  a.bin\n{'0' * 64}  b.bin\n")
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(mirror))
    args = {"group": "g", "base_url": "https://invalid.example"}
    with caplog.at_level("WARNING"):
        assert fetch_mod.fetch("a.bin", None, **args).read_bytes() == b"alpha"
    assert "no pinned checksum" in caplog.text
    with pytest.raises(DataError, match="checksum mismatch for b.bin"):
        fetch_mod.fetch("b.bin", None, **args)
    with pytest.raises(DataError, match="not listed in the SHA256SUMS"):
        fetch_mod.fetch("c.bin", None, **args)
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(tmp_path))  # a folder without SHA256SUMS
    with pytest.raises(DataError, match="no pinned checksum .* no readable SHA256SUMS"):
        fetch_mod.fetch("a.bin", None, **args)
    assert sorted(p.name for p in (data_env / "g").iterdir()) == ["a.bin"]


# --- fetch over HTTP ---------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_mirror() -> Iterator[str]:
    """Serve the shared mirror folder on 127.0.0.1 for the duration of a test."""
    handler = functools.partial(_QuietHandler, directory=str(SHARED_MIRROR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@needs_cora
def test_cora_downloads_over_http(
    http_mirror: str, data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZOO_DATA_MIRROR", http_mirror)
    monkeypatch.setattr(planetoid_mod, "DOWNLOAD_TIMEOUT_S", 10.0)
    data = planetoid()
    assert data.num_nodes == 2708 and data.graph.num_edges() == 10556
    assert len(_cache_files(data_env)) == 8


@needs_cora
def test_http_404_is_a_data_error(
    http_mirror: str, data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZOO_DATA_MIRROR", http_mirror)
    with pytest.raises(DataError, match=r"could not download http://.*/ind\.no\.file: HTTP 404"):
        fetch_mod.fetch("ind.no.file", "0" * 64, group="planetoid", base_url="x", timeout=5)
    assert _cache_files(data_env) == []


def test_silent_server_times_out(data_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel completes the TCP handshake for a listening socket, so the client
    # connects and then waits for a reply that never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        monkeypatch.setenv("ZOO_DATA_MIRROR", f"http://127.0.0.1:{silent.getsockname()[1]}")
        start = time.monotonic()
        with pytest.raises(DataError, match="could not download .*timed out"):
            fetch_mod.fetch("f", "0" * 64, group="planetoid", base_url="x", timeout=0.5)
        assert time.monotonic() - start < 5
    assert _cache_files(data_env) == []


# --- safe unpickling ---------------------------------------------------------------------


def test_safe_load_refuses_code_and_does_not_run_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.system, (f"touch {marker}",)

    payload = tmp_path / "evil.pkl"
    payload.write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(DataError, match=r"refusing to load evil\.pkl: it asks for .*system"):
        safe_load(payload, what="evil.pkl")
    assert not marker.exists()


def test_safe_load_reports_garbage_as_corrupt() -> None:
    with pytest.raises(DataError, match="cannot decode junk .*corrupt"):
        safe_load(b"\x80\x02not a pickle", what="junk")


def test_safe_load_accepts_the_planetoid_object_kinds() -> None:
    adjacency = collections.defaultdict(list, {0: [1, 2]})
    objs = [sp.csr_matrix(np.eye(3, dtype=np.float32)), np.ones((2, 2), np.int32), adjacency]
    matrix, array, graph = safe_load(pickle.dumps(objs, protocol=4))
    assert (matrix.toarray() == np.eye(3)).all() and array.sum() == 4 and graph[0] == [1, 2]


# --- Citeseer-style test-index gaps on synthetic files ---------------------------------


def _write_pickle(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=4))


def _synthetic_citeseer(folder: Path) -> dict[str, str]:
    """Write tiny ind.citeseer.* files; return their SHA-256 by file name.

    Nodes 0-1 train, 2-4 validation (VAL_SIZE patched to 3; node 3 has no label),
    5 extra, test ids 9, 6, 11, 7 in file order, so 8 and 10 are gaps.
    """
    folder.mkdir()
    f, c = 5, 3
    allx = sp.csr_matrix(np.arange(1, 6 * f + 1, dtype=np.float32).reshape(6, f))
    ally = np.eye(c, dtype=np.int32)[[0, 1, 2, 0, 1, 2]]
    ally[3] = 0
    tx = sp.csr_matrix(np.eye(f, dtype=np.float32)[:4] * 7)  # row i: only column i
    ty = np.eye(c, dtype=np.int32)[[1, 2, 0, 1]]
    graph = collections.defaultdict(list, {0: [1, 1, 0], 1: [0], 6: [9], 9: [11], 5: [7]})
    objs = {"x": allx[:2], "y": ally[:2], "tx": tx, "ty": ty, "allx": allx, "ally": ally}
    for part, obj in {**objs, "graph": graph}.items():
        _write_pickle(folder / f"ind.citeseer.{part}", obj)
    (folder / "ind.citeseer.test.index").write_text("9\n6\n11\n7\n")
    return {p.name: fetch_mod.sha256_of(p) for p in folder.iterdir()}


def test_citeseer_gaps_get_zero_rows_and_no_mask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "citeseer_mirror"
    for name, digest in _synthetic_citeseer(mirror).items():
        monkeypatch.setitem(planetoid_mod.PINNED_SHA256, name, digest)
    monkeypatch.setattr(planetoid_mod, "VAL_SIZE", 3)
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(mirror))
    data = planetoid(subset="citeseer")

    assert data.num_nodes == 12 and data.num_features == 5 and data.num_classes == 3
    dense = data.features.to_dense()
    for gap in (8, 10):
        assert not dense[gap].any() and data.labels[gap] == 0
    for row, node in enumerate([9, 6, 11, 7]):  # tx/ty rows follow test.index order
        assert torch.equal(dense[node], torch.eye(5)[row])
    assert data.labels[[9, 6, 11, 7]].tolist() == [1, 2, 0, 1]
    assert data.train_mask.nonzero().ravel().tolist() == [0, 1]
    assert data.val_mask.nonzero().ravel().tolist() == [2, 4]  # 3 has no label
    assert data.test_mask.nonzero().ravel().tolist() == [6, 7, 9, 11]
    assert torch.allclose(dense[:6].sum(1), torch.ones(6))
    assert data.extra == {"missing_test_ids": [8, 10], "unlabeled_nodes": 3}
    src, dst = data.graph.edges()
    pairs = sorted(zip(src.tolist(), dst.tolist(), strict=True))
    assert pairs == [(0, 1), (1, 0), (5, 7), (6, 9), (7, 5), (9, 6), (9, 11), (11, 9)]


def test_damaged_pickle_with_a_matching_pin_is_still_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "citeseer_mirror"
    _synthetic_citeseer(mirror)
    _write_pickle(mirror / "ind.citeseer.graph", [1, 2, 3])  # a list, not adjacency
    for path in mirror.iterdir():
        monkeypatch.setitem(planetoid_mod.PINNED_SHA256, path.name, fetch_mod.sha256_of(path))
    monkeypatch.setattr(planetoid_mod, "VAL_SIZE", 3)
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(mirror))
    with pytest.raises(DataError, match=r"ind\.citeseer\.graph is not a dict"):
        planetoid(subset="citeseer")
