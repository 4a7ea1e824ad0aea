"""Graph builder ``dataset``: the dataset's own edges, post-processed and weighted."""

from __future__ import annotations

import dgl
import numpy as np

import zoo
from zoo.contracts import GraphData
from zoo_plugins.graph_builders.common import Combine, finalize_graph, graph_edges, \
    with_common_args


@with_common_args
def dataset_graph(data: GraphData, *, use_weights: bool = True, max_neighbors: int | None = None,
                  undirected: bool = False, combine: Combine = "max",
                  self_loops: bool | None = None) -> dgl.DGLGraph:
    """The dataset's own edges (optionally symmetrized, capped, with or without self-loops).

    Weights are the graph's ``edata['weight']`` when it has them (and ``use_weights``),
    otherwise 1.

    Args:
        use_weights: keep the dataset's edge weights; false sets every weight to 1.
    """
    src, dst, weight = graph_edges(data.graph)
    if not use_weights:
        weight = np.ones_like(weight)
    return finalize_graph(src, dst, weight, data.num_nodes,
                          source=f"graph builder 'dataset' ({data.name or 'dataset'})",
                          max_neighbors=max_neighbors, undirected=undirected, combine=combine,
                          self_loops=self_loops,
                          empty_hint="this dataset has no edges; use the knn or cooccurrence "
                                     "builder to make some")


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("graph_builder", "dataset", dataset_graph)
