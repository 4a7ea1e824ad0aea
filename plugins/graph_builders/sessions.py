"""Graph builder ``synthetic_sessions``: search sessions simulated from class labels.

Graph-RISE regularizes an image embedding with a graph of images that co-occur in the
same search session. Image sets such as MNIST and digits have no sessions, so this
builder writes synthetic ones: each session is a few images of one class, and each of
its slots is, with probability ``intruder_rate``, replaced by an image of another class
(real co-occurrence is noisy: a user's session strays off topic). Every image of the
chosen items appears in ``sessions_per_item`` sessions (one per round; a round deals
each class's images, shuffled, into sessions of ``session_size``), so the sessions
connect all of them. The graph is then built exactly as the ``cooccurrence`` builder
builds it from a JSONL session log, and the sessions can be saved as such a log
(``save``): ``zoo graph build CONFIG graph.save=sessions.jsonl --out graph.bin``
writes both, and ``graph: {name: cooccurrence, sessions: sessions.jsonl}`` reads the log
back to the same graph.

The simulation reads the labels of every chosen item, hidden (unlabeled) ones
included: sessions are how hidden labels leak into training in the real system too
(users group images by what they show), which is what the regularizer exploits.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import dgl
import numpy as np

import zoo
from zoo.contracts import GraphData
from zoo.errors import ConfigError
from zoo.schema import Ge, Lt
from zoo_plugins.graph_builders.common import Combine, with_common_args
from zoo_plugins.graph_builders.cooccurrence import Weighting, session_graph

ItemScope = Literal["train", "all"]


def simulate_sessions(labels: np.ndarray, items: np.ndarray, *, session_size: int = 4,
                      sessions_per_item: int = 2, intruder_rate: float = 0.2,
                      seed: int = 0) -> list[np.ndarray]:
    """Sessions (arrays of item indices) over ``items``: mostly one class each, every slot
    an off-class intruder with probability ``intruder_rate``.

    Each round deals every class's items, shuffled, into sessions of ``session_size``
    (a class's last, shorter session keeps its items; a lone item joins the previous
    session), so every item is in at least ``sessions_per_item`` sessions.
    """
    if session_size < 2:
        raise ConfigError(f"graph.session_size must be >= 2, got {session_size}")
    rng = np.random.default_rng(seed)
    items = np.asarray(items, dtype=np.int64)
    item_labels = np.asarray(labels)[items]
    classes = np.unique(item_labels)
    members = {c: items[item_labels == c] for c in classes}
    others = {c: items[item_labels != c] for c in classes}
    sessions: list[np.ndarray] = []
    for _ in range(sessions_per_item):
        for c in classes:
            pool = rng.permutation(members[c])
            cuts = list(range(session_size, len(pool), session_size))
            if cuts and len(pool) - cuts[-1] < 2:
                cuts.pop()  # a lone leftover joins the previous session
            for session in np.split(pool, cuts):
                if len(others[c]) and intruder_rate > 0:
                    swap = rng.random(len(session)) < intruder_rate
                    session = session.copy()
                    session[swap] = rng.choice(others[c], size=int(swap.sum()))
                sessions.append(session)
    order = rng.permutation(len(sessions))
    return [sessions[i] for i in order]


def write_sessions(path: str | Path, sessions: list[np.ndarray]) -> None:
    """Write sessions as a JSONL log (one JSON list of node indices per line), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for session in sessions:
                f.write(json.dumps([int(i) for i in session]) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def scope_items(data: GraphData, items: ItemScope) -> np.ndarray:
    """Indices of the items sessions are simulated over: the whole training split
    (``extra["train_items"]``, labeled or not; else ``train_mask``) or every item."""
    if items == "all":
        return np.arange(data.num_nodes)
    mask = data.extra.get("train_items", data.train_mask)
    return np.flatnonzero(np.asarray(mask.cpu()))


@with_common_args
def synthetic_sessions(data: GraphData, *, session_size: Annotated[int, Ge(2)] = 4,
                       sessions_per_item: Annotated[int, Ge(1)] = 2,
                       intruder_rate: Annotated[float, Ge(0), Lt(1)] = 0.2,
                       items: ItemScope = "train", seed: int = 0, save: str | None = None,
                       weighting: Weighting = "count", min_count: Annotated[int, Ge(1)] = 1,
                       max_neighbors: Annotated[int, Ge(1)] | None = None,
                       undirected: bool = True, combine: Combine = "max",
                       self_loops: bool | None = None) -> dgl.DGLGraph:
    """Co-occurrence graph of synthetic search sessions: mostly same-class images, some intruders.

    Args:
        session_size: images per session.
        sessions_per_item: sessions each image appears in (rounds of dealing).
        intruder_rate: probability that a session slot holds an image of another class.
        items: which images the sessions cover: 'train' (the whole training split,
            labeled or not) or 'all' (validation and test images too).
        seed: seed of the simulation (the graph is a property of the config, not of
            the training seed).
        save: write the sessions to this JSONL file (readable by the ``cooccurrence``
            builder with id_map 'index').
        weighting: 'count' (sessions shared) or 'pmi'.
        min_count: drop pairs that share fewer sessions than this.
    """
    labels = np.asarray(data.labels.cpu())
    if "classes" in data.extra:  # sessions follow what images show, not fine labels
        labels = np.asarray(data.extra["classes"].cpu())
    sessions = simulate_sessions(labels, scope_items(data, items), session_size=session_size,
                                 sessions_per_item=sessions_per_item,
                                 intruder_rate=intruder_rate, seed=seed)
    if save is not None:
        write_sessions(save, sessions)
    nodes = np.concatenate(sessions) if sessions else np.zeros(0, dtype=np.int64)
    session_ids = np.repeat(np.arange(len(sessions)), [len(s) for s in sessions])
    return session_graph(session_ids, nodes, len(sessions), data.num_nodes,
                         source="graph builder 'synthetic_sessions'", weighting=weighting,
                         min_count=min_count, max_neighbors=max_neighbors,
                         undirected=undirected, combine=combine, self_loops=self_loops)


def intruder_share(sessions: list[np.ndarray], labels: np.ndarray) -> float:
    """Fraction of session slots whose class is not the session's majority class."""
    off = total = 0
    for session in sessions:
        classes = labels[session]
        off += len(session) - np.bincount(classes).max()
        total += len(session)
    return off / max(total, 1)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("graph_builder", "synthetic_sessions", synthetic_sessions)
