"""The contracts of the zoo: every kind of component, what the zoo hands it and what it
must give back, and the values that flow between components. This module is their
documentation, as pytest's ``hookspec.py`` is for pytest's hooks.

A component is a factory (a class or a function) registered under a kind and a name.
The zoo calls it as ``factory(*inputs, **config)``: the *inputs* are fixed per kind (the
table below, :data:`KINDS`) and are passed positionally; the *config* is the component's
section of the YAML file, validated against the factory's keyword-only parameters (those
after ``*``). What the call returns must honour the kind's protocol.

==============  ===========================  =============================================
kind            inputs                       returns
==============  ===========================  =============================================
dataset         —                            :class:`GraphData`
graph_builder   ``data``                     a DGL graph over ``data``'s nodes
encoder         ``in_dim, out_dim | None``   :class:`Encoder` (an ``nn.Module``)
node_model      ``in_dim, out_dim``          :class:`NodeModel` (an ``nn.Module``)
regularizer     —                            :class:`Regularizer` (an ``nn.Module``)
task            —                            :class:`Task`
batch_source    —                            :class:`BatchSource`
optimizer       ``params``                   a ``torch.optim.Optimizer``
trainer         —                            :class:`Trainer`
logger          —                            :class:`Logger`
==============  ===========================  =============================================

Registration checks these contracts before a component is offered (see
:mod:`zoo.registry`); the zoo checks what components return at run time and names the
component that broke its contract (:class:`zoo.errors.ContractError`, exit code 1).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from zoo.engine import TrainContext
    from zoo.runtime import Runtime

Metrics = dict[str, float]


# -- values ---------------------------------------------------------------------------
@dataclass
class GraphData:
    """A dataset: node (or item) features, labels, a split, and usually a graph.

    ``features`` has one row per node, ``(N, F)`` float32 for node features (it may be a
    sparse COO tensor: row-normalized bag-of-words stay sparse) or ``(N, C, H, W)`` for
    images; ``labels`` is ``(N,)`` int64; the masks are ``(N,)`` bool. ``graph`` is a
    DGL graph over the same N nodes (edge weights, if any, in ``graph.edata["weight"]``)
    or None for a set of items without one. ``extra`` carries dataset-specific values;
    these keys have a shared meaning (item datasets such as the image sets set them):

    - ``ids``: a stable string id per row (what ``zoo search --id`` takes and
      ``zoo embed`` writes; default: the row index).
    - ``label_names``: a name per class (what ``zoo search --text`` takes).
    - ``classes``: ``(N,)`` int64 coarse class per row, when ``labels`` are finer (the
      retrieval metrics count an item relevant when its class matches).
    - ``train_items``: ``(N,)`` bool, the whole training split when ``train_mask``
      holds only its labeled part (the items an index is built from).
    - ``load_image``: ``f(path) -> (1, C, H, W)`` tensor, a file read and normalized
      as the dataset's own rows (image search by an image file).
    """

    graph: Any  # dgl.DGLGraph or None; typed loosely so the core does not import DGL
    features: torch.Tensor
    labels: torch.Tensor
    train_mask: torch.Tensor
    val_mask: torch.Tensor
    test_mask: torch.Tensor
    num_classes: int
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_features(self) -> int:
        """Feature columns (channels, for images): the ``in_dim`` models are built with."""
        return int(self.features.shape[1])

    @property
    def device(self) -> torch.device:
        return self.features.device

    def to(self, device: torch.device | str) -> GraphData:
        """A copy with tensors and graph on ``device`` (``self`` if already there)."""
        device = torch.device(device)
        if self.features.device == device and (
                self.graph is None or getattr(self.graph, "device", device) == device):
            return self
        return replace(self, graph=None if self.graph is None else self.graph.to(device),
                       features=self.features.to(device), labels=self.labels.to(device),
                       train_mask=self.train_mask.to(device),
                       val_mask=self.val_mask.to(device), test_mask=self.test_mask.to(device))

    def describe(self) -> str:
        """One line: nodes, edges, features, classes and split sizes."""
        edges = f"{self.graph.num_edges()} edges" if self.graph is not None else "no graph"
        return (
            f"{self.name}: {self.num_nodes} nodes, {edges}, "
            f"{self.num_features} features, {self.num_classes} classes, "
            f"split {int(self.train_mask.sum())}/{int(self.val_mask.sum())}/"
            f"{int(self.test_mask.sum())}"
        )


@dataclass
class ModelOutput:
    """What a model returns: ``logits`` (its output: class scores for classification,
    the embedding an image search indexes for the embedding task) and the ``embedding``
    they came from (the last hidden layer), one row per output node. An encoder or node
    model may return a bare tensor instead: it is its output, and the embedding is then
    its input. ``head`` is the model's output head when the task gave it one
    (:meth:`Task.head`, e.g. class weights over a huge label space scored by a sampled
    softmax): the zoo attaches it to the model, and every output carries it so that the
    task's ``loss`` and ``evaluate`` can use it."""

    logits: torch.Tensor
    embedding: torch.Tensor
    head: Any = None

    @classmethod
    def cat(cls, outputs: list[ModelOutput]) -> ModelOutput:
        """The outputs of consecutive chunks of rows as one output (the head kept)."""
        return cls(torch.cat([o.logits for o in outputs]),
                   torch.cat([o.embedding for o in outputs]), outputs[0].head)

    def rows(self, ids: torch.Tensor) -> ModelOutput:
        """The output of the rows ``ids`` (the head kept)."""
        return ModelOutput(self.logits[ids], self.embedding[ids], self.head)


