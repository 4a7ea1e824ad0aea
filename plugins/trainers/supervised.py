"""Trainer ``supervised``: Adam with weight decay and the configured regularizers, on the
full graph or on mini-batches of seed nodes packed with their neighbours (NSL's
``pack_nbrs`` mode of graph regularization)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

import zoo
from zoo.data import RegularizerInput
from zoo.engine import (
    Classifier,
    Metrics,
    TrainContext,
    evaluate_full_graph,
    full_graph_step,
    seed_everything,
    torch_threads,
)
from zoo.errors import ConfigError
from zoo_plugins.trainers.neighbors import FeatureRows, NeighborTable


class Supervised:
    """Supervised training (Adam, weight decay) plus the regularizers, full-graph or mini-batch.

    The loss is cross-entropy on the training nodes plus the sum of the regularizers'
    terms; the reported accuracies are those of the best-validation epoch.

    With ``batch_size`` set, an epoch walks over the ``batch_seeds`` nodes in shuffled
    batches; each batch is packed with every seed's top ``max_neighbors`` neighbours
    (NSL's ``pack_nbrs``), the encoder runs on the packed nodes' features, the
    cross-entropy covers the labeled seeds and the regularizers see the packed graph
    (seed -> neighbour edges). Seeding with 'all' nodes visits every edge of the
    regularized graph once per epoch, as full-graph training does, so both modes agree;
    'labeled' seeds only the training nodes (NSL's mode, which leaves out the edges
    between unlabeled nodes). The cross-entropy is scaled to the expected number of
    labeled seeds per batch so that its mean over an epoch is the full-graph loss.
    Mini-batch mode needs an encoder-only model (a node model needs the whole graph).

    Args:
        lr: Adam learning rate.
        weight_decay: L2 penalty on all parameters.
        epochs: maximum number of epochs.
        patience: stop after this many epochs without a better validation accuracy
            (null: train all epochs).
        batch_size: seed nodes per mini-batch; null trains on the full graph.
        max_neighbors: neighbours packed with each seed in mini-batch mode (its top-k
            by edge weight, ties to the smaller node id); null packs all of them.
        batch_seeds: which nodes seed the mini-batches: 'all' (agrees with full-graph
            training) or 'labeled' (the training nodes only, as NSL).
        baseline: also train the same model without the regularizers from the same
            seed and report baseline_test_accuracy, baseline_val_accuracy and gain
            (test_accuracy - baseline_test_accuracy).
        threads: torch CPU threads while this trainer runs, restored afterwards (null:
            leave torch's setting). On a shared machine 1 is often many times faster.
    """

    def __init__(self, *, lr: float = 0.01, weight_decay: float = 5e-4, epochs: int = 200,
                 patience: int | None = None, batch_size: int | None = None,
                 max_neighbors: int | None = None,
                 batch_seeds: Literal["all", "labeled"] = "all",
                 baseline: bool = False, threads: int | None = None) -> None:
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"trainer.batch_size must be >= 1 or null (full graph), got "
                              f"{batch_size}")
        if max_neighbors is not None and max_neighbors < 1:
            raise ConfigError(f"trainer.max_neighbors must be >= 1 or null (all "
                              f"neighbours), got {max_neighbors}")
        self.lr, self.weight_decay = lr, weight_decay
        self.epochs, self.patience = epochs, patience
        self.batch_size, self.max_neighbors = batch_size, max_neighbors
        self.batch_seeds = batch_seeds
        self.baseline = baseline
        if threads is not None and threads < 1:
            raise ConfigError(f"trainer.threads must be >= 1 or null, got {threads}")
        self.threads = threads

    def fit(self, ctx: TrainContext) -> Metrics:
        """Train a fresh model on ``ctx`` and return its best-validation metrics."""
        with torch_threads(self.threads):
            return self._fit(ctx)

    def _fit(self, ctx: TrainContext) -> Metrics:
        if self.batch_size is not None and "model" in ctx.config:
            raise ConfigError("trainer.batch_size (mini-batch mode) needs an encoder-only "
                              "model, but the config has a 'model:' node model that needs "
                              "the whole graph; remove 'model:' or set trainer.batch_size: "
                              "null")
        if not self.baseline:
            return self.train(ctx, ctx.build_model(), ctx.build_regularizers(), "train")
        # The baseline goes first so that the model left behind is the regularized one;
        # re-seeding gives both the same initial weights and the regularized run the
        # very numbers it has without a baseline.
        base = self.train(ctx, ctx.build_model(), [], "baseline")
        seed_everything(ctx.seed)
        metrics = self.train(ctx, ctx.build_model(), ctx.build_regularizers(), "train")
        metrics["baseline_test_accuracy"] = base["test_accuracy"]
        metrics["baseline_val_accuracy"] = base["val_accuracy"]
        metrics["gain"] = metrics["test_accuracy"] - base["test_accuracy"]
        return metrics

    def train(self, ctx: TrainContext, model: Classifier,
              regularizers: list[torch.nn.Module], phase: str) -> Metrics:
        """Train ``model`` with ``regularizers``; the metrics of its best-validation epoch."""
        params = list(model.parameters()) + [p for r in regularizers for p in r.parameters()]
        optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        data = ctx.data
        if self.batch_size is None:
            train_idx = data.train_mask.nonzero().squeeze(1)

            def train_step(epoch: int) -> Metrics:
                return full_graph_step(model, optimizer, ctx, regularizers, train_idx,
                                       data.labels, data.train_mask, epoch)
        else:
            train_step = MiniBatchEpoch(self, ctx, model, optimizer, regularizers)
        result = ctx.engine.fit(model, train_step=train_step,
                                evaluate=lambda: evaluate_full_graph(model, ctx),
                                epochs=self.epochs, patience=self.patience, phase=phase)
        return {"test_accuracy": result.best["test_accuracy"],
                "val_accuracy": result.best["val_accuracy"],
                "best_epoch": float(result.best_epoch)}


class MiniBatchEpoch:
    """One mini-batch epoch over shuffled seed nodes packed with their neighbours."""

    def __init__(self, trainer: Supervised, ctx: TrainContext, model: Classifier,
                 optimizer: torch.optim.Optimizer,
                 regularizers: list[torch.nn.Module]) -> None:
        data = ctx.data
        self.model, self.optimizer, self.regularizers = model, optimizer, regularizers
        self.batch_size = int(trainer.batch_size or 1)
        self.labels, self.labeled = data.labels, data.train_mask
        self.seeds = (torch.arange(data.num_nodes) if trainer.batch_seeds == "all"
                      else data.train_mask.nonzero().squeeze(1))
        self.table = NeighborTable(ctx.graph, trainer.max_neighbors)
        self.rows = FeatureRows(data.features)
        # Labeled seeds expected per seed node: scaling the per-batch cross-entropy sum
        # by it makes every batch an unbiased estimate of the full-graph mean loss.
        self.labeled_rate = max(float(self.labeled[self.seeds].float().mean()), 1e-12)
        self.step = 0

    def outputs_for(self, node_ids: torch.Tensor):
        """Model outputs for arbitrary dataset nodes (what ``RegularizerInput.model`` is)."""
        return self.model(None, self.rows.take(node_ids))

    def __call__(self, epoch: int) -> Metrics:
        self.model.train()
        totals: dict[str, float] = {}
        order = self.seeds[torch.randperm(self.seeds.numel())]
        batches = order.split(self.batch_size)
        for seeds in batches:
            for key, value in self.batch_step(seeds).items():
                totals[key] = totals.get(key, 0.0) + value
        return {key: value / len(batches) for key, value in totals.items()}

    def batch_step(self, seeds: torch.Tensor) -> Metrics:
        """One optimizer step on the batch of ``seeds``."""
        packed, node_ids = self.table.pack(seeds)
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(packed, self.rows.take(node_ids))
        labeled = self.labeled[seeds]
        loss = F.cross_entropy(out.logits[: seeds.numel()][labeled], self.labels[seeds][labeled],
                               reduction="sum") / (self.labeled_rate * seeds.numel())
        metrics = {"loss": loss.item()}
        total = loss
        if self.regularizers:
            inp = RegularizerInput(graph=packed, logits=out.logits, embedding=out.embedding,
                                   labels=self.labels[node_ids],
                                   labeled=self.labeled[node_ids], node_ids=node_ids,
                                   model=self.outputs_for, step=self.step)
            for i, reg in enumerate(self.regularizers):
                value = reg(inp)
                metrics[f"reg_{i}"] = float(value.detach())
                total = total + value
        total.backward()
        self.optimizer.step()
        self.step += 1
        return metrics


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("trainer", "supervised", Supervised)
