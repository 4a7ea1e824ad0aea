"""Property-based hostile files (hypothesis): random bytes, and bytes that look almost
right, as a session log, a graph file (.tsv, .bin), an MNIST IDX file, an image and a
Planetoid file.

Each is answered with a result or with one clean ``zoo: error:`` line (a
:class:`zoo.errors.ZooError`: exit 1 for a bad data file, 2 for a bad config), never a
traceback, a C++ stack or a crash, and nothing is left half-written: no output file
from a failed ``zoo graph build``, no ``.part``/``.tmp`` file anywhere. Then the cases
of the issue, one test each: a node id of 10^30, non-UTF-8 sessions, deeply nested
JSON, a ``.bin`` that is not a graph (and one that makes DGL's reader abort), a cache
entry that is a folder, a mirror file that is a link to ``/dev/zero``, a FIFO or too
large, an endless download, a gzip bomb.
"""

from __future__ import annotations

import collections
import gzip
import http.server
import json
import os
import pickle
import shutil
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zoo_plugins.datasets import fetch as fetch_mod
from zoo_plugins.datasets import planetoid as planetoid_mod
from zoo_plugins.datasets.fetch import mirror_file
from zoo_plugins.datasets.images import image_folder, read_idx

from zoo.errors import DataError, ZooError

needs_cora = pytest.mark.skipif(mirror_file("ind.cora.x", "planetoid") is None,
                                reason="needs the local Cora mirror")


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


def _dgl_bin() -> bytes:
    """A small valid DGL graph file, the base of the "almost right" .bin files."""
    import tempfile

    import dgl
    import torch

    graph = dgl.graph((torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])), num_nodes=2708)
    graph.edata["weight"] = torch.ones(3)
    with tempfile.TemporaryDirectory() as folder:
        dgl.save_graphs(f"{folder}/g.bin", [graph])
        return Path(f"{folder}/g.bin").read_bytes()


VALID_BIN = _dgl_bin()


def _mutated(data: st.DataObject, base: bytes) -> bytes:
    """``base`` with a few bytes overwritten, cut short or extended."""
    raw = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    return bytes(raw[:cut]) + data.draw(st.binary(max_size=16))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile-files")


@pytest.fixture(scope="module")
def out_folder(work: Path) -> Path:
    (work / "out").mkdir(exist_ok=True)
    return work / "out"


def _graph_build(zoo_main, graph: str, out: Path) -> tuple[int, str]:
    """``zoo graph build gcn_cora graph=GRAPH --out OUT`` in this process."""
    code, _, err = zoo_main("graph", "build", "gcn_cora", f"graph={graph}", "--out", str(out))
    return code, err


def _check_build(code: int, err: str, out: Path, refusal, leftovers) -> None:
    """A result, or one error line with no output file; never a temporary file left."""
    if code == 0:
        assert out.is_file()
        out.unlink()
    else:
        refusal(code, err, (1, 2))
        assert not out.exists()
    assert leftovers(out.parent) == []


# -- session logs ---------------------------------------------------------------------
JSON_ITEMS = st.recursive(
    st.one_of(st.integers(-5, 3000), st.sampled_from([10**30, -(10**30), 2**63]),
              st.text(max_size=6), st.floats(), st.booleans(), st.none()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=2), max_leaves=10)
SESSION_LINES = st.one_of(
    st.lists(st.integers(0, 6) | st.integers(0, 6).map(str), max_size=5).map(json.dumps)
    .map(str.encode),
    st.lists(JSON_ITEMS, max_size=4).map(json.dumps).map(str.encode),
    st.sampled_from([b"[" * 5000 + b"]" * 5000, b"[1" + b"0" * 5000 + b"]", b"[1e999]",
                     b"[\xff\xfe]", b'["\\ud800"]', b"[NaN, Infinity]", b"[1, 2", b"{}", b"",
                     "[\"\u00b2\", \"\u0663\"]".encode(), b"\x00\x00", b"[1]\r"]),
    st.binary(max_size=40),
)


@needs_cora
@fuzz(300)
@given(lines=st.lists(SESSION_LINES, min_size=1, max_size=4))
def test_random_session_logs(lines, work, out_folder, zoo_main, refusal, leftovers):
    sessions = work / "sessions.jsonl"
    sessions.write_bytes(b"\n".join(lines))
    code, err = _graph_build(zoo_main, f"{{name: cooccurrence, sessions: '{sessions}'}}",
                             out_folder / "graph.bin")
    _check_build(code, err, out_folder / "graph.bin", refusal, leftovers)


