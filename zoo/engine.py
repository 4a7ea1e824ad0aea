"""How training runs: the epoch loop, the shared step, and the context a trainer gets.

A trainer component decides *what* to train (which models, on which labels, in which
phases); the engine owns *how*: :meth:`TrainContext.train` pulls batches from a batch
source and runs :func:`training_step` (forward, task loss, regularizers, backward,
optimizer) on each, and :meth:`Engine.fit` runs epochs with timing, early stopping on
the task's monitored metric, the best weights kept and restored, records and progress.
Losses stay on the device as tensors during an epoch: the host reads them once per
epoch, not once per step, and that read is where a NaN or infinite loss stops the run
(:class:`zoo.errors.DivergedError`).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from zoo.checkpoint import SeedCheckpoints, cpu_state, rng_state, set_rng_state
from zoo.contracts import Batch, BatchSource, Metrics, ModelOutput, RegularizerInput, Task
from zoo.contracts import describe_value
from zoo.errors import ContractError, DivergedError
from zoo.model import Classifier
from zoo.registry import component_label, component_name
from zoo.runtime import Runtime
from zoo.schema import ComponentSpec


@dataclass
class FitResult:
    """How one :meth:`Engine.fit` went: the metrics at the best epoch and the timings."""

    best_epoch: int
    best: Metrics
    epochs_run: int
    epoch_ms: list[float] = field(default_factory=list)
    history: list[Metrics] = field(default_factory=list)
    eval_seconds: float = 0.0  # time spent in ``evaluate``, included in ``seconds``
    seconds: float = 0.0
    eval_keys: tuple[str, ...] = ()  # the metrics ``evaluate`` reports

    @property
    def evaluation(self) -> Metrics:
        """The evaluated metrics of the best epoch (without the training losses)."""
        return {k: v for k, v in self.best.items() if k in self.eval_keys}


class Resumable(Protocol):
    """What a training loop saves besides the model: its optimizer and batch position."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


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


def to_floats(metrics: Mapping[str, Any]) -> Metrics:
    """Metrics as Python floats, reading every tensor value from the device at once."""
    keys = [k for k, v in metrics.items() if isinstance(v, torch.Tensor)]
    out = {k: float(v) for k, v in metrics.items() if k not in keys}
    if keys:
        values = torch.stack([metrics[k].detach().reshape(()).float() for k in keys]).tolist()
        out.update(zip(keys, values))
    return {k: out[k] for k in metrics}


def better(candidate: Metrics, best: Metrics | None, monitor: str, mode: str = "max",
           tie_break: str | None = None) -> bool:
    """Is ``candidate`` better than ``best``: a better ``monitor`` by ``mode``, ties
    broken by a lower ``tie_break`` (a loss), so the choice does not depend on luck."""
    if best is None:
        return True
    worst = -math.inf if mode == "max" else math.inf
    a, b = candidate.get(monitor, worst), best.get(monitor, worst)
    if a != b:
        return a > b if mode == "max" else a < b
    if tie_break and tie_break in candidate and tie_break in best:
        return candidate[tie_break] < best[tie_break]
    return False


