"""The one training engine every trainer plugs into.

A trainer component (``supervised``, ``gam``, a mini-batch trainer...) decides *what*
one epoch does and how to evaluate; :meth:`Engine.fit` owns the rest: the epoch loop,
timing, early stopping on validation accuracy with a patience, keeping and restoring
the best-validation weights, metrics records and progress.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zoo.data import GraphData, ModelOutput, RegularizerInput

Metrics = dict[str, float]


@dataclass
class FitResult:
    """How one :meth:`Engine.fit` went: the metrics at the best epoch and the timings."""

    best_epoch: int
    best: Metrics
    epochs_run: int
    epoch_ms: list[float] = field(default_factory=list)
    history: list[Metrics] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, torch and DGL so a seed reproduces its run."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    try:
        import dgl

        dgl.seed(seed)
    except Exception:  # DGL's seed is a nicety; torch's is what matters for training
        pass


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the block with ``threads`` torch CPU threads (None: leave the setting), and
    restore the previous number afterwards. On a shared machine one thread is often
    several times faster: OpenMP threads wait at every operation for a descheduled peer."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose arg-max equals the label (0.0 for no rows)."""
    if labels.numel() == 0:
        return 0.0
    return float((logits.argmax(-1) == labels).float().mean())


def better(candidate: Metrics, best: Metrics | None, monitor: str, tie_break: str | None) -> bool:
    """Is ``candidate`` better than ``best``: higher ``monitor``, ties broken by a lower
    ``tie_break`` (validation loss), so the chosen epoch does not depend on luck."""
    if best is None:
        return True
    a, b = candidate.get(monitor, -math.inf), best.get(monitor, -math.inf)
    if a != b:
        return a > b
    if tie_break and tie_break in candidate and tie_break in best:
        return candidate[tie_break] < best[tie_break]
    return False


class Engine:
    """Runs training loops and reports every epoch to ``log`` and ``progress``.

    Args:
        log: called with one record (a dict) per epoch; the run writes them to
            ``metrics.jsonl``.
        progress: optional callback ``(phase, epoch, epochs, metrics)`` for a live display.
        context: fields added to every record (for example ``seed``).
    """

    def __init__(self, log: Callable[[dict[str, Any]], None] | None = None,
                 progress: Callable[[str, int, int, Metrics], None] | None = None,
                 context: dict[str, Any] | None = None) -> None:
        self._log = log
        self._progress = progress
        self.context = dict(context or {})
        self.epoch_ms: list[float] = []  # every training epoch of this engine, all phases

    def log(self, record: dict[str, Any]) -> None:
        """Write a record (with this engine's context) to the run's metrics."""
        if self._log is not None:
            self._log({**self.context, **record})

    def fit(self, model: torch.nn.Module, *, train_step: Callable[[int], Metrics],
            evaluate: Callable[[], Metrics], epochs: int, patience: int | None = None,
            monitor: str = "val_accuracy", tie_break: str | None = "val_loss",
            phase: str = "train", record: dict[str, Any] | None = None) -> FitResult:
        """Train ``model`` for up to ``epochs`` epochs and restore its best weights.

        ``train_step(epoch)`` runs one epoch and returns its losses; ``evaluate()``
        returns metrics including ``monitor``. Training stops early when ``monitor``
        has not improved for ``patience`` epochs (``None`` or 0: never). The returned
        ``best`` are the metrics of the best epoch, whose weights ``model`` holds after.
        """
        best: Metrics | None = None
        best_state: dict[str, torch.Tensor] | None = None
        best_epoch, since_best = -1, 0
        result = FitResult(best_epoch=-1, best={}, epochs_run=0)
        for epoch in range(epochs):
            start = time.perf_counter()
            losses = train_step(epoch)
            ms = (time.perf_counter() - start) * 1000.0
            metrics = {**losses, **evaluate()}
            result.epoch_ms.append(ms)
            self.epoch_ms.append(ms)
            result.history.append(metrics)
            result.epochs_run = epoch + 1
            self.log({"phase": phase, **(record or {}), "epoch": epoch, **metrics,
                      "epoch_ms": round(ms, 3)})
            if better(metrics, best, monitor, tie_break):
                best, best_epoch, since_best = metrics, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
            if self._progress is not None:
                self._progress(phase, epoch + 1, epochs, {**metrics, "best_" + monitor:
                                                          best.get(monitor, 0.0)})
            if patience and since_best >= patience:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        result.best_epoch, result.best = best_epoch, dict(best or {})
        return result


