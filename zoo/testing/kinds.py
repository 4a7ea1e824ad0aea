"""The conformance rules of each kind, run on the tiny graph (see :mod:`zoo.testing.checks`).

Each check builds the component from its sample config (or defaults) and exercises what
:mod:`zoo.contracts` says its kind must do; the first rule that fails stops it with a
:class:`~zoo.testing.checks.RuleBroken` naming the rule and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.contracts import Batch, GraphData, ModelOutput, RegularizerInput, RunInfo, Task
from zoo.errors import ContractError
from zoo.model import Classifier, expected_rows, unpack_output
from zoo.runtime import Runtime
from zoo.testing.checks import Context, RuleBroken, dense, finite

TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def outputs(ctx: Context, out: Any, obj: Any, rows: int, width: int | None,
            what: str) -> torch.Tensor:
    """The output tensor of a model's return value, checked: one finite row per node,
    ``width`` wide."""
    try:
        logits, _ = unpack_output(out, obj, None, rows)
    except ContractError as e:
        raise RuleBroken("output shape", f"{what}: {e}", "return one row per output node, "
                         "as a tensor or a zoo.ModelOutput(logits, embedding)") from None
    ctx.require(width is None or (logits.dim() == 2 and logits.shape[1] == width),
                "output shape", f"{what} gave shape {tuple(logits.shape)}, expected "
                f"({rows}, {width})", "make the output out_dim wide")
    ctx.require(finite(logits), "finite output", f"{what} gave NaN or infinite values",
                "check for divisions by zero (nodes without neighbours) and log(0)")
    return logits


def gradients(ctx: Context, module: nn.Module, what: str) -> None:
    """Every trainable parameter got a finite gradient from the last backward."""
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    dead = [n for n, p in params if p.grad is None]
    ctx.require(not dead, "gradients", f"{what}: parameter(s) {', '.join(dead[:5])} got no "
                "gradient", "use every parameter in forward, or make it a buffer "
                "(register_buffer) or set requires_grad=False")
    bad = [n for n, p in params if not finite(p.grad)]
    ctx.require(not bad, "gradients", f"{what}: parameter(s) {', '.join(bad[:5])} got NaN "
                "or infinite gradients", "guard divisions and logs in forward")


def forward_backward(ctx: Context, model: nn.Module, call: Callable[[], Any], rows: int,
                     width: int | None, what: str) -> torch.Tensor:
    """Run ``call`` in training mode, check its output, back-propagate its sum."""
    model.train()
    model.zero_grad(set_to_none=True)
    fix = "make forward accept the input its kind receives (zoo.contracts)"
    with ctx.rule("forward and backward", fix):
        out = call()
    logits = outputs(ctx, out, model, rows, width, what)
    with ctx.rule("forward and backward", "keep the output connected to the parameters"):
        (logits.float() ** 2).mean().backward()
    gradients(ctx, model, what)
    return logits


def same_for_sparse(ctx: Context, model: nn.Module, call: Callable[[torch.Tensor], Any],
                    x: torch.Tensor, rows: int, what: str) -> None:
    """In eval mode, sparse COO features give what their dense copy gives."""
    model.eval()
    fix = ("densify sparse COO features (x.to_dense()) or handle them, as Planetoid's "
           "features are sparse")
    with ctx.rule("sparse features", fix), torch.no_grad():
        want = unpack_output(call(x), model, None, rows)[0]
        got = unpack_output(call(x.to_sparse()), model, None, rows)[0]
    ctx.require(torch.allclose(dense(got), dense(want), **TOLERANCE), "sparse features",
                f"{what}: sparse COO features give another output than dense ones", fix)


# -- models ---------------------------------------------------------------------------
def check_encoder(ctx: Context) -> None:
    """Built with and without an output size; forward, backward, sparse input."""
    shape = getattr(ctx.comp.factory, "sample_input_shape", None)
    if shape is not None:
        ctx.require(isinstance(shape, Sequence) and len(shape) >= 1 and all(
            isinstance(s, int) and s >= 1 for s in shape), "sample input shape",
            f"sample_input_shape is {shape!r}", "give a tuple of positive ints, e.g. (3, 16, 16)")
        x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(0))
        in_dim = shape[0]
    else:
        x, in_dim = ctx.data.features, ctx.data.num_features
    rows = int(x.shape[0])
    for out_dim in (ctx.data.num_classes, None):
        encoder = ctx.build(in_dim, out_dim)
        width = getattr(encoder, "out_dim", None)
        ctx.require(isinstance(width, int) and not isinstance(width, bool) and width >= 1
                    and (out_dim is None or width == out_dim), "out_dim",
                    f"built with out_dim={out_dim}, its attribute out_dim is {width!r}",
                    "set self.out_dim to the output width (out_dim, or the embedding "
                    "width when out_dim is None)")
        what = f"forward with out_dim={out_dim}"
        forward_backward(ctx, encoder, lambda e=encoder: e(x), rows, width, what)
    if shape is None:
        same_for_sparse(ctx, encoder, encoder, x, rows, "forward")


def check_node_model(ctx: Context) -> None:
    """Forward and backward on the whole graph, sparse input, and sampled blocks when
    it declares ``supports_blocks``."""
    data = ctx.data
    model = ctx.build(data.num_features, data.num_classes)
    graph, x = data.graph, data.features
    forward_backward(ctx, model, lambda: model(graph, x), data.num_nodes, data.num_classes,
                     "forward on the tiny graph")
    same_for_sparse(ctx, model, lambda f: model(graph, f), x, data.num_nodes, "forward")
    if getattr(model, "supports_blocks", False):
        check_blocks(ctx, model)


def check_blocks(ctx: Context, model: nn.Module) -> None:
    """On full-neighbour blocks, a block model gives the whole graph's rows."""
    layers = getattr(model, "num_layers", None)
    fix = "set self.num_layers to the number of blocks forward consumes"
    ctx.require(isinstance(layers, int) and layers >= 1, "blocks",
                f"it declares supports_blocks but num_layers is {layers!r}", fix)
    if ctx.registry.find_exact("batch_source", "neighbor_sampler") is None:
        ctx.skipped.append("blocks: the neighbor_sampler batch source is not registered")
        return
    data = ctx.data
    sampler = ctx.registry.build("batch_source", {"name": "neighbor_sampler",
                                                  "fanouts": [-1] * layers, "batch_size": 16})
    sampler.bind(data, data.graph, Runtime())
    batch = next(iter(sampler.epoch(data.labels, data.train_mask)))
    model.eval()
    fix = ("run each layer on its block: x has one row per source node of the first "
           "block, the output one row per destination node of the last")
    with ctx.rule("blocks", fix), torch.no_grad():
        got = unpack_output(model(batch.graph, batch.inputs), model, None,
                            expected_rows(batch.graph, batch.inputs))[0]
        want = unpack_output(model(data.graph, data.features), model, None,
                             data.num_nodes)[0][batch.node_ids]
    ctx.require(torch.allclose(got, want, **TOLERANCE), "blocks", "on blocks holding "
                "every neighbour it gives other outputs than on the whole graph", fix)


