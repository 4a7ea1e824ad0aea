"""Trainer ``supervised``: the task's loss plus the regularizers, on any batch source."""

from __future__ import annotations

from typing import Annotated

import torch

import zoo
from zoo.engine import seed_everything
from zoo.schema import Ge, Kind

MOVED = "batches: {name: packed_neighbors, ...}"


class Supervised:
    """Supervised training (the task's loss) plus the regularizers, on any batch source.

    The loss is the task's (cross-entropy on the labeled nodes, for node classification)
    plus the sum of the regularizers' terms; the reported metrics are the task's at the
    epoch with the best monitored metric (validation accuracy); under ``torchrun`` (or
    ``zoo run --nproc N``) each process trains on its share of every batch, with the
    gradients all-reduced (DDP). ``batches`` says where
    batches come from: the whole graph (``full_graph``), seed nodes packed with their
    neighbours (``packed_neighbors``, NSL's mini-batch graph regularization, for
    encoder-only models), sampled neighbourhoods (``neighbor_sampler``, for node models
    that run on blocks) or plain item batches (``items``).

    Args:
        epochs: maximum number of epochs.
        patience: stop after this many epochs without a better monitored metric (null:
            train all epochs).
        optimizer: the optimizer section (adam, adamw, sgd and their parameters).
        batches: the batch source section.
        baseline: also train the same model without the regularizers from the same
            seed and report baseline_<metric> for the task's reported metrics and its
            monitored one, and gain (the first reported metric's improvement over the
            baseline).
        eval_every: evaluate (and consider keeping the weights) after every this many
            epochs, and after the last; patience still counts epochs.
    """

    # Several processes (torchrun): the engine's DDP step and the sources' rank shares.
    supports_distributed = True

    renamed_params = {
        "lr": "optimizer.lr", "weight_decay": "optimizer.weight_decay",
        "batch_size": f"batches.batch_size ({MOVED})",
        "max_neighbors": f"batches.max_neighbors ({MOVED})",
        "batch_seeds": f"batches.seeds ({MOVED})", "threads": "/threads",
    }

    def __init__(self, *, epochs: Annotated[int, Ge(1)] = 200,
                 patience: Annotated[int, Ge(1)] | None = None,
                 optimizer: Annotated[dict, Kind("optimizer")] = {  # noqa: B006
                     "name": "adam", "lr": 0.01, "weight_decay": 5e-4},
                 batches: Annotated[dict, Kind("batch_source")] = {  # noqa: B006
                     "name": "full_graph"},
                 baseline: bool = False, eval_every: Annotated[int, Ge(1)] = 1) -> None:
        self.epochs, self.patience = epochs, patience
        self.optimizer, self.batches = optimizer, batches
        self.baseline = baseline
        self.eval_every = eval_every

    def fit(self, ctx: zoo.TrainContext) -> dict[str, float]:
        """Train a fresh model on ``ctx``; the task's metrics at its best epoch."""
        if not self.baseline:
            return self.train(ctx, ctx.build_model(), ctx.build_regularizers(), "train")
        # The baseline goes first so that the model left behind is the regularized
        # one; re-seeding gives both the same initial weights and the regularized run
        # the very numbers it has without a baseline.
        base = self.train(ctx, ctx.build_model(), [], "baseline")
        seed_everything(ctx.seed)
        metrics = self.train(ctx, ctx.build_model(), ctx.build_regularizers(), "train")
        report = [k for k in ctx.task.report if k in base]
        # The monitored metric too: the baseline's settings are chosen by it, not by test.
        shown = [*report, *(k for k in (ctx.task.monitor,) if k in base and k not in report)]
        metrics.update({f"baseline_{k}": base[k] for k in shown})
        if report:
            sign = 1.0 if ctx.task.mode == "max" else -1.0
            metrics["gain"] = sign * (metrics[report[0]] - base[report[0]])
        return metrics

    def train(self, ctx: zoo.TrainContext, model: torch.nn.Module,
              regularizers: list[torch.nn.Module], phase: str) -> dict[str, float]:
        """Train ``model`` with ``regularizers``; the task's metrics at its best epoch."""
        result = ctx.train(model, optimizer=self.optimizer, batches=self.batches,
                           regularizers=regularizers, epochs=self.epochs,
                           patience=self.patience, phase=phase, eval_every=self.eval_every)
        return {**result.evaluation, "best_epoch": float(result.best_epoch)}


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("trainer", "supervised", Supervised)
