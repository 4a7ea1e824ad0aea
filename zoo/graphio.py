"""Saving and loading weighted graphs: DGL's binary format and NSL's TSV edge list.

``.bin`` files are written with ``dgl.save_graphs`` (structure, node count and the
float32 ``edata['weight']``). ``.tsv`` files are the weighted edge lists NSL's
``build_graph`` writes and ``read_tsv_graph`` reads: one ``src<TAB>dst<TAB>weight``
line per edge, node ids as integers; a missing weight means 1 and duplicate edges
keep the largest weight, as in NSL. A TSV file does not record the node count: it
is ``num_nodes`` when given, else the largest id plus one.

Both writers go through a temporary file in the target folder and ``os.replace``, so
an interrupted or failed save never leaves a half-written graph behind.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import ConfigError, DataError

FORMATS = (".bin", ".tsv")


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
        try:
            graphs, _ = dgl.load_graphs(str(path))
        except Exception as e:  # DGL raises its own DGLError or plain RuntimeErrors
            raise DataError(f"graph file '{path}' is not a readable DGL graph file ({e}); "
                            "rebuild it with `zoo graph build`") from None
        if len(graphs) != 1:
            raise DataError(f"graph file '{path}' holds {len(graphs)} graphs; expected one")
        graph = graphs[0]
        if num_nodes is not None and graph.num_nodes() != num_nodes:
            raise DataError(f"graph file '{path}' has {graph.num_nodes()} nodes but the "
                            f"dataset has {num_nodes}; build the graph for this dataset")
        src, dst, weight = _edges(graph)
        if len(src) == 0:
            raise DataError(f"graph file '{path}' has no edges; rebuild it")
        _check_weights(weight.numpy(), path)
        result = dgl.graph((src, dst), num_nodes=graph.num_nodes())
        result.edata["weight"] = weight
        return result
    src, dst, weight, lines = _read_tsv(path)
    if num_nodes is not None and len(src) and max(src.max(), dst.max()) >= num_nodes:
        bad = int(np.flatnonzero(np.maximum(src, dst) >= num_nodes)[0])
        raise DataError(f"{path}, line {lines[bad]}: node id "
                        f"{max(src[bad], dst[bad])} is not below the dataset's {num_nodes} "
                        "nodes; build the graph for this dataset")
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


def _read_tsv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edges of a TSV file and the 1-based line each came from; blank lines skipped."""
    src: list[int] = []
    dst: list[int] = []
    weight: list[float] = []
    lines: list[int] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
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
                                f"weight a number, got {text!r}") from None
            if s < 0 or d < 0:
                raise DataError(f"{path}, line {number}: node ids must be >= 0, got {text!r}")
            if not math.isfinite(w) or w < 0:
                raise DataError(f"{path}, line {number}: edge weight {fields[2]!r} must be "
                                "finite and non-negative")
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
