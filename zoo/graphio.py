"""Saving and loading weighted graphs: DGL's binary format and NSL's TSV edge list.

``.bin`` files are written with ``dgl.save_graphs`` (structure, node count and the
float32 ``edata['weight']``). ``.tsv`` files are the weighted edge lists NSL's
``build_graph`` writes and ``read_tsv_graph`` reads: one ``src<TAB>dst<TAB>weight``
line per edge, node ids as integers; a missing weight means 1 and duplicate edges
keep the largest weight, as in NSL. A TSV file does not record the node count: it
is ``num_nodes`` when given, else the largest id plus one.

Both writers go through a temporary file in the target folder and ``os.replace``, so
an interrupted or failed save never leaves a half-written graph behind. Reading a
``.bin`` file happens in a forked child process: DGL's C++ reader can abort the whole
process on a damaged file (``std::bad_alloc`` from a corrupt length), and that must end
the child, not the zoo.
"""

from __future__ import annotations

import faulthandler
import math
import io
import os
import re
import select
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import ConfigError, DataError
from zoo.safe_yaml import excerpt

FORMATS = (".bin", ".tsv")
INT64_MAX = 2**63 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)
READ_TIMEOUT_S = 600.0  # reading a .bin file in the child; DGL reads GBs in less


def check_format(path: Path) -> str:
    """The graph file format of ``path`` (its suffix), or a ConfigError naming the choices."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"graph file '{path}' must end in .bin (DGL binary) or .tsv "
                          "(weighted edge list)")
    return suffix


def _edges(graph: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    src, dst = graph.edges()
    if "weight" in graph.edata:
        weight = graph.edata["weight"].detach().cpu().reshape(-1).to(torch.float32)
    else:
        weight = torch.ones(graph.num_edges())
    return src.cpu(), dst.cpu(), weight


def save_graph(graph: Any, path: str | Path) -> Path:
    """Write ``graph`` (a DGL graph, weights in ``edata['weight']``) to ``path``:
    ``.bin`` in DGL's binary format, ``.tsv`` as a weighted edge list. Atomic."""
    import dgl

    path = Path(path)
    fmt = check_format(path)
    if not path.parent.is_dir():
        raise ConfigError(f"cannot save the graph to '{path}': folder '{path.parent}' "
                          "does not exist; create it first")
    src, dst, weight = _edges(graph)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        if fmt == ".bin":
            os.close(fd)
            plain = dgl.graph((src, dst), num_nodes=graph.num_nodes())
            plain.edata["weight"] = weight
            dgl.save_graphs(str(tmp), [plain])
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                # '%.9g' round-trips every float32 exactly (NSL's '%f' keeps 6 decimals).
                f.writelines(f"{s}\t{d}\t{w:.9g}\n" for s, d, w in
                             zip(src.tolist(), dst.tolist(), weight.tolist()))
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a saved graph is an ordinary file
        os.replace(tmp, path)  # the complete file appears at once, or not at all
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_graph(path: str | Path, num_nodes: int | None = None) -> Any:
    """Read a graph saved by :func:`save_graph` (or an NSL TSV graph with integer ids).

    ``num_nodes`` is the node count the graph must have (a ``.bin`` file must match
    it exactly; a ``.tsv`` file's ids must be below it). Bad lines, ids or weights
    raise :class:`DataError` naming the file and line.
    """
    import dgl

    path = Path(path)
    fmt = check_format(path)
    if not path.is_file():
        raise DataError(f"graph file '{path}' not found; build one with "
                        "`zoo graph build CONFIG --out FILE`")
    if fmt == ".bin":
        count, nodes, src, dst, weight = _read_bin_isolated(path)
        if count != 1:
            raise DataError(f"graph file '{path}' holds {count} graphs; expected one")
        if num_nodes is not None and nodes != num_nodes:
            raise DataError(f"graph file '{path}' has {nodes} nodes but the "
                            f"dataset has {num_nodes}; build the graph for this dataset")
        if len(src) == 0:
            raise DataError(f"graph file '{path}' has no edges; rebuild it")
        if min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= nodes:
            raise DataError(f"graph file '{path}' is damaged: its edges name nodes outside "
                            f"0..{nodes - 1}; rebuild it with `zoo graph build`")
        if len(weight) != len(src):
            raise DataError(f"graph file '{path}' is damaged: it has {len(src)} edges but "
                            f"{len(weight)} weights; rebuild it with `zoo graph build`")
        _check_weights(weight, path)
        result = dgl.graph((torch.from_numpy(src), torch.from_numpy(dst)), num_nodes=nodes)
        result.edata["weight"] = torch.from_numpy(weight)
        return result
    src, dst, weight, lines = _read_tsv(path, num_nodes)
    n = num_nodes if num_nodes is not None else (int(max(src.max(), dst.max())) + 1
                                                 if len(src) else 0)
    # Duplicate edges keep their largest weight, as NSL's read_tsv_graph does.
    key = src * max(n, 1) + dst
    order = np.lexsort((weight, key))
    last = np.r_[key[order][1:] != key[order][:-1], True] if len(key) else np.zeros(0, bool)
    keep = np.sort(order[last])
    graph = dgl.graph((torch.from_numpy(src[keep]), torch.from_numpy(dst[keep])), num_nodes=n)
    graph.edata["weight"] = torch.from_numpy(weight[keep])
    return graph


