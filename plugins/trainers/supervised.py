"""Trainer ``supervised``: full-graph training with Adam, weight decay and regularizers."""

from __future__ import annotations

import torch

import zoo
from zoo.engine import Metrics, TrainContext, evaluate_full_graph, full_graph_step


class Supervised:
    """Full-graph supervised training (Adam with weight decay) plus the configured regularizers.

    The loss is cross-entropy on the training nodes plus the sum of the regularizers'
    terms; the reported accuracies are those of the best-validation epoch.

    Args:
        lr: Adam learning rate.
        weight_decay: L2 penalty on all parameters.
        epochs: maximum number of epochs.
        patience: stop after this many epochs without a better validation accuracy
            (null: train all epochs).
    """

    def __init__(self, *, lr: float = 0.01, weight_decay: float = 5e-4, epochs: int = 200,
                 patience: int | None = None) -> None:
        self.lr, self.weight_decay = lr, weight_decay
        self.epochs, self.patience = epochs, patience

    def fit(self, ctx: TrainContext) -> Metrics:
        """Train a fresh model on ``ctx`` and return its best-validation metrics."""
        model = ctx.build_model()
        regularizers = ctx.build_regularizers()
        params = list(model.parameters()) + [p for r in regularizers for p in r.parameters()]
        optimizer = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        data = ctx.data
        train_idx = data.train_mask.nonzero().squeeze(1)
        result = ctx.engine.fit(
            model,
            train_step=lambda epoch: full_graph_step(model, optimizer, ctx, regularizers,
                                                     train_idx, data.labels, data.train_mask,
                                                     epoch),
            evaluate=lambda: evaluate_full_graph(model, ctx),
            epochs=self.epochs, patience=self.patience)
        return {"test_accuracy": result.best["test_accuracy"],
                "val_accuracy": result.best["val_accuracy"],
                "best_epoch": float(result.best_epoch)}


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("trainer", "supervised", Supervised)
