"""Graph builder ``file``: a graph saved by ``zoo graph build`` (or an NSL TSV graph)."""

from __future__ import annotations

import dgl

import zoo
from zoo.contracts import GraphData
from zoo.graphio import load_graph
from zoo_plugins.graph_builders.common import Combine, finalize_graph, graph_edges, \
    with_common_args


@with_common_args
def file_graph(data: GraphData, *, path: str, max_neighbors: int | None = None,
               undirected: bool = False, combine: Combine = "max",
               self_loops: bool | None = None) -> dgl.DGLGraph:
    """A weighted graph loaded from a .bin (DGL) or .tsv (src, dst, weight) file.

    The file's nodes are the dataset's nodes: a .bin graph must have exactly as many,
    and a .tsv graph's ids must be below that count. By default the graph is used as
    saved (no symmetrizing, self-loops kept).

    Args:
        path: the graph file, as written by ``zoo graph build CONFIG --out FILE``.
    """
    graph = load_graph(path, num_nodes=data.num_nodes)
    src, dst, weight = graph_edges(graph)
    return finalize_graph(src, dst, weight, data.num_nodes, source=f"graph file '{path}'",
                          max_neighbors=max_neighbors, undirected=undirected, combine=combine,
                          self_loops=self_loops,
                          empty_hint="it holds only self-loops; rebuild it")


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("graph_builder", "file", file_graph)