# -- training pieces ------------------------------------------------------------------
def check_regularizer(ctx: Context) -> None:
    """A finite 0-dim term with a gradient (or an inactive zero), with and without a
    graph."""
    reg = ctx.build()
    data = ctx.data
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(data.num_nodes, data.num_classes, generator=gen, requires_grad=True)
    embedding = torch.randn(data.num_nodes, 16, generator=gen, requires_grad=True)

    def model_of(ids: torch.Tensor) -> ModelOutput:
        return ModelOutput(logits[ids], embedding[ids])

    fix = "return a 0-dim tensor computed from inp.logits or inp.embedding"
    for graph, what in ((data.graph, "on the tiny graph"), (None, "with inp.graph None")):
        inp = RegularizerInput(graph=graph, logits=logits, embedding=embedding,
                               labels=data.labels, labeled=data.train_mask,
                               node_ids=torch.arange(data.num_nodes), model=model_of)
        with ctx.rule("regularizer term", fix):
            term = reg(inp)
        ctx.require(isinstance(term, torch.Tensor) and term.dim() == 0, "regularizer term",
                    f"{what} it returned {term!r:.80}", fix)
        ctx.require(finite(term), "regularizer term", f"{what} it returned {term}",
                    "guard divisions by the edge count or weight sum (they may be 0)")
        if not term.requires_grad:
            ctx.require(float(term) == 0.0, "regularizer gradient", f"{what} it returned "
                        f"{float(term):g} with no gradient", "compute it from inp.logits or "
                        "inp.embedding (a zero may be constant: an inactive term)")
            ctx.skipped.append(f"regularizer gradient {what}: the term is an inactive zero")
            continue
        logits.grad = embedding.grad = None
        with ctx.rule("regularizer gradient", fix):
            term.backward()
        grads = [g for g in (logits.grad, embedding.grad) if g is not None]
        ctx.require(all(finite(g) for g in grads), "regularizer gradient",
                    f"{what} its gradient is NaN or infinite", "guard divisions and norms")