@dataclass
class Batch:
    """One training batch, as a :class:`BatchSource` yields it.

    The model is called as ``model(graph, inputs)`` and returns one row per output node;
    ``node_ids`` gives each output row's dataset node id. ``labels``/``labeled`` are
    row-aligned with the outputs (``labeled``: the row's label may be trained on; the
    trainer's labeled set, self-labels included). The task's loss covers the rows
    ``loss_rows``: the mean over them, or their sum divided by ``loss_norm`` when it is
    set (a mini-batch's unbiased estimate of the full-graph mean). ``reg_graph`` is the
    graph regularizers see, over the output rows (edge ``u -> v``: ``v`` is a neighbour
    of sample ``u``), or None.

    Attributes:
        graph: the model's graph argument: the whole graph, a list of sampled DGL
            blocks (one per layer), or None for graph-free models.
        inputs: input rows: the features of the nodes the model reads.
        node_ids: dataset node id of each output row (on the runtime's device).
        labels: label of each output row.
        labeled: whether each output row's label may be trained on.
        loss_rows: output rows the task's loss covers.
        loss_norm: None for the mean over ``loss_rows``, else the divisor of their sum.
        reg_graph: graph over the output rows for the regularizers, or None.
    """

    graph: Any
    inputs: torch.Tensor
    node_ids: torch.Tensor
    labels: torch.Tensor
    labeled: torch.Tensor
    loss_rows: torch.Tensor
    loss_norm: float | None = None
    reg_graph: Any = None


@dataclass
class RegularizerInput:
    """Everything a regularizer may use for one training step.

    Rows of ``logits``/``embedding`` are the batch's output nodes, and ``graph`` is the
    graph over those rows (the batch's ``reg_graph``): in full-graph training the whole
    (weighted) graph; with packed neighbours the batch's seeds with their neighbours
    (seed -> neighbour edges); with sampled blocks the edges among the batch's seeds.
    ``node_ids`` maps rows back to dataset node ids. Edge weights, when present, are in
    ``graph.edata["weight"]``. ``labels``/``labeled`` are row-aligned; only rows where
    ``labeled`` is true carry a trustworthy label. ``model(ids)``, where the batch
    source offers it, gives the :class:`ModelOutput` of arbitrary dataset nodes; ``step``
    counts optimizer steps; ``head`` is the model's output head, if the task gave it one
    (``head.scores(logits)``: the embedding task's class scores).
    """

    graph: Any
    logits: torch.Tensor
    embedding: torch.Tensor
    labels: torch.Tensor
    labeled: torch.Tensor
    node_ids: torch.Tensor
    model: Callable[[torch.Tensor], ModelOutput] | None = None
    step: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    head: Any = None