# -- graph files ----------------------------------------------------------------------
TSV_FIELDS = st.one_of(st.integers(-3, 3000).map(str), st.sampled_from(
    ["1" + "0" * 30, "9" * 19, "1" * 5000, "nan", "inf", "-0", "1e400", "0x1", "\u0663", "²",
     "", " ", "1.5"]), st.text(max_size=5))
TSV_LINES = st.one_of(
    st.tuples(st.integers(0, 2710), st.integers(0, 2710), st.floats(-1, 10) | st.floats())
    .map(lambda t: f"{t[0]}\t{t[1]}\t{t[2]}".encode()),
    st.lists(TSV_FIELDS, min_size=1, max_size=4).map("\t".join).map(str.encode),
    st.binary(max_size=30),
)


@needs_cora
@fuzz(300)
@given(lines=st.lists(TSV_LINES, min_size=1, max_size=5))
def test_random_tsv_graph_files(lines, work, out_folder, zoo_main, refusal, leftovers):
    graph = work / "graph.tsv"
    graph.write_bytes(b"\n".join(lines))
    code, err = _graph_build(zoo_main, f"{{name: file, path: '{graph}'}}",
                             out_folder / "copy.tsv")
    _check_build(code, err, out_folder / "copy.tsv", refusal, leftovers)


@needs_cora
@fuzz(200)
@given(data=st.data())
def test_random_bin_graph_files(data, work, out_folder, zoo_main, refusal, leftovers):
    """Random bytes, and a valid DGL file with bytes changed (which can make DGL's C++
    reader abort the process it runs in)."""
    content = (data.draw(st.binary(max_size=300)) if data.draw(st.booleans())
               else _mutated(data, VALID_BIN))
    graph = work / "graph.bin"
    graph.write_bytes(content)
    code, err = _graph_build(zoo_main, f"{{name: file, path: '{graph}'}}",
                             out_folder / "copy.bin")
    _check_build(code, err, out_folder / "copy.bin", refusal, leftovers)


# -- IDX and image files ----------------------------------------------------------------
def _idx(dims: list[int], payload: bytes) -> bytes:
    return struct.pack(">I", 2051) + b"".join(struct.pack(">I", d) for d in dims) + payload


IDX_CONTENT = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=200).map(gzip.compress),
    st.builds(lambda dims, payload: gzip.compress(_idx(dims, payload)),
              st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 4), min_size=3, max_size=3),
              st.binary(max_size=64)),
)


@fuzz(1000)
@given(content=IDX_CONTENT)
def test_random_idx_files(content, work):
    path = work / "images-idx3-ubyte.gz"
    path.write_bytes(content)
    try:
        images = read_idx(path, magic=2051, ndim=3)
    except DataError as e:
        assert "\n" not in str(e) and len(str(e)) < 400
    else:
        assert images.ndim == 3 and images.dtype == np.uint8


PNG_HEAD = b"\x89PNG\r\n\x1a\n"


@fuzz(400)
@given(content=st.one_of(st.binary(max_size=300),
                         st.binary(max_size=300).map(lambda b: PNG_HEAD + b),
                         st.binary(max_size=300).map(lambda b: b"\xff\xd8\xff\xe0" + b)))
def test_random_image_files(content, work):
    folder = work / "images"
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / "cat" / "a.png").write_bytes(content)
    (folder / "dog" / "b.jpg").write_bytes(content[::-1])
    try:
        image_folder(root=str(folder), size=4)
    except ZooError as e:
        assert "\n" not in str(e) and len(str(e)) < 400


# -- Planetoid files --------------------------------------------------------------------
def _write_planetoid(folder: Path) -> None:
    """Tiny ind.tiny.* files: 6 known nodes (2 train, 3 validation), test ids 6 and 7."""
    folder.mkdir(parents=True, exist_ok=True)
    allx = sp.csr_matrix(np.arange(1, 31, dtype=np.float32).reshape(6, 5))
    ally = np.eye(3, dtype=np.int32)[[0, 1, 2, 0, 1, 2]]
    objs = {"x": allx[:2], "y": ally[:2], "tx": sp.csr_matrix(np.eye(5, dtype=np.float32)[:2]),
            "ty": np.eye(3, dtype=np.int32)[[1, 2]], "allx": allx, "ally": ally,
            "graph": collections.defaultdict(list, {0: [1], 6: [7], 5: [2]})}
    for part, obj in objs.items():
        (folder / f"ind.tiny.{part}").write_bytes(pickle.dumps(obj, protocol=4))
    (folder / "ind.tiny.test.index").write_text("6\n7\n")