class BestWeights:
    """The best weights seen so far, copied in place into buffers allocated once on the
    model's device (no deep copy per improvement)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.state: dict[str, torch.Tensor] | None = None

    def save(self) -> None:
        with torch.no_grad():
            current = self.model.state_dict()
            if self.state is None or self.state.keys() != current.keys():
                self.state = {k: v.detach().clone() for k, v in current.items()}
            else:
                for k, v in current.items():
                    self.state[k].copy_(v)

    def restore(self) -> None:
        if self.state is not None:
            self.model.load_state_dict(self.state)


class Engine:
    """Runs epoch loops and reports every epoch to ``log`` and ``progress``.

    Args:
        log: called with one record (a dict) per epoch; the run writes them to
            ``metrics.jsonl``.
        progress: optional callback ``(phase, epoch, epochs, metrics)`` for a live display.
        context: fields added to every record (for example ``seed``).
        tick: called between steps and epochs (the run's thread policy looks at the
            machine's load there).
        reduce: averages an epoch's metrics over the processes training together
            (:meth:`zoo.Runtime.reduce_metrics`), so every rank records the same numbers
            and takes the same early-stopping decision.
        checkpoints: where this seed's training loops are saved and, when the run
            resumes, restored from (:mod:`zoo.checkpoint`).
    """

    def __init__(self, log: Callable[[dict[str, Any]], None] | None = None,
                 progress: Callable[[str, int, int, Metrics], None] | None = None,
                 context: dict[str, Any] | None = None,
                 tick: Callable[[], None] | None = None,
                 reduce: Callable[[Metrics], Metrics] | None = None,
                 checkpoints: SeedCheckpoints | None = None) -> None:
        self.tick = tick or (lambda: None)
        self.reduce = reduce or (lambda metrics: metrics)
        self._log = log
        self._progress = progress
        self.context = dict(context or {})
        self.epoch_ms: list[float] = []  # every training epoch of this engine, all phases
        self.checkpoints = checkpoints
        self.records = 0  # records this engine has logged (or, replaying, had logged)
        # A resumed seed replays its trainer: the records the run already holds are
        # counted, not written again.
        self._written = checkpoints.records if checkpoints is not None else 0
        self._fits = 0
        self.round: tuple[int, int] | None = None  # (done, total) rounds of the trainer

    def log(self, record: dict[str, Any]) -> None:
        """Write a record (with this engine's context) to the run's metrics."""
        self.records += 1
        if self.records <= self._written:
            return
        if self._log is not None:
            self._log({**self.context, **record})

    def set_round(self, done: int, total: int) -> None:
        """A trainer that trains in rounds (GAM's iterations) says where it is, for the
        progress display's estimate of the time left."""
        self.round = (done, total)

    def fit(self, model: torch.nn.Module, *, train_step: Callable[[int], Mapping[str, Any]],
            evaluate: Callable[[], Mapping[str, Any]], epochs: int, patience: int | None = None,
            monitor: str = "val_accuracy", mode: str = "max",
            tie_break: str | None = "val_loss", phase: str = "train",
            record: dict[str, Any] | None = None, eval_every: int = 1,
            resumable: Resumable | None = None,
            optimizer_path: str | None = None) -> FitResult:
        """Train ``model`` for up to ``epochs`` epochs and restore its best weights.

        ``train_step(epoch)`` runs one epoch and returns its losses (floats or tensors);
        ``evaluate()`` returns metrics including ``monitor``. It runs after every
        ``eval_every``-th epoch and after the last (only evaluated epochs can be chosen).
        Training stops early when ``monitor`` has not improved for ``patience`` epochs
        (None: never). The returned ``best`` are the metrics of the best epoch, whose
        weights ``model`` holds after. ``resumable`` holds the rest of the loop's state
        (optimizer, batch position) for the engine's checkpoints: without it, a loop
        interrupted mid-way starts again from its first epoch on resume.

        A training loss that is NaN or infinite stops the loop with a
        :class:`zoo.errors.DivergedError`, whose message names ``optimizer_path`` (the
        config section of the loop's optimizer, e.g. ``trainer.optimizer``) when given.
        """
        index, checkpoints = self._fits, self.checkpoints
        self._fits += 1
        if checkpoints is not None and index in checkpoints.finished:
            return self._replay(model, checkpoints.finished[index])
        best: Metrics | None = None
        weights = BestWeights(model)
        best_epoch = -1
        result = FitResult(best_epoch=-1, best={}, epochs_run=0)
        started = time.perf_counter()
        first = 0
        saved = checkpoints.in_progress(index) if checkpoints is not None else None
        if saved is not None:
            result = FitResult(**saved["result"])
            best, best_epoch = (dict(saved["best"]) if saved["best"] is not None else None,
                                result.best_epoch)
            self.epoch_ms.extend(result.epoch_ms)
            model.load_state_dict(saved["model"])
            if saved["best_weights"] is not None:
                current = model.state_dict()
                weights.state = {k: v.to(current[k].device)
                                 for k, v in saved["best_weights"].items()}
            if resumable is not None:
                resumable.load_state_dict(saved["trainer"])
            self.records = int(saved["records"])
            set_rng_state(saved["rng"])
            first = result.epochs_run
            started -= result.seconds
        for epoch in range(first, epochs):
            self.tick()
            start = time.perf_counter()
            losses = train_step(epoch)
            ms = (time.perf_counter() - start) * 1000.0
            result.epoch_ms.append(ms)
            self.epoch_ms.append(ms)
            result.epochs_run = epoch + 1
            if (epoch + 1) % eval_every and epoch != epochs - 1:
                read = self.reduce(to_floats(losses))
                self._check_finite(read, losses, phase, record, epoch, ms, optimizer_path)
                self.log({"phase": phase, **(record or {}), "epoch": epoch, **read,
                          "epoch_ms": round(ms, 3)})
                continue
            eval_start = time.perf_counter()
            evaluated = evaluate()
            # One read of the losses and the evaluation together (one host sync an epoch);
            # a model that diverged was evaluated for nothing, which is cheap next to it.
            metrics = self.reduce(to_floats({**losses, **evaluated}))
            self._check_finite(metrics, losses, phase, record, epoch, ms, optimizer_path)
            result.eval_seconds += time.perf_counter() - eval_start
            result.eval_keys = tuple(evaluated)
            result.history.append(metrics)
            self.log({"phase": phase, **(record or {}), "epoch": epoch, **metrics,
                      "epoch_ms": round(ms, 3)})
            if better(metrics, best, monitor, mode, tie_break):
                best, best_epoch = metrics, epoch
                weights.save()
            if self._progress is not None:
                self._progress(phase, epoch + 1, epochs, {**metrics, "best_" + monitor:
                                                          (best or {}).get(monitor, 0.0)})
            if patience is not None and epoch - best_epoch >= patience:
                break
            if checkpoints is not None and epoch + 1 < epochs and checkpoints.due(epoch):
                result.best_epoch, result.best = best_epoch, dict(best or {})
                result.seconds = time.perf_counter() - started
                checkpoints.save_progress({
                    "fit": index, "result": dataclasses.asdict(result), "best": best,
                    "model": cpu_state(model.state_dict()),
                    "best_weights": cpu_state(weights.state) if weights.state else None,
                    "trainer": resumable.state_dict() if resumable is not None else None,
                    "records": self.records, "rng": rng_state()})
        weights.restore()
        result.best_epoch, result.best = best_epoch, dict(best or {})
        result.seconds = time.perf_counter() - started
        if checkpoints is not None:
            checkpoints.save_finished(index, {
                "result": dataclasses.asdict(result), "model": cpu_state(model.state_dict()),
                "records": self.records, "rng": rng_state()})
        return result

    def _check_finite(self, metrics: Metrics, losses: Mapping[str, Any], phase: str,
                      record: dict[str, Any] | None, epoch: int, ms: float,
                      optimizer_path: str | None) -> None:
        """A DivergedError when a training loss of this epoch is NaN or infinite: the
        epoch's losses are recorded (not its evaluation of a broken model) and the run
        stops, rather than train on and report the metrics of garbage weights."""
        bad = [k for k in losses if not math.isfinite(metrics[k])]
        if not bad:
            return
        self.log({"phase": phase, **(record or {}), "epoch": epoch,
                  **{k: metrics[k] for k in losses}, "epoch_ms": round(ms, 3)})
        seed = self.context.get("seed")
        where = f"seed {seed}, epoch {epoch}" if seed is not None else f"epoch {epoch}"
        lower = f"{optimizer_path}.lr" if optimizer_path else "its optimizer's learning rate"
        raise DivergedError(
            f"training diverged at {where} of phase '{phase}' ({bad[0]} is "
            f"{metrics[bad[0]]}); lower {lower} (or the regularizers' multipliers) and "
            "check the inputs for NaN or huge values")

    def _replay(self, model: torch.nn.Module, saved: dict[str, Any]) -> FitResult:
        """A loop that finished before the run was interrupted: its result, weights,
        records and generator states, as it left them."""
        model.load_state_dict(saved["model"])
        result = FitResult(**saved["result"])
        self.epoch_ms.extend(result.epoch_ms)
        self.records = int(saved["records"])
        set_rng_state(saved["rng"])
        return result


# -- the shared step ------------------------------------------------------------------
def check_scalar(value: Any, component: Any, what: str) -> torch.Tensor:
    """``value`` if it is a 0-dim tensor, else a ContractError naming ``component``."""
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        raise ContractError(f"{component_label(component)} returned {describe_value(value)} "
                            f"as its {what}; it must return a 0-dim tensor (a scalar)")
    return value


def regularizer_names(regularizers: Iterable[Any]) -> list[str]:
    """Record names of the regularizers' terms: ``reg_<name>`` (numbered when a name
    repeats)."""
    names = [f"reg_{component_name(r)}" for r in regularizers]
    return [n if names.count(n) == 1 else f"{n}_{names[:i].count(n)}"
            for i, n in enumerate(names)]


def training_step(model: Classifier, batch: Batch, task: Task,
                  regularizers: Mapping[str, torch.nn.Module],
                  optimizer: torch.optim.Optimizer, *, step: int = 0,
                  outputs_of: Callable[[torch.Tensor], ModelOutput] | None = None,
                  after_backward: Callable[[], None] | None = None,
                  ) -> dict[str, torch.Tensor]:
    """One optimizer step on ``batch``: forward, the task's loss plus every regularizer's
    term, backward, update. Returns the detached terms (tensors, still on the device).
    ``model`` may be the classifier wrapped in ``DistributedDataParallel``;
    ``after_backward`` runs between the backward pass and the update."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    out = model(batch.graph, batch.inputs)
    loss = check_scalar(task.loss(out, batch), task, "loss")
    metrics = {"loss": loss.detach()}
    total = loss
    if regularizers:
        if outputs_of is None and batch.graph is not None and not isinstance(batch.graph, list):
            # The whole graph: every node's output is at hand, `model(ids)` indexes it.
            def outputs_of(ids: torch.Tensor, out: ModelOutput = out) -> ModelOutput:
                return out.rows(ids)

        inp = RegularizerInput(graph=batch.reg_graph, logits=out.logits, embedding=out.embedding,
                               labels=batch.labels, labeled=batch.labeled,
                               node_ids=batch.node_ids, model=outputs_of, step=step,
                               head=out.head)
        for name, reg in regularizers.items():
            value = check_scalar(reg(inp), reg, "term")
            metrics[name] = value.detach()
            total = total + value
    total.backward()
    if after_backward is not None:
        after_backward()
    optimizer.step()
    return metrics


class StepLoop:
    """Runs :func:`training_step` over the batches of a bound batch source: a whole epoch
    of them, or a number of steps that continues across epochs."""

    def __init__(self, model: Classifier, optimizer: torch.optim.Optimizer, task: Task,
                 source: BatchSource, regularizers: Iterable[torch.nn.Module],
                 labels: torch.Tensor, labeled: torch.Tensor,
                 tick: Callable[[], None] | None = None, runtime: Runtime | None = None,
                 ) -> None:
        regs = list(regularizers)
        self.tick = tick
        # Several processes: the classifier in DDP, the regularizers' own parameters (if
        # any) averaged by hand after the backward pass.
        self.forward_model = runtime.wrap(model) if runtime is not None else model
        reg_params = [p for r in regs for p in r.parameters() if p.requires_grad]
        self.after_backward = None
        if runtime is not None and runtime.distributed and reg_params:
            def average_regularizer_grads() -> None:
                for p in reg_params:
                    if p.grad is not None:
                        p.grad.copy_(runtime.reduce(p.grad))
            self.after_backward = average_regularizer_grads
        self.model, self.optimizer, self.task, self.source = model, optimizer, task, source
        self.regularizers = dict(zip(regularizer_names(regs), regs))
        self.labels, self.labeled = labels, labeled
        self.step = 0
        self._batches: Iterator[Batch] | None = None
        # For checkpoints: the generators' states when the current pass began, and how
        # many of its batches were taken (a pass is re-drawn and skipped to there).
        self.track_passes = False
        self._pass_rng: dict[str, Any] | None = None
        self._in_pass = 0
        inputs_of = getattr(source, "inputs_of", None)
        self.outputs_of = (lambda ids: model(None, inputs_of(ids))) if (
            inputs_of is not None and model.graph_free) else None

    def _epoch_batches(self) -> Iterator[Batch]:
        if self.track_passes:
            self._pass_rng, self._in_pass = rng_state(), 0
        return iter(self.source.epoch(self.labels, self.labeled,
                                      with_reg_graph=bool(self.regularizers)))

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state, the step count and the position in the current pass."""
        return {"optimizer": self.optimizer.state_dict(), "step": self.step,
                "pass_rng": self._pass_rng if self._batches is not None else None,
                "in_pass": self._in_pass}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the caller restores the generators' states after."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self._batches = None
        if state["pass_rng"] is not None:
            set_rng_state(state["pass_rng"])
            self._batches = self._epoch_batches()
            for _ in range(int(state["in_pass"])):
                next(self._batches)
                self._in_pass += 1

    def _run(self, batch: Batch) -> dict[str, torch.Tensor]:
        if not isinstance(batch, Batch):
            raise ContractError(f"{component_label(self.source)} yielded "
                                f"{describe_value(batch)} from epoch(); it must yield "
                                "zoo.Batch objects")
        metrics = training_step(self.forward_model, batch, self.task, self.regularizers,
                                self.optimizer, step=self.step, outputs_of=self.outputs_of,
                                after_backward=self.after_backward)
        self.step += 1
        if self.tick is not None:
            self.tick()
        return metrics

    @staticmethod
    def _mean(totals: dict[str, torch.Tensor], count: int) -> dict[str, torch.Tensor]:
        return {k: v / max(count, 1) for k, v in totals.items()}

    def epoch(self) -> dict[str, torch.Tensor]:
        """One pass over the source's batches; the mean of each term over them."""
        totals: dict[str, torch.Tensor] = {}
        count = 0
        for batch in self._epoch_batches():
            for k, v in self._run(batch).items():
                totals[k] = totals[k] + v if k in totals else v
            count += 1
        return self._mean(totals, count)

    def steps(self, n: int) -> dict[str, torch.Tensor]:
        """``n`` optimizer steps on the next batches (a new epoch starts when one ends)."""
        totals: dict[str, torch.Tensor] = {}
        for _ in range(n):
            batch = next(self._batches, None) if self._batches is not None else None
            if batch is None:
                self._batches = self._epoch_batches()
                batch = next(self._batches)
            self._in_pass += 1
            for k, v in self._run(batch).items():
                totals[k] = totals[k] + v if k in totals else v
        return self._mean(totals, n)


# -- what a trainer receives ----------------------------------------------------------
class TrainContext:
    """What a trainer receives for one seed.

    Attributes:
        data: the dataset on the run's device.
        graph: the graph models and regularizers use (the graph builder's, or the
            dataset's own), edge weights in ``edata["weight"]``.
        seed: the seed of this run (already applied).
        runtime: device, rank and world size (:class:`zoo.Runtime`).
        task: the task component (loss, metrics, what to monitor).
        engine: the epoch loop, for trainers that train something of their own.
    """

    def __init__(self, *, data: Any, graph: Any, seed: int, runtime: Runtime, task: Task,
                 engine: Engine, build_model: Callable[[], Classifier],
                 build_regularizers: Callable[[], list[torch.nn.Module]]) -> None:
        self.data, self.graph, self.seed = data, graph, seed
        self.runtime, self.task, self.engine = runtime, task, engine
        self._build_model = build_model
        self._build_regularizers = build_regularizers
        self._sources: dict[int, BatchSource] = {}

    def build_model(self) -> Classifier:
        """A freshly initialized model (encoder and/or node model) on the device."""
        return self._build_model()

    def build_regularizers(self) -> list[torch.nn.Module]:
        """The configured regularizers, fresh, on the device."""
        return self._build_regularizers()

    def batch_source(self, batches: ComponentSpec | BatchSource) -> BatchSource:
        """A batch source bound to this seed's data (built once per spec)."""
        if not isinstance(batches, ComponentSpec):
            return batches
        key = id(batches)
        if key not in self._sources:
            source = batches()
            source.bind(self.data, self.graph, self.runtime)
            self._sources[key] = source
        return self._sources[key]

    def evaluate(self, model: Classifier, batches: ComponentSpec | BatchSource) -> Metrics:
        """The task's metrics for ``model`` over every node (eval mode)."""
        return to_floats(self._evaluate(model, batches))

    @torch.no_grad()
    def _evaluate(self, model: Classifier, batches: ComponentSpec | BatchSource,
                  ) -> Mapping[str, Any]:
        model.eval()
        out = self.batch_source(batches).infer(model)
        metrics = self.task.evaluate(out, self.data)  # tensors: read once with the losses
        if not isinstance(metrics, Mapping) or self.task.monitor not in metrics:
            raise ContractError(f"{component_label(self.task)} evaluate() returned "
                                f"{describe_value(metrics)} without its monitored metric "
                                f"'{self.task.monitor}'; it must return a dict that has it")
        return metrics

    def train(self, model: Classifier, *, optimizer: ComponentSpec,
              batches: ComponentSpec | BatchSource, epochs: int,
              regularizers: Iterable[torch.nn.Module] = (), patience: int | None = None,
              steps_per_epoch: int | None = None, labels: torch.Tensor | None = None,
              labeled: torch.Tensor | None = None, phase: str = "train",
              record: dict[str, Any] | None = None, eval_every: int = 1) -> FitResult:
        """Train ``model`` with the shared step and keep its best weights by the task's
        monitored metric.

        Each epoch is one pass over ``batches`` (or ``steps_per_epoch`` optimizer steps,
        continuing across passes) followed by an evaluation. ``labels``/``labeled`` (per
        dataset node; default: the dataset's labels and training mask) say what the
        loss may train on. The evaluation runs after every ``eval_every``-th epoch and
        the last. The optimizer covers the model's and the regularizers' parameters.
        """
        regs = list(regularizers)
        source = self.batch_source(batches)
        params = [*model.parameters(), *(p for r in regs for p in r.parameters())]
        opt = optimizer(params)
        loop = StepLoop(model, opt, self.task, source, regs,
                        self.data.labels if labels is None else labels,
                        self.data.train_mask if labeled is None else labeled,
                        tick=self.engine.tick, runtime=self.runtime)

        loop.track_passes = self.engine.checkpoints is not None and steps_per_epoch is not None

        def train_step(epoch: int) -> dict[str, torch.Tensor]:
            return loop.epoch() if steps_per_epoch is None else loop.steps(steps_per_epoch)

        task = self.task
        return self.engine.fit(model, train_step=train_step,
                               evaluate=lambda: self._evaluate(model, source), epochs=epochs,
                               patience=patience, monitor=task.monitor, mode=task.mode,
                               tie_break=task.tie_break, phase=phase, record=record,
                               eval_every=eval_every, resumable=loop,
                               optimizer_path=getattr(optimizer, "path", None) or None)