@dataclass(frozen=True)
class RunInfo:
    """The run a :class:`Logger` records: its folder, the config's name, the resolved
    config, and whether it resumes an interrupted run (a logger may then append to what
    it wrote before rather than start afresh)."""

    dir: Path
    name: str
    config: dict[str, Any]
    resumed: bool = False


# -- protocols: what a built component must be -----------------------------------------
@runtime_checkable
class Dataset(Protocol):
    """``dataset``: a function (or class) ``f(*, **config) -> GraphData``.

    Load, verify and return the data on the CPU; the zoo moves it to the run's device.
    Report a missing or corrupt file as :class:`zoo.errors.DataError` with the fix.
    """

    def __call__(self, **config: Any) -> GraphData: ...


@runtime_checkable
class GraphBuilder(Protocol):
    """``graph_builder``: ``f(data, *, **config) -> dgl.DGLGraph``.

    A graph over ``data``'s nodes that replaces the dataset's own edges, with float32
    ``edata["weight"]``. An edge ``u -> v`` says "``v`` is a neighbour of sample ``u``"
    (NSL's convention; the regularizers and neighbour packing read it so).
    """

    def __call__(self, data: GraphData, **config: Any) -> Any: ...


@runtime_checkable
class Encoder(Protocol):
    """``encoder``: ``Encoder(in_dim, out_dim | None, *, **config)``, an ``nn.Module``.

    ``forward(x)`` maps input rows (features, dense or sparse COO, or images) to a tensor
    or a :class:`ModelOutput`. ``out_dim`` is None when a node model follows (return the
    embedding, ``out_dim`` units wide); otherwise it is the task's output size and the
    encoder is the whole model. The built module must set the attribute ``out_dim``.
    """

    out_dim: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor | ModelOutput: ...


@runtime_checkable
class NodeModel(Protocol):
    """``node_model``: ``NodeModel(in_dim, out_dim, *, **config)``, an ``nn.Module``.

    ``forward(graph, x)`` returns a tensor or a :class:`ModelOutput` with one row per
    node. A model that also runs on sampled blocks sets the class attribute
    ``supports_blocks = True`` and ``num_layers`` (the blocks it consumes): ``graph``
    is then either the whole graph or a list of DGL blocks, one per layer (``x`` one row
    per source node of the first block, output one row per destination node of the
    last). Blocks carry ``srcdata``/``dstdata["in_degree"]`` (each node's in-degree in
    the whole graph, self-loops excluded) and ``edata["weight"]``.
    """

    supports_blocks: bool

    def __call__(self, graph: Any, x: torch.Tensor) -> torch.Tensor | ModelOutput: ...


@runtime_checkable
class Regularizer(Protocol):
    """``regularizer``: ``Regularizer(*, **config)``, an ``nn.Module``.

    ``forward(inp: RegularizerInput)`` returns a 0-dim tensor: the term added to the
    loss, already weighted (the convention: a ``multiplier`` parameter scales it). The
    zoo logs it as ``reg_<name>``. Its parameters, if any, are trained with the model's.
    """

    def __call__(self, inp: RegularizerInput) -> torch.Tensor: ...


@runtime_checkable
class UsesAgreementModel(Protocol):
    """A regularizer that needs an agreement model (Graph Agreement Models).

    The ``gam`` trainer looks for regularizers implementing this and hands them its
    agreement model whenever it has trained one: ``set_agreement_model(model,
    features)`` (``model`` None: no agreement term yet). ``use_graph`` says whether its
    pairs come from the graph's edges (so the agreement model learns from edges too).
    """

    use_graph: bool

    def set_agreement_model(self, model: Any, features: torch.Tensor | None = None) -> None:
        ...


