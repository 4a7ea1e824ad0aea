"""Batch source ``neighbor_sampler``: seed nodes with sampled multi-hop neighbourhoods
(GraphSAGE-style mini-batches, DGL's ``NeighborSampler``), for node models that run on
DGL blocks (message-flow graphs).

Each batch of seeds gets one block per layer: layer ``l`` samples ``fanouts[l]``
in-neighbours of every node the next layer needs. The model reads the features of the
first block's source nodes and outputs one row per seed. Blocks carry each node's
in-degree in the whole graph (``srcdata``/``dstdata["in_degree"]``, self-loops
excluded), which lets a model such as ``gcn`` normalise as on the whole graph, and the
edge weights. Regularizers see the edges among the batch's seeds (the induced subgraph).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

import dgl
import torch

import zoo
from zoo.schema import Ge
from zoo_plugins.batch_sources.common import (
    FeatureRows,
    LabeledSet,
    RankShare,
    Seeds,
    loss_rows,
    seed_order,
)


def whole_graph_in_degrees(graph: dgl.DGLGraph) -> torch.Tensor:
    """Each node's in-degree, self-loops excluded, as float32."""
    src, dst = graph.edges()
    keep = src != dst
    return torch.bincount(dst[keep], minlength=graph.num_nodes()).float()


def annotate_blocks(graph: dgl.DGLGraph, blocks: list[dgl.DGLGraph],
                    in_degree: torch.Tensor | None = None) -> list[dgl.DGLGraph]:
    """Give sampled ``blocks`` of ``graph`` what the node-model contract promises: each
    src and dst node's whole-graph in-degree without self-loops (``in_degree``, computed
    if not given) and the whole graph's edge weights (ones if it has none)."""
    in_degree = whole_graph_in_degrees(graph) if in_degree is None else in_degree
    weight = graph.edata.get("weight")
    for block in blocks:
        block.srcdata["in_degree"] = in_degree[block.srcdata[dgl.NID]]
        block.dstdata["in_degree"] = in_degree[block.dstdata[dgl.NID]]
        block.edata["weight"] = (torch.ones(block.num_edges()) if weight is None
                                 else weight[block.edata[dgl.EID]])
    return blocks


class NeighborSampler:
    """Seeds with sampled multi-hop neighbourhoods (DGL NeighborSampler), for block models.

    Args:
        fanouts: in-neighbours sampled per node at each layer, from the input layer to
            the output layer (one per layer of the node model; -1 takes them all).
        batch_size: seed nodes per mini-batch.
        seeds: which nodes seed the batches: 'labeled' (the labeled nodes; the loss is the
            batch mean) or 'all' (every node; the loss covers the labeled seeds, scaled to
            the full-graph mean, and the regularizers see every edge among the seeds).
        replace: sample neighbours with replacement.
        infer: how the model is evaluated on every node: 'whole_graph' (one forward on the
            whole graph) or 'blocks' (batches of full neighbourhoods, for graphs too large
            for one forward).
        infer_batch_size: nodes per batch when ``infer`` is 'blocks'.
    """

    graph_input = "blocks"

    def __init__(self, *, fanouts: list[Annotated[int, Ge(-1)]] = [10, 10],  # noqa: B006
                 batch_size: Annotated[int, Ge(1)] = 256, seeds: Seeds = "labeled",
                 replace: bool = False, infer: Literal["whole_graph", "blocks"] = "whole_graph",
                 infer_batch_size: Annotated[int, Ge(1)] = 4096) -> None:
        if not fanouts or any(f == 0 for f in fanouts):
            raise zoo.ConfigError(f"batch source 'neighbor_sampler': fanouts must be a non-empty "
                                  f"list of numbers >= 1 (or -1 for all), got {fanouts}")
        self.fanouts, self.batch_size, self.seeds = list(fanouts), batch_size, seeds
        self.replace, self.infer_mode, self.infer_batch_size = replace, infer, infer_batch_size
        self.num_blocks = len(self.fanouts)
        self.labeled = LabeledSet()

    def bind(self, data: zoo.GraphData, graph: Any, runtime: zoo.Runtime) -> None:
        """Keep a CPU copy of the graph to sample from and its in-degrees."""
        if graph is None:
            raise zoo.ConfigError("batch source 'neighbor_sampler' needs a graph; this dataset "
                                  "has none (add a graph: section)")
        self.data, self.graph, self.device = data, graph, runtime.device
        # DGL samples on the CPU here (its CUDA sampling needs a CUDA build of DGL).
        self.cpu_graph = graph.to("cpu")
        self.in_degree = whole_graph_in_degrees(self.cpu_graph)
        self.rows = FeatureRows(data.features)
        self.share = RankShare(runtime)
        self.sampler = dgl.dataloading.NeighborSampler(self.fanouts, replace=self.replace)

    def blocks(self, seeds: torch.Tensor, sampler: Any = None,
               ) -> tuple[torch.Tensor, list[dgl.DGLGraph]]:
        """(input node ids, blocks on the device) for ``seeds``."""
        input_nodes, _, blocks = (sampler or self.sampler).sample_blocks(
            self.cpu_graph, seeds.to("cpu"))
        annotate_blocks(self.cpu_graph, blocks, self.in_degree)
        return input_nodes.to(self.device), [b.to(self.device) for b in blocks]

    def epoch(self, labels: torch.Tensor, labeled: torch.Tensor,
              with_reg_graph: bool = False) -> Iterator[zoo.Batch]:
        """Shuffled seeds in batches, each with its sampled blocks."""
        self.labeled.update(labeled, self.seeds)
        order = seed_order(self.seeds, self.labeled, self.data.num_nodes, self.device,
                           self.share)
        for seeds in order.split(self.share.batch_size(self.batch_size)):
            input_nodes, blocks = self.blocks(seeds)
            rows, norm = loss_rows(labeled[seeds], self.seeds, self.labeled)
            reg_graph = (dgl.node_subgraph(self.cpu_graph, seeds.to("cpu")).to(self.device)
                         if with_reg_graph else None)
            yield zoo.Batch(graph=blocks, inputs=self.rows.take(input_nodes), node_ids=seeds,
                            labels=labels[seeds], labeled=labeled[seeds], loss_rows=rows,
                            loss_norm=norm, reg_graph=reg_graph)

    def infer(self, model: Any) -> zoo.ModelOutput:
        """The model's output for every node: on the whole graph, or over batches of full
        neighbourhoods."""
        if self.infer_mode == "whole_graph":
            return model(self.graph, self.data.features)
        full = dgl.dataloading.MultiLayerFullNeighborSampler(self.num_blocks)
        ids = torch.arange(self.data.num_nodes, device=self.device)
        outs = []
        for chunk in ids.split(self.infer_batch_size):
            input_nodes, blocks = self.blocks(chunk, full)
            outs.append(model(blocks, self.rows.take(input_nodes)))
        return zoo.ModelOutput.cat(outs)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("batch_source", "neighbor_sampler", NeighborSampler)
