"""What every graph builder shares: the edge convention, the post-processing options
and the checks.

**Edge convention.** An edge ``u -> v`` says "``v`` is a neighbour of sample ``u``",
as a row ``src dst weight`` of an NSL graph TSV lists ``dst`` as a neighbour of
``src`` (``read_tsv_graph``, ``pack_nbrs``). The ``distance`` and ``message_passing``
regularizers and mini-batch neighbour packing (``pack_neighbors``) read graphs this
way, so a node's neighbours are its *out*-edges and every ``max_neighbors`` in the zoo
caps out-edges per source node. (This is the reverse of DGL's message-passing view,
where a node aggregates over its in-edges; for an undirected graph the two agree.)

A builder produces a weighted edge list ``(src, dst, weight)`` over the dataset's
nodes and hands it to :func:`finalize_graph`, which applies the options every builder
takes, in this order:

1. duplicate edges merge, keeping the largest weight (as NSL's ``read_tsv_graph``);
   self-loops are set aside (step 4 decides their fate);
2. ``undirected``: every edge ``u -> v`` gets its reverse; when both directions exist
   their weights merge by ``combine`` (``max``: the larger one, as NSL's
   ``add_undirected_edges``; ``sum``: both added, so an already symmetric graph gets
   doubled weights);
3. ``max_neighbors``: each node keeps its ``max_neighbors`` heaviest *outgoing* edges
   (its top-k neighbours by weight, exactly the edges the regularizers' and the
   trainer's own ``max_neighbors`` would keep); equal weights are broken by the
   smaller neighbour id, so the result never depends on edge order. This cap comes
   after symmetrizing so that it is a hard bound on every node's neighbour count,
   which can make an undirected graph directed again (a hub keeps k of its many
   neighbours, while each of them still lists the hub);
4. ``self_loops``: ``true`` gives every node one self-loop of weight 1, ``false``
   removes them all, ``null`` keeps the ones the source had. Self-loops are not
   counted by ``max_neighbors``.

Then the graph is checked: it must have at least one edge between distinct nodes
(nodes without neighbours are fine) and every weight must be finite and >= 0.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Literal, TypeVar

import dgl
import numpy as np
import torch

from zoo.errors import ConfigError, DataError
from zoo_plugins.neighbors import top_neighbor_edges

Combine = Literal["max", "sum"]
Factory = TypeVar("Factory", bound=Callable)

# Appended to each builder's docstring by :func:`with_common_args`, so ``zoo show``
# documents the shared options without every builder repeating them.
COMMON_ARGS_DOC = """\
    max_neighbors: keep only each node's heaviest out-edges (edge u->v: v is a
        neighbour of u), at most this many (ties go to the smaller neighbour id; null:
        no cap). Applied after ``undirected``, so it is a hard bound.
    undirected: add the reverse of every edge, merging the weights of the two
        directions by ``combine``.
    combine: how the weights of u->v and v->u merge when symmetrizing: 'max' (as
        NSL) or 'sum' (an already symmetric graph then gets doubled weights).
    self_loops: true gives every node a self-loop of weight 1, false removes all
        self-loops, null keeps the source's own."""


def with_common_args(factory: Factory) -> Factory:
    """Append the shared options' docs to ``factory``'s ``Args:`` section."""
    factory.__doc__ = inspect.cleandoc(factory.__doc__ or "") + "\n" + COMMON_ARGS_DOC
    return factory


def validate_weights(weight: np.ndarray, source: str) -> None:
    """Raise :class:`DataError` if any edge weight is NaN, infinite or negative."""
    bad = ~np.isfinite(weight) | (weight < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: edge weights must be finite and non-negative, but "
                        f"{int(bad.sum())} are not (the first is {weight[i]!r} on edge {i}); "
                        "fix the weights or drop those edges")