@runtime_checkable
class Task(Protocol):
    """``task``: what is specific to the problem — loss, metrics, what to monitor.

    ``Task(*, **config)``. ``output_size(data)`` is the width of the model's output
    (the number of classes, an embedding size...). ``loss(output, batch)`` is the
    training loss of a batch (0-dim tensor). ``evaluate(output, data)`` gets the
    model's output for every node of ``data`` (eval mode) and returns named metrics
    (floats or 0-dim tensors) including ``monitor``; the zoo keeps the weights of the
    epoch whose ``monitor`` is best by ``mode`` ('max' or 'min'), ties broken by the
    lower ``tie_break`` metric when set. ``report`` names the metrics the command line
    shows first.

    Optionally, ``head(data, dim)`` returns an ``nn.Module`` (or None) that the zoo
    attaches to every model it builds, after the model's ``dim``-wide output: it is
    trained, saved and moved with the model and reaches ``loss``/``evaluate`` as
    ``output.head`` (the ``embedding`` task's class weights). Optionally,
    ``write_files(output, data, folder)`` writes pictures or tables of a trained model's
    output into the run folder (the zoo calls it once, for the first seed) and returns
    the paths written.
    """

    monitor: str
    mode: Literal["max", "min"]
    tie_break: str | None
    report: tuple[str, ...]

    def output_size(self, data: GraphData) -> int: ...

    def loss(self, output: ModelOutput, batch: Batch) -> torch.Tensor: ...

    def evaluate(self, output: ModelOutput, data: GraphData) -> dict[str, Any]: ...


@runtime_checkable
class ClassifiesNodes(Protocol):
    """A task whose model outputs class scores: ``probabilities(output)`` gives one
    probability row per node (what self-training trainers such as ``gam`` need)."""

    def probabilities(self, output: ModelOutput) -> torch.Tensor: ...


@runtime_checkable
class BatchSource(Protocol):
    """``batch_source``: where training batches come from — ``BatchSource(*, **config)``.

    ``graph_input`` declares what the model's ``graph`` argument will be: 'whole' (the
    whole graph), 'blocks' (sampled DGL blocks: the node model must declare
    ``supports_blocks``) or 'none' (no graph: the model must be encoder-only).
    ``num_blocks`` is the number of blocks per batch ('blocks' only). The zoo calls
    ``bind(data, graph, runtime)`` once per seed, then ``epoch(labels, labeled,
    with_reg_graph)`` for each epoch, which yields :class:`Batch` objects on
    ``runtime.device`` (``labels``/``labeled`` are per dataset node; ``with_reg_graph``
    asks for ``Batch.reg_graph``). ``infer(model)`` returns the model's output for
    every node of the dataset (the caller sets eval mode and no_grad), which the task
    evaluates. ``inputs_of(node_ids)``, optional, gives input rows of arbitrary nodes
    to graph-free models (it backs ``RegularizerInput.model``).
    """

    graph_input: Literal["whole", "blocks", "none"]

    def bind(self, data: GraphData, graph: Any, runtime: Runtime) -> None: ...

    def epoch(self, labels: torch.Tensor, labeled: torch.Tensor,
              with_reg_graph: bool = False) -> Iterator[Batch]: ...

    def infer(self, model: Callable[[Any, torch.Tensor], ModelOutput]) -> ModelOutput: ...


@runtime_checkable
class Trainer(Protocol):
    """``trainer``: ``Trainer(*, **config)`` with ``fit(ctx) -> dict[str, float]``.

    ``ctx`` is a :class:`zoo.TrainContext` for one seed: data, graph, task, runtime and
    engine, plus ``build_model()``, ``build_regularizers()`` and ``train(...)`` — the
    shared loop over a batch source and the shared step (forward, task loss,
    regularizers, backward, optimizer). Return the metrics to summarize for this seed
    (the task's metrics at the chosen epoch, plus the trainer's own). Nested sections
    of a trainer's config (``optimizer``, ``batches``...) arrive as
    :class:`zoo.ComponentSpec` objects to call.

    Optionally, ``check_setup(task, regularizers)`` raises :class:`zoo.ConfigError` when
    the rest of the config cannot work with this trainer (a missing regularizer, a task
    it cannot serve); ``zoo.build`` calls it before any data loads.
    """

    def fit(self, ctx: TrainContext) -> dict[str, float]: ...