@pytest.fixture(scope="module")
def tiny_planetoid(work: Path) -> Path:
    _write_planetoid(work / "planetoid")
    return work / "planetoid"


@fuzz(1000)
@given(part=st.sampled_from(planetoid_mod.PARTS), data=st.data())
def test_random_planetoid_files(part, data, tiny_planetoid, monkeypatch):
    """One of the eight files replaced by random or damaged bytes (its checksum made to
    match, as if the pin itself were wrong): parsed, or refused with a DataError."""
    monkeypatch.setattr(planetoid_mod, "VAL_SIZE", 3)
    paths = {p: tiny_planetoid / f"ind.tiny.{p}" for p in planetoid_mod.PARTS}
    victim = paths[part]
    original = victim.read_bytes()
    content = (data.draw(st.binary(max_size=200)) if data.draw(st.booleans())
               else _mutated(data, original))
    victim.write_bytes(content)
    try:
        planetoid_mod.parse_raw(paths)
    except DataError as e:
        assert "\n" not in str(e) and len(str(e)) < 400
    finally:
        victim.write_bytes(original)


# -- the cases of the issue, each its own test ----------------------------------------
@needs_cora
def test_node_id_of_ten_to_the_thirty_in_a_tsv(tmp_path, zoo_main, refusal):
    graph = tmp_path / "graph.tsv"
    graph.write_text("0\t1\t1.0\n1\t" + "1" + "0" * 30 + "\t1.0\n")
    out = tmp_path / "copy.tsv"
    code, err = _graph_build(zoo_main, f"{{name: file, path: '{graph}'}}", out)
    line = refusal(code, err, (1,))
    assert "line 2" in line and "not below the dataset's 2708 nodes" in line
    assert not out.exists()


@needs_cora
def test_non_utf8_sessions(tmp_path, zoo_main, refusal):
    sessions = tmp_path / "sessions.jsonl"
    sessions.write_bytes(b"[1, 2]\n[\"caf\xe9\", 3]\n")
    code, err = _graph_build(zoo_main, f"{{name: cooccurrence, sessions: '{sessions}'}}",
                             tmp_path / "g.bin")
    assert "line 2: not UTF-8 text" in refusal(code, err, (1,))


@needs_cora
def test_deeply_nested_json_sessions(tmp_path, zoo_main, refusal):
    sessions = tmp_path / "sessions.jsonl"
    sessions.write_text("[1, 2]\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    code, err = _graph_build(zoo_main, f"{{name: cooccurrence, sessions: '{sessions}'}}",
                             tmp_path / "g.bin")
    assert "nested too deeply" in refusal(code, err, (1,))


@needs_cora
def test_bin_that_is_not_a_graph_is_one_line(tmp_path, zoo_main, refusal):
    graph = tmp_path / "graph.bin"
    graph.write_bytes(b"this is not a DGL graph file, just text\n" * 20)
    code, err = _graph_build(zoo_main, f"{{name: file, path: '{graph}'}}", tmp_path / "o.bin")
    line = refusal(code, err, (1,))
    assert "is not a readable DGL graph file" in line and "Invalid DGL files" in line


@needs_cora
def test_bin_that_aborts_dgls_reader_is_one_line(tmp_path, zoo_main, refusal):
    """A length field made huge: DGL's reader throws std::bad_alloc and aborts the
    process it runs in, which is the zoo's child, not the zoo."""
    raw = bytearray(VALID_BIN)
    raw[24:32] = b"\xff" * 8  # a vector length right after DGL's header
    graph = tmp_path / "graph.bin"
    graph.write_bytes(bytes(raw))
    code, err = _graph_build(zoo_main, f"{{name: file, path: '{graph}'}}", tmp_path / "o.bin")
    assert "is not a readable DGL graph file" in refusal(code, err, (1,))


# -- dataset files: the cache and the mirror --------------------------------------------
@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty local mirror and data cache; a tiny dataset file pinned by its hash."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(folder))
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "cache"))
    return folder


