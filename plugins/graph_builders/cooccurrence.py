"""Graph builder ``cooccurrence``: items linked by how often they share a session.

Session logs are a JSONL file, one session per line, each line a JSON list of item
ids (ints or strings), e.g. ``[12, 7, 7, 40]``. An item counts once per session
however often it repeats there. With ``S`` the binary session x item incidence
matrix, ``S^T S`` holds every pair count ``c(i, j)`` (sessions containing both) and,
on its diagonal, the item counts ``c(i)``: one sparse product, no loop over pairs.

Weights: ``count`` is ``c(i, j)``; ``pmi`` is the pointwise mutual information of
the two items over sessions, ``log(c(i, j) * n / (c(i) * c(j)))`` with ``n`` the
number of sessions, i.e. ``log p(i, j) / (p(i) p(j))``. Pairs seen in fewer than
``min_count`` sessions are dropped first; pairs with PMI <= 0 (co-occurring no more
than chance) are dropped because a graph weight must say "related".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import dgl
import numpy as np
import scipy.sparse as sp

import zoo
from zoo.contracts import GraphData
from zoo.errors import ConfigError, DataError
from zoo.safe_yaml import excerpt
from zoo_plugins.graph_builders.common import Combine, finalize_graph, with_common_args

Weighting = Literal["count", "pmi"]


def read_id_map(path: str, num_nodes: int) -> dict[str, int]:
    """Item id -> node index from a JSON object or a two-column TSV file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"id_map file '{path}' not found; give 'index' (item ids are node "
                          "indices) or the path of a .json or .tsv mapping")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"id_map file '{path}' is not UTF-8 text; it must be a .json or "
                        ".tsv mapping of item ids to node indices") from None
    pairs: list[tuple[str, object, str]] = []  # (item id, node index, where)
    if file.suffix.lower() == ".json":
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"id_map file '{path}' is not valid JSON (line {e.lineno}: "
                            f"{e.msg}); it must be an object {{item_id: node_index}}") from None
        except (ValueError, RecursionError) as e:  # a huge number, or nesting too deep
            raise DataError(f"id_map file '{path}' cannot be read ({_json_problem(e)}); it "
                            "must be an object {item_id: node_index}") from None
        if not isinstance(mapping, dict):
            raise DataError(f"id_map file '{path}' must hold a JSON object "
                            "{item_id: node_index}")
        pairs = [(str(k), v, f"key {k!r}") for k, v in mapping.items()]
    elif file.suffix.lower() == ".tsv":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise DataError(f"{path}, line {number}: expected 'item_id<TAB>node_index', "
                                f"got {len(fields)} field(s)")
            index = fields[1].strip()
            pairs.append((fields[0].strip(), _whole_number(index), f"line {number}"))
    else:
        raise ConfigError(f"id_map file '{path}' must end in .json or .tsv")
    id_map: dict[str, int] = {}
    for item, index, where in pairs:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < num_nodes:
            raise DataError(f"{path}, {excerpt(where)}: node index {_quote(index)} is not a "
                            f"whole number in [0, {num_nodes}); fix the mapping")
        if item in id_map:
            raise DataError(f"{path}, {excerpt(where)}: item id {_quote(item)} is mapped "
                            "twice; keep one")
        id_map[item] = index
    return id_map


def read_sessions(path: str, num_nodes: int, id_map: dict[str, int] | None,
                  ) -> tuple[np.ndarray, np.ndarray, int]:
    """The (session, node) incidences of a JSONL session log and the session count.

    Blank lines are skipped (they are not sessions). ``id_map`` None means the item
    ids are node indices.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"sessions file '{path}' not found; give the path of a JSONL file "
                          "with one JSON list of item ids per line")
    sessions: list[int] = []
    nodes: list[int] = []
    count = 0
    with file.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{path}, line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{where}: not UTF-8 text; each line must be a JSON list of "
                                "item ids such as [3, 17, 42]") from None
            if not line.strip():
                continue
            try:
                items = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg}); each line must be a JSON "
                                "list of item ids such as [3, 17, 42]") from None
            except (ValueError, RecursionError) as e:  # a huge number, or nesting too deep
                raise DataError(f"{where}: cannot be read ({_json_problem(e)}); each line "
                                "must be a JSON list of item ids such as [3, 17, 42]") from None
            if not isinstance(items, list):
                raise DataError(f"{where}: expected a JSON list of item ids, got "
                                f"{type(items).__name__}")
            for item in items:
                nodes.append(_node_of(item, where, num_nodes, id_map))
            sessions.extend([count] * len(items))
            count += 1
    return np.asarray(sessions, dtype=np.int64), np.asarray(nodes, dtype=np.int64), count


def _node_of(item: object, where: str, num_nodes: int, id_map: dict[str, int] | None) -> int:
    if isinstance(item, bool) or not isinstance(item, (int, str)):
        raise DataError(f"{where}: item id {_quote(item)} is neither an integer nor a string")
    if id_map is not None:
        node = id_map.get(str(item))
        if node is None:
            raise DataError(f"{where}: item id {_quote(item)} is not in the id_map; add it "
                            "there")
        return node
    if isinstance(item, str):
        item = _whole_number(item)
    if not isinstance(item, int) or not 0 <= item < num_nodes:
        raise DataError(f"{where}: item id {_quote(item)} is not a node index in [0, "
                        f"{num_nodes}) (id_map is 'index'); give an id_map file that maps "
                        "item ids to nodes")
    return item


def _whole_number(text: str) -> int | str:
    """``text`` as an int if it is one (``'42'``), else unchanged."""
    try:
        return int(text) if text.isdecimal() else text
    except ValueError:  # more digits than Python converts
        return text


def _quote(value: object) -> str:
    """A stranger's id for an error message: its repr, cut short."""
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 64 else "a huge number"
    return excerpt(text, 40)