def probe_model(data: GraphData, graph_input: str, layers: int | None) -> Classifier:
    """A linear map of each node's own features (it ignores the graph), shaped as a
    batch source's ``graph_input`` needs: each output row is known exactly."""

    class Probe(nn.Module):
        supports_blocks = True

        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(data.num_features, data.num_classes)
            self.out_dim, self.num_layers = data.num_classes, layers

        def forward(self, *args: Any) -> torch.Tensor:
            x = dense(args[-1])
            graph = args[0] if len(args) == 2 else None
            return self.linear(x)[: expected_rows(graph, x)]

    probe = Probe()
    return Classifier(encoder=probe) if graph_input == "none" else Classifier(node_model=probe)


def check_batch_source(ctx: Context) -> None:
    """bind, an epoch of batches a model trains on (rows aligned, loss rows labeled),
    infer giving every node's row in order, inputs_of."""
    source, data = ctx.build(), ctx.data
    kind = getattr(source, "graph_input", None)
    ctx.require(kind in ("whole", "blocks", "none"), "graph_input", f"graph_input is {kind!r}",
                "set the class attribute graph_input to 'whole', 'blocks' or 'none'")
    layers = getattr(source, "num_blocks", None) if kind == "blocks" else None
    ctx.require(kind != "blocks" or (isinstance(layers, int) and layers >= 1), "graph_input",
                f"it feeds blocks but num_blocks is {layers!r}", "set self.num_blocks")
    model = probe_model(data, kind, layers)
    fix = "yield zoo.Batch objects whose rows line up (see zoo.contracts.Batch)"
    with ctx.rule("bind and epoch", fix):
        source.bind(data, data.graph, Runtime())
        batches = list(source.epoch(data.labels, data.train_mask, True))
    ctx.require(bool(batches) and all(isinstance(b, Batch) for b in batches), "bind and epoch",
                f"an epoch gave {len(batches)} item(s), not zoo.Batch objects", fix)
    for b in batches:
        with ctx.rule("bind and epoch", fix):
            out = model(b.graph, b.inputs)
        n = out.logits.shape[0]
        aligned = b.node_ids.shape[0] == n and b.labels.shape[0] == n and b.labeled.shape[0] == n
        ctx.require(aligned, "batch rows", f"the model gives {n} rows but node_ids, labels and "
                    f"labeled have {b.node_ids.shape[0]}, {b.labels.shape[0]}, "
                    f"{b.labeled.shape[0]}", fix)
        rows = b.loss_rows
        ok = bool(((rows >= 0) & (rows < n)).all()) and bool(b.labeled[rows].all())
        ctx.require(ok, "batch rows", "loss_rows holds rows out of range or unlabeled", fix)
        ctx.require(torch.equal(b.labels[b.labeled], data.labels[b.node_ids][b.labeled]),
                    "batch rows", "labels do not match the dataset's at node_ids", fix)
        reg = b.reg_graph
        ctx.require(reg is None or reg.num_nodes() == n, "batch rows",
                    f"reg_graph has {reg.num_nodes() if reg is not None else 0} nodes for "
                    f"{n} output rows", "build reg_graph over the output rows")
        loss = F.cross_entropy(out.logits[rows], b.labels[rows], reduction="sum")
        (loss / (b.loss_norm or max(rows.numel(), 1))).backward()
    gradients(ctx, model, "training on its batches")
    model.eval()
    with ctx.rule("infer", "return model(graph, features) for every node, in node order"), \
            torch.no_grad():
        got = source.infer(model)
        want = model.encoder(data.features) if kind == "none" else model.node_model(
            data.graph, data.features)
    logits = got.logits if isinstance(got, ModelOutput) else got
    ctx.require(isinstance(logits, torch.Tensor) and logits.shape == want.shape
                and torch.allclose(logits, want, **TOLERANCE), "infer",
                "infer(model) does not give every node's output in node order",
                "return one row per dataset node, row i for node i")
    if callable(getattr(source, "inputs_of", None)):
        ids = torch.tensor([0, 5, 3])
        with ctx.rule("inputs_of", "return the input rows of the given node ids"):
            rows_of = dense(source.inputs_of(ids))
        ctx.require(torch.equal(rows_of, dense(data.features)[ids]), "inputs_of",
                    "inputs_of(ids) are not the features of ids", "index the features")