def merge_duplicates(src: np.ndarray, dst: np.ndarray, weight: np.ndarray, num_nodes: int,
                     combine: Combine = "max") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One edge per ``(src, dst)`` pair, weights merged by ``combine``; sorted by
    ``(src, dst)``."""
    key = src.astype(np.int64) * num_nodes + dst.astype(np.int64)
    if combine == "sum":
        uniq, inverse = np.unique(key, return_inverse=True)
        merged = np.bincount(inverse, weights=weight.astype(np.float64), minlength=len(uniq))
    else:
        # Sorted by key then weight, the last edge of each key group is its heaviest.
        order = np.lexsort((weight, key))
        key, weight = key[order], weight[order]
        last = np.r_[key[1:] != key[:-1], True] if len(key) else np.zeros(0, bool)
        uniq, merged = key[last], weight[last]
    return uniq // num_nodes, uniq % num_nodes, merged.astype(np.float32)


def finalize_graph(src: np.ndarray | torch.Tensor, dst: np.ndarray | torch.Tensor,
                   weight: np.ndarray | torch.Tensor, num_nodes: int, *, source: str,
                   max_neighbors: int | None = None, undirected: bool = False,
                   combine: Combine = "max", self_loops: bool | None = None,
                   empty_hint: str = "check the builder's options") -> dgl.DGLGraph:
    """The weighted DGL graph (float32 ``edata['weight']``) from an edge list, after
    the shared options (see the module docstring). ``source`` names the builder or
    file in error messages; ``empty_hint`` says how to get edges if there are none."""
    src, dst, weight = (np.asarray(a.cpu() if isinstance(a, torch.Tensor) else a)
                        for a in (src, dst, weight))
    src, dst = src.astype(np.int64).ravel(), dst.astype(np.int64).ravel()
    weight = weight.astype(np.float32).ravel()
    if max_neighbors is not None and max_neighbors < 1:
        raise ConfigError(f"{source}: max_neighbors must be >= 1 or null, got {max_neighbors}")
    if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= num_nodes):
        raise DataError(f"{source}: edge endpoints must be node ids in [0, {num_nodes}); "
                        "the graph does not match the dataset")
    validate_weights(weight, source)

    loop = src == dst
    loop_nodes, loop_weight = src[loop], weight[loop]
    src, dst, weight = merge_duplicates(src[~loop], dst[~loop], weight[~loop], num_nodes)
    if undirected:
        src, dst, weight = merge_duplicates(np.r_[src, dst], np.r_[dst, src],
                                            np.r_[weight, weight], num_nodes, combine)
    if max_neighbors is not None:
        # The same ranking as the regularizers and pack_neighbors, so a cap set here
        # and one set there keep the same edges.
        keep = top_neighbor_edges(torch.from_numpy(src), torch.from_numpy(dst),
                                  torch.from_numpy(weight), num_nodes, max_neighbors)
        keep = np.sort(keep.numpy())
        src, dst, weight = src[keep], dst[keep], weight[keep]
    if len(src) == 0:
        raise ConfigError(f"{source}: the graph has no edges between distinct nodes; "
                          f"{empty_hint}")

    if self_loops is None:
        ln, lw = loop_nodes, loop_weight
        if len(ln):
            _, ln, lw = merge_duplicates(ln, ln, lw, num_nodes)
    elif self_loops:
        ln, lw = np.arange(num_nodes), np.ones(num_nodes, dtype=np.float32)
    else:
        ln, lw = np.empty(0, np.int64), np.empty(0, np.float32)
    if len(ln):
        src, dst, weight = merge_duplicates(np.r_[src, ln], np.r_[dst, ln], np.r_[weight, lw],
                                            num_nodes)
    graph = dgl.graph((torch.from_numpy(src), torch.from_numpy(dst)), num_nodes=num_nodes)
    graph.edata["weight"] = torch.from_numpy(weight.astype(np.float32))
    return graph


def graph_edges(graph: dgl.DGLGraph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(src, dst, weight)`` of a DGL graph as NumPy arrays (weight 1 if it has none)."""
    src, dst = (t.numpy() for t in graph.edges())
    if "weight" in graph.edata:
        weight = graph.edata["weight"].detach().cpu().reshape(graph.num_edges(), -1)
        if weight.shape[1] != 1:
            raise DataError(f"the graph's edata['weight'] has shape {tuple(weight.shape)}; "
                            "expected one scalar weight per edge")
        weight = weight[:, 0].numpy().astype(np.float32)
    else:
        weight = np.ones(len(src), dtype=np.float32)
    return src, dst, weight