def _json_problem(e: Exception) -> str:
    return "nested too deeply" if isinstance(e, RecursionError) else excerpt(e, 80)


def cooccurrence_counts(sessions: np.ndarray, nodes: np.ndarray, num_sessions: int,
                        num_nodes: int) -> tuple[sp.coo_matrix, np.ndarray]:
    """Pair counts ``c(i, j)`` (i != j, as a sparse matrix) and item counts ``c(i)``."""
    incidence = sp.csr_matrix((np.ones(len(nodes), dtype=np.float64), (sessions, nodes)),
                              shape=(num_sessions, num_nodes))
    incidence.data[:] = 1.0  # an item repeated within a session counts once
    pairs = (incidence.T @ incidence).tocoo()
    item_counts = pairs.diagonal()
    off = pairs.row != pairs.col
    pairs = sp.coo_matrix((pairs.data[off], (pairs.row[off], pairs.col[off])),
                          shape=pairs.shape)
    return pairs, item_counts


@with_common_args
def cooccurrence_graph(data: GraphData, *, sessions: str, id_map: str = "index",
                       weighting: Weighting = "count", min_count: int = 1,
                       max_neighbors: int | None = None, undirected: bool = True,
                       combine: Combine = "max", self_loops: bool | None = None,
                       ) -> dgl.DGLGraph:
    """Item co-occurrence graph from session logs (JSONL, one list of item ids per line).

    Items sharing a session are linked, weighted by the number of sessions they share
    (``count``) or by their pointwise mutual information (``pmi``, non-positive
    dropped). The graph has one node per dataset node.

    Args:
        sessions: path of the JSONL session log.
        id_map: 'index' (item ids are node indices) or the path of a mapping from item
            id to node index: a .json object or a .tsv file of 'item_id<TAB>node_index'.
        weighting: 'count' (sessions shared) or 'pmi' (log p(i,j) / (p(i) p(j)) over
            sessions).
        min_count: drop pairs that share fewer sessions than this.
    """
    n = data.num_nodes
    mapping = None if id_map == "index" else read_id_map(id_map, n)
    session_ids, nodes, num_sessions = read_sessions(sessions, n, mapping)
    return session_graph(session_ids, nodes, num_sessions, n,
                         source=f"graph builder 'cooccurrence' ('{sessions}')",
                         weighting=weighting, min_count=min_count, max_neighbors=max_neighbors,
                         undirected=undirected, combine=combine, self_loops=self_loops)


def session_graph(session_ids: np.ndarray, nodes: np.ndarray, num_sessions: int,
                  num_nodes: int, *, source: str, weighting: Weighting = "count",
                  min_count: int = 1, max_neighbors: int | None = None,
                  undirected: bool = True, combine: Combine = "max",
                  self_loops: bool | None = None) -> dgl.DGLGraph:
    """The co-occurrence graph of (session, node) incidences, weighted by ``count`` or
    ``pmi`` (see the module docstring); ``source`` names the sessions in errors."""
    if min_count < 1:
        raise ConfigError(f"graph.min_count must be >= 1, got {min_count}")
    pairs, item_counts = cooccurrence_counts(session_ids, nodes, num_sessions, num_nodes)
    keep = pairs.data >= min_count
    src, dst, count = pairs.row[keep], pairs.col[keep], pairs.data[keep]
    if weighting == "pmi":
        weight = np.log(count * num_sessions / (item_counts[src] * item_counts[dst]))
        positive = weight > 0
        src, dst, weight = src[positive], dst[positive], weight[positive]
    else:
        weight = count
    return finalize_graph(src, dst, weight, num_nodes, source=source,
                          max_neighbors=max_neighbors, undirected=undirected, combine=combine,
                          self_loops=self_loops,
                          empty_hint="no two items share a session often enough; lower "
                                     "graph.min_count or check the session log")


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("graph_builder", "cooccurrence", cooccurrence_graph)