def check_task(ctx: Context) -> None:
    """Attributes, output_size, head, a loss over loss_rows honouring loss_norm, and
    evaluate's metrics (the monitored one included)."""
    task, data = ctx.build(), ctx.data
    attrs = "monitor (str), mode ('max'|'min'), tie_break (str or None), report (strs)"
    ok = (isinstance(task, Task) and isinstance(task.monitor, str) and task.mode in (
        "max", "min") and (task.tie_break is None or isinstance(task.tie_break, str))
        and all(isinstance(r, str) for r in task.report))
    ctx.require(ok, "task attributes", f"it lacks or mistypes one of {attrs}", f"set {attrs}")
    with ctx.rule("output_size", "return the model's output width, an int >= 1"):
        dim = task.output_size(data)
        head = task.head(data, dim) if callable(getattr(task, "head", None)) else None
    ctx.require(isinstance(dim, int) and dim >= 1 and (head is None or isinstance(
        head, nn.Module)), "output_size", f"output_size gave {dim!r}, head {type(head)}",
        "output_size returns an int >= 1; head returns an nn.Module or None")
    logits = torch.randn(data.num_nodes, dim, generator=torch.Generator().manual_seed(0),
                         requires_grad=True)
    out = ModelOutput(logits, logits, head)
    rows = data.train_mask.nonzero().squeeze(1)
    loss_fix = "compute the loss of batch.loss_rows only: their mean, or sum / loss_norm"

    def loss_of(norm: float | None) -> torch.Tensor:
        batch = Batch(graph=data.graph, inputs=data.features,
                      node_ids=torch.arange(data.num_nodes), labels=data.labels,
                      labeled=data.train_mask, loss_rows=rows, loss_norm=norm)
        torch.manual_seed(0)  # a sampled loss draws the same samples both times
        with ctx.rule("loss", loss_fix):
            return task.loss(out, batch)

    loss = loss_of(None)
    ctx.require(isinstance(loss, torch.Tensor) and loss.dim() == 0 and finite(loss)
                and loss.requires_grad, "loss", f"loss gave {loss!r:.80}",
                "return a finite 0-dim tensor computed from output.logits")
    loss.backward()
    outside = torch.ones(data.num_nodes, dtype=torch.bool)
    outside[rows] = False
    ctx.require(logits.grad is not None and finite(logits.grad) and not logits.grad[
        outside].any(), "loss", "its gradient reaches rows outside batch.loss_rows", loss_fix)
    scaled = loss_of(4.0 * rows.numel())
    ctx.require(math.isclose(float(scaled.detach()), float(loss.detach()) / 4.0,
                             rel_tol=1e-4, abs_tol=1e-6),
                "loss", "with loss_norm set it is not the rows' sum over loss_norm", loss_fix)
    with ctx.rule("evaluate", "return a dict of metric names to numbers"), torch.no_grad():
        metrics = task.evaluate(ModelOutput(logits.detach(), logits.detach(), head), data)
    ctx.require(isinstance(metrics, Mapping) and task.monitor in metrics, "evaluate",
                f"evaluate gave no '{task.monitor}' (its monitor)", "include the monitor")
    bad = [k for k, v in metrics.items() if not (isinstance(v, (int, float)) or (
        isinstance(v, torch.Tensor) and v.dim() == 0)) or not math.isfinite(float(v))]
    ctx.require(not bad, "evaluate", f"metric(s) {', '.join(bad)} are not finite numbers",
                "return floats or 0-dim tensors")
    if callable(getattr(task, "probabilities", None)):
        with ctx.rule("probabilities", "return softmax-like rows"), torch.no_grad():
            p = task.probabilities(ModelOutput(logits.detach(), logits.detach(), head))
        ctx.require(p.shape[0] == data.num_nodes and torch.allclose(
            p.sum(-1), torch.ones(data.num_nodes), atol=1e-4), "probabilities",
            "probabilities(output) rows do not sum to 1", "return one distribution per node")