@runtime_checkable
class Logger(Protocol):
    """``logger``: ``Logger(*, **config)``, a sink for the run's records (experiment
    tracking: TensorBoard, MLflow, a file...).

    The zoo calls ``start(run)`` once with a :class:`RunInfo`, then ``log(record)`` for
    every record the run writes to its ``metrics.jsonl`` (a flat dict: ``seed``,
    ``phase`` and ``epoch`` or ``iteration``, then metric values, which may be NaN), and
    ``end(summary, status)`` once: ``summary`` is what ``summary.json`` holds (None when
    the run did not get that far) and ``status`` is 'finished', 'failed' or
    'interrupted'. A logger writes under ``run.dir`` unless told otherwise. A logger
    that raises is switched off for the rest of the run with a warning; the run goes on
    (:class:`zoo.tracking.RecordStream`).
    """

    def start(self, run: RunInfo) -> None: ...

    def log(self, record: dict[str, Any]) -> None: ...

    def end(self, summary: dict[str, Any] | None, status: str) -> None: ...


# -- the kinds ------------------------------------------------------------------------
def _is_graph(obj: Any) -> bool:
    return callable(getattr(obj, "num_edges", None)) and hasattr(obj, "edata")


def a(noun: str) -> str:
    """``noun`` with its indefinite article: "an encoder", "a dataset"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


@dataclass(frozen=True)
class KindSpec:
    """A kind's contract: the inputs the zoo passes, the methods a class factory must
    define, and the check of what a factory returns (a reason it fails, or None)."""

    name: str
    inputs: tuple[str, ...]
    returns: str
    methods: tuple[str, ...] = ()
    check: Callable[[Any], bool] = callable

    def problem(self, obj: Any) -> str | None:
        """Why ``obj``, built by a factory of this kind, breaks the contract (or None)."""
        return None if self.check(obj) else f"{a(self.name)} must return {self.returns}"


def _module_with(*attrs: str) -> Callable[[Any], bool]:
    return lambda obj: isinstance(obj, torch.nn.Module) and all(hasattr(obj, a) for a in attrs)


KINDS: dict[str, KindSpec] = {spec.name: spec for spec in (
    KindSpec("dataset", (), "a zoo.GraphData", check=lambda d: isinstance(d, GraphData)),
    KindSpec("graph_builder", ("data",), "a DGL graph", check=_is_graph),
    KindSpec("encoder", ("in_dim", "out_dim"), "an nn.Module with an int attribute out_dim",
             ("forward",), _module_with("out_dim")),
    KindSpec("node_model", ("in_dim", "out_dim"), "an nn.Module", ("forward",),
             _module_with()),
    KindSpec("regularizer", (), "an nn.Module whose forward takes a RegularizerInput",
             ("forward",), _module_with()),
    KindSpec("task", (), "an object with output_size, loss and evaluate, and monitor, mode, "
             "tie_break and report", ("output_size", "loss", "evaluate"),
             lambda t: isinstance(t, Task)),
    KindSpec("batch_source", (), "an object with graph_input, bind, epoch and infer",
             ("bind", "epoch", "infer"), lambda b: isinstance(b, BatchSource)),
    KindSpec("optimizer", ("params",), "a torch.optim.Optimizer",
             check=lambda o: isinstance(o, torch.optim.Optimizer)),
    KindSpec("trainer", (), "an object with fit(ctx)", ("fit",),
             lambda t: callable(getattr(t, "fit", None))),
    KindSpec("logger", (), "an object with start(run), log(record) and end(summary, status)",
             ("start", "log", "end"), lambda lg: isinstance(lg, Logger)),
)}


def class_problems(kind: str, factory: Any) -> list[str]:
    """What a class registered as ``kind`` lacks, from its definition alone."""
    spec = KINDS[kind]
    if not inspect.isclass(factory):
        return []
    # nn.Module's own forward only raises NotImplementedError: it does not count.
    missing = [m for m in spec.methods if not callable(getattr(factory, m, None))
               or getattr(factory, m) is getattr(torch.nn.Module, m, None)]
    return [f"it has no {m}() method" for m in missing]


def describe_value(value: Any) -> str:
    """A short description of a value a component returned, for contract errors."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe_value(v) for v in value[:3])
        inner += ", ..." if len(value) > 3 else ""
        return f"{a(type(value).__name__)} of {len(value)} ({inner})"
    if value is None:
        return "None"
    return a(type(value).__name__)