def _read_bin(path: Path) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Graph count, and the first graph's node count, edges and float32 weights."""
    import dgl

    try:
        graphs, _ = dgl.load_graphs(str(path))
    except Exception as e:  # DGL's own DGLError (with a C++ stack) or plain RuntimeErrors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = re.sub(r"^\[[\d:]+\] \S+: ", "", first)  # DGL's "[time] file.cc:128: "
        raise DataError(f"graph file '{path}' is not a readable DGL graph file "
                        f"({first[:120]}); rebuild it with `zoo graph build`") from None
    if len(graphs) != 1:
        return len(graphs), 0, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    src, dst, weight = _edges(graphs[0])
    return (1, graphs[0].num_nodes(), src.numpy().astype(np.int64),
            dst.numpy().astype(np.int64), weight.numpy())


def _read_bin_isolated(path: Path) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_read_bin` in a forked child (see the module docstring); its result or
    its DataError comes back through a pipe as NumPy arrays (no pickle)."""
    if not hasattr(os, "fork"):
        return _read_bin(path)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: read, answer, and leave without running any cleanup
        try:
            os.close(read_end)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # DGL's abort message
            faulthandler.disable()  # and Python's report of it (pytest enables one)
            answer = io.BytesIO()
            try:
                count, nodes, src, dst, weight = _read_bin(path)
                np.savez(answer, count=np.int64(count), nodes=np.int64(nodes), src=src,
                         dst=dst, weight=weight)
            except DataError as e:
                np.savez(answer, error=np.frombuffer(str(e).encode("utf-8"), np.uint8))
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(answer.getvalue())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks, complete = [], False
    deadline = time.monotonic() + READ_TIMEOUT_S
    try:
        while not complete and time.monotonic() < deadline:
            if select.select([read_end], [], [], 1.0)[0]:
                chunks.append(os.read(read_end, 1 << 20))
                complete = not chunks[-1]  # the child closed its end: done, or crashed
    finally:
        os.close(read_end)
        os.kill(pid, signal.SIGKILL)  # finished, crashed, stuck or interrupted: gone
        os.waitpid(pid, 0)
    if not complete:
        raise DataError(f"graph file '{path}': DGL's reader took over {READ_TIMEOUT_S:.0f} s "
                        "on it; rebuild it with `zoo graph build`")
    try:  # plain arrays, never a pickle: the child read a stranger's file
        with np.load(io.BytesIO(b"".join(chunks)), allow_pickle=False) as answer:
            if "error" in answer:
                message: str | None = answer["error"].tobytes().decode("utf-8", "replace")
                value = None
            else:
                message = None
                value = (int(answer["count"]), int(answer["nodes"]), answer["src"],
                         answer["dst"], answer["weight"])
    except Exception:  # nothing, or part of an answer: the reader crashed
        raise DataError(f"graph file '{path}' is not a readable DGL graph file (DGL's reader "
                        "crashed on it); rebuild it with `zoo graph build`") from None
    if message is not None:
        raise DataError(message)
    return value


def _read_tsv(path: Path, num_nodes: int | None = None,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edges of a TSV file and the 1-based line each came from; blank lines skipped.
    Node ids must be below ``num_nodes`` when given (else fit in int64)."""
    src: list[int] = []
    dst: list[int] = []
    weight: list[float] = []
    lines: list[int] = []
    limit = INT64_MAX if num_nodes is None else num_nodes - 1
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}, line {number}: not UTF-8 text; a graph file is "
                                "'src<TAB>dst<TAB>weight' lines") from None
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            fields = text.split("\t")
            if len(fields) not in (2, 3):
                raise DataError(f"{path}, line {number}: expected 'src<TAB>dst<TAB>weight', "
                                f"got {len(fields)} tab-separated field(s)")
            try:
                s, d = int(fields[0]), int(fields[1])
                w = float(fields[2]) if len(fields) == 3 else 1.0
            except ValueError:
                raise DataError(f"{path}, line {number}: node ids must be integers and the "
                                f"weight a number, got {excerpt(text)!r}") from None
            if s < 0 or d < 0:
                raise DataError(f"{path}, line {number}: node ids must be >= 0, got "
                                f"{excerpt(text)!r}")
            if max(s, d) > limit:
                what = (f"is not below the dataset's {num_nodes} nodes; build the graph for "
                        "this dataset" if num_nodes is not None else "is too large")
                raise DataError(f"{path}, line {number}: node id {excerpt(max(s, d), 24)} "
                                f"{what}")
            if not math.isfinite(w) or not 0 <= w <= FLOAT32_MAX:  # weights are float32
                raise DataError(f"{path}, line {number}: edge weight {excerpt(fields[2])!r} "
                                "must be finite and non-negative")
            src.append(s)
            dst.append(d)
            weight.append(w)
            lines.append(number)
    if not src:
        raise DataError(f"graph file '{path}' has no edges; rebuild it")
    return (np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64),
            np.asarray(weight, dtype=np.float32), np.asarray(lines, dtype=np.int64))


def _check_weights(weight: np.ndarray, path: Path) -> None:
    bad = ~np.isfinite(weight) | (weight < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"graph file '{path}': {int(bad.sum())} edge weight(s) are negative "
                        f"or not finite (edge {i} has {weight[i]!r}); rebuild the graph")