def _fetch(name: str = "data.bin", sha256: str = "0" * 64):
    return fetch_mod.fetch(name, sha256, group="hostile", base_url="https://invalid.example",
                           timeout=5)


def test_cache_entry_that_is_a_folder(mirror, tmp_path):
    (mirror / "data.bin").write_bytes(b"payload")
    (tmp_path / "cache" / "hostile" / "data.bin").mkdir(parents=True)
    with pytest.raises(DataError, match=r"cache entry .*data\.bin is a folder.*remove it"):
        _fetch(sha256=fetch_mod.sha256_of(mirror / "data.bin"))


def test_mirror_file_linked_to_dev_zero_is_refused_at_once(mirror, tmp_path, leftovers):
    (mirror / "data.bin").symlink_to("/dev/zero")
    start = time.monotonic()
    with pytest.raises(DataError, match="is not a regular file"):
        _fetch()
    assert time.monotonic() - start < 2
    assert leftovers(tmp_path) == [] and not (tmp_path / "cache" / "hostile" / "data.bin"
                                              ).exists()


def test_mirror_file_that_is_a_fifo_does_not_hang(mirror, tmp_path, leftovers):
    os.mkfifo(mirror / "data.bin")
    start = time.monotonic()
    with pytest.raises(DataError, match="is not a regular file"):
        _fetch()
    assert time.monotonic() - start < 2
    assert leftovers(tmp_path) == []


def test_mirror_file_over_the_size_limit_is_refused(mirror, tmp_path, monkeypatch,
                                                    leftovers):
    (mirror / "data.bin").write_bytes(b"\0" * 4096)
    monkeypatch.setattr(fetch_mod, "MAX_BYTES", 1024)
    with pytest.raises(DataError, match="larger than 1,024 bytes"):
        _fetch(sha256=fetch_mod.sha256_of(mirror / "data.bin"))
    assert leftovers(tmp_path) == []


class _EndlessHandler(http.server.BaseHTTPRequestHandler):
    """Sends zeros without a Content-Length, until the client hangs up."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"\0" * 65536)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


def test_endless_download_stops_at_the_size_limit(tmp_path, monkeypatch, leftovers):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EndlessHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZOO_DATA_MIRROR", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(fetch_mod, "MAX_BYTES", 1 << 20)
    try:
        with pytest.raises(DataError, match="larger than 1,048,576 bytes"):
            _fetch()
    finally:
        server.shutdown()
        server.server_close()
    assert leftovers(tmp_path) == []


def test_gzip_bomb_idx_is_refused_without_unpacking_it(tmp_path):
    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        f.write(_idx([10, 28, 28], b""))
        for _ in range(64):
            f.write(b"\0" * (1 << 20))  # 64 MiB of zeros in a file of ~64 KiB
    start = time.monotonic()
    with pytest.raises(DataError, match="holds more values where its header 10x28x28"):
        read_idx(bomb, magic=2051, ndim=3)
    assert time.monotonic() - start < 1
    huge = tmp_path / "huge-idx3-ubyte.gz"
    huge.write_bytes(gzip.compress(_idx([60000, 60000, 60000], b"")))
    with pytest.raises(DataError, match="promises more than"):
        read_idx(huge, magic=2051, ndim=3)


@needs_cora
def test_random_planetoid_file_through_the_mirror(tmp_path, monkeypatch, leftovers):
    """A pinned Planetoid file replaced by random bytes: refused by its checksum, and
    with the pin made to match, by the parser; nothing of it is cached half-written."""
    source = mirror_file("ind.cora.x", "planetoid").parent
    mirror = tmp_path / "mirror"
    shutil.copytree(source, mirror)
    (mirror / "ind.cora.graph").chmod(0o644)
    (mirror / "ind.cora.graph").write_bytes(np.random.default_rng(0).bytes(4096))
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "cache"))
    planetoid_mod.clear_cache()
    with pytest.raises(DataError, match=r"checksum mismatch for ind\.cora\.graph"):
        planetoid_mod.planetoid(subset="cora")
    monkeypatch.setitem(planetoid_mod.PINNED_SHA256, "ind.cora.graph",
                        fetch_mod.sha256_of(mirror / "ind.cora.graph"))
    with pytest.raises(DataError, match=r"ind\.cora\.graph") as info:
        planetoid_mod.planetoid(subset="cora")
    assert "\n" not in str(info.value) and len(str(info.value)) < 400
    planetoid_mod.clear_cache()
    assert leftovers(tmp_path) == []