def check_optimizer(ctx: Context) -> None:
    """Steps lower a quadratic; the state survives state_dict/load_state_dict."""
    param = nn.Parameter(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
    opt = ctx.build([param])
    start = float((param.detach() ** 2).sum())
    fix = "return a torch.optim.Optimizer over the params it is given"
    with ctx.rule("optimizer steps", fix):
        for _ in range(5):
            opt.zero_grad()
            (param ** 2).sum().backward()
            opt.step()
        state = opt.state_dict()
        again = ctx.build([nn.Parameter(param.detach().clone())])
        again.load_state_dict(state)
    end = float((param.detach() ** 2).sum())
    ctx.require(math.isfinite(end) and end < start, "optimizer steps",
                f"five steps on sum(p^2) went from {start:g} to {end:g}", fix)


def check_graph_builder(ctx: Context) -> None:
    """A graph over the data's nodes with finite float32 edge weights."""
    data = ctx.data
    graph = ctx.build(data)
    fix = "return a DGL graph over data's nodes with float32 edata['weight'], one per edge"
    ctx.require(graph.num_nodes() == data.num_nodes, "graph over the data",
                f"it has {graph.num_nodes()} nodes for {data.num_nodes}", fix)
    weight = graph.edata.get("weight")
    ctx.require(isinstance(weight, torch.Tensor) and weight.dtype == torch.float32
                and weight.shape == (graph.num_edges(),) and finite(weight),
                "edge weights", "edata['weight'] is missing, not float32 or not finite", fix)


def check_dataset(ctx: Context) -> None:
    """Shapes and types of GraphData; the same data on a second build."""
    data = ctx.build()
    n, fix = data.num_nodes, "see zoo.contracts.GraphData for each field's shape and type"
    masks = (data.train_mask, data.val_mask, data.test_mask)
    ok = (data.features.shape[0] == n and data.labels.dtype == torch.int64
          and all(m.dtype == torch.bool and m.shape == (n,) for m in masks)
          and bool(data.train_mask.any()) and int(data.labels.max()) < data.num_classes
          and (data.graph is None or data.graph.num_nodes() == n))
    ctx.require(ok, "dataset fields", f"the fields do not fit together ({data.describe()})", fix)
    again = ctx.build()
    same = torch.equal(dense(again.features), dense(data.features)) and torch.equal(
        again.labels, data.labels) and torch.equal(again.train_mask, data.train_mask)
    ctx.require(same, "deterministic", "two builds gave different data",
                "draw every random number from a generator seeded by the config")


def check_trainer(ctx: Context) -> None:
    """A one-seed run on the tiny graph finishes and writes its run folder."""
    from zoo.api import build
    from zoo.testing import tiny_config

    ctx.build()
    extra = getattr(ctx.comp.factory, "sample_experiment", None) or {}
    config = tiny_config(model={"name": "gcn", "hidden": 8}, trainer=ctx.section, **extra)
    out = ctx.folder / "run"
    fix = ("train through ctx.train and return the task's metrics; declare "
           "sample_experiment for sections it needs, sample_config for a quick run")
    with ctx.rule("fits the tiny graph", fix):
        exp = build(config, registry=ctx.registry)
        summary = exp.fit(seeds=1, out=out)
    monitor = exp.task.monitor
    value = summary["metrics"].get(monitor, {}).get("mean")
    ctx.require(value is not None and math.isfinite(value), "fits the tiny graph",
                f"the run reports {monitor} = {value}", fix)
    ctx.require((out / "metrics.jsonl").stat().st_size > 0, "fits the tiny graph",
                "the run wrote no records", "train through ctx.train / ctx.engine.fit")


def check_logger(ctx: Context) -> None:
    """start, log (a NaN included) and end, writing under the run folder."""
    logger = ctx.build()
    run = RunInfo(ctx.folder / "run", "conformance", {"dataset": {"name": "sbm"}})
    run.dir.mkdir()
    summary = {"seeds": [0], "metrics": {"test_accuracy": {"mean": 0.5, "std": 0.0,
                                                           "values": [0.5]}}}
    with ctx.rule("logs a run", "implement start(run), log(record), end(summary, status)"):
        logger.start(run)
        logger.log({"seed": 0, "phase": "train", "epoch": 1, "loss": 0.7, "val_loss": 0.8})
        logger.log({"seed": 0, "phase": "train", "epoch": 2, "loss": float("nan")})
        logger.end(summary, "finished")
    ctx.require(any(p.is_file() for p in run.dir.rglob("*")), "logs a run",
                "with its sample config it wrote nothing under run.dir",
                "write under run.dir unless the config says otherwise")


KIND_CHECKS: dict[str, Callable[[Context], None]] = {
    "dataset": check_dataset, "graph_builder": check_graph_builder,
    "encoder": check_encoder, "node_model": check_node_model,
    "regularizer": check_regularizer, "task": check_task,
    "batch_source": check_batch_source, "optimizer": check_optimizer,
    "trainer": check_trainer, "logger": check_logger,
}