class Classifier(torch.nn.Module):
    """An optional encoder followed by an optional node model, giving logits and the
    embedding they came from. A component may return a tensor (its output) or a
    :class:`ModelOutput` (output plus its last hidden layer)."""

    def __init__(self, encoder: torch.nn.Module | None = None,
                 node_model: torch.nn.Module | None = None) -> None:
        super().__init__()
        if encoder is None and node_model is None:
            raise ValueError("a classifier needs an encoder, a node model, or both")
        self.encoder = encoder
        self.node_model = node_model

    def forward(self, graph: Any, features: torch.Tensor) -> ModelOutput:
        """Logits (and embedding) for every node of ``graph`` from its ``features``."""
        x, embedding = features, None
        if self.encoder is not None:
            out = self.encoder(x)
            x, embedding = (out.logits, out.embedding) if isinstance(out, ModelOutput) else (
                out, None)
        if self.node_model is not None:
            hidden = x
            out = self.node_model(graph, x)
            x, embedding = (out.logits, out.embedding) if isinstance(out, ModelOutput) else (
                out, hidden)
        if embedding is None:
            embedding = x
        return ModelOutput(logits=x, embedding=embedding)


@dataclass
class TrainContext:
    """What a trainer receives for one seed: the data, the graph, a way to build fresh
    models and regularizers from the config, and the engine to train with."""

    data: GraphData
    graph: Any
    seed: int
    config: dict[str, Any]
    engine: Engine
    build_model: Callable[[], Classifier]
    build_regularizers: Callable[[], list[torch.nn.Module]]
    build: Callable[..., Any]  # registry.build(kind, section, *inputs) for nested parts


def full_graph_step(model: Classifier, optimizer: torch.optim.Optimizer, ctx: TrainContext,
                    regularizers: list[torch.nn.Module], train_idx: torch.Tensor,
                    labels: torch.Tensor, labeled: torch.Tensor, step: int) -> Metrics:
    """One full-graph step: cross-entropy on ``train_idx`` plus each regularizer."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    out = model(ctx.graph, ctx.data.features)
    loss = F.cross_entropy(out.logits[train_idx], labels[train_idx])
    metrics = {"loss": loss.item()}
    total = loss
    if regularizers:
        # In full-graph mode every node's output is at hand: `model(ids)` just indexes it.
        def outputs_of(ids: torch.Tensor, out: ModelOutput = out) -> ModelOutput:
            return ModelOutput(out.logits[ids], out.embedding[ids])

        inp = RegularizerInput(graph=ctx.graph, logits=out.logits, embedding=out.embedding,
                               labels=labels, labeled=labeled,
                               node_ids=torch.arange(labels.shape[0]), model=outputs_of,
                               step=step)
        for i, reg in enumerate(regularizers):
            value = reg(inp)
            metrics[f"reg_{i}"] = float(value.detach())
            total = total + value
    total.backward()
    optimizer.step()
    return metrics


@torch.no_grad()
def evaluate_full_graph(model: Classifier, ctx: TrainContext,
                        labels: torch.Tensor | None = None) -> Metrics:
    """Train/validation/test accuracy and validation loss over the full graph."""
    model.eval()
    data = ctx.data
    labels = data.labels if labels is None else labels
    logits = model(ctx.graph, data.features).logits
    val = data.val_mask
    return {
        "train_accuracy": accuracy(logits[data.train_mask], labels[data.train_mask]),
        "val_accuracy": accuracy(logits[val], data.labels[val]),
        "val_loss": float(F.cross_entropy(logits[val], data.labels[val])) if val.any() else 0.0,
        "test_accuracy": accuracy(logits[data.test_mask], data.labels[data.test_mask]),
    }
