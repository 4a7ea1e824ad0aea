"""The Python API: ``zoo.build(config, **overrides)``, ``zoo.list(pattern, kind)``,
``zoo.show(name)`` and the :class:`Experiment` they return."""

from __future__ import annotations

import builtins
import dataclasses
import time
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from zoo.config import LoadedConfig, load_config, validate_config
from zoo.contracts import GraphData, Metrics, ModelOutput, RunInfo, describe_value
from zoo.engine import Engine, TrainContext, seed_everything, to_floats
from zoo.errors import ConfigError, ContractError, DivergedError, ZooError
from zoo.model import Classifier
from zoo.plugins import default_manager
from zoo.registry import Component, Registry, component_label, component_name
from zoo.safe_yaml import excerpt
from zoo.checkpoint import Checkpointing, RunState, SeedCheckpoints
from zoo.progress import Progress
from zoo.provenance import provenance
from zoo.run import RunWriter, default_run_dir, summarize
from zoo.runtime import Runtime
from zoo.tracking import RecordStream, build_loggers
from zoo.introspect import dataclass_params
from zoo.schema import Kind, suggest

PROBE_IN_DIM, PROBE_OUT_DIM = 8, 3  # sizes a model is test-built with before data loads


def default_registry() -> Registry:
    """The registry of every component the installed plugins provide."""
    return default_manager().registry


def list(pattern: str = "*", kind: str | None = None) -> builtins.list[Component]:  # noqa: A001
    """Components whose name matches the wildcard ``pattern``, optionally of one ``kind``."""
    return default_registry().list(pattern, kind)


def show(name: str, kind: str | None = None) -> Component:
    """The component called ``name`` (of ``kind`` when several kinds share the name)."""
    reg = default_registry()
    if kind is not None:
        return reg.get(kind, name)
    found = reg.find(name.rpartition(":")[2])
    if not found:
        names = sorted({c.name for c in reg.list()})
        raise ConfigError(f"no component called '{name}'{suggest(name, names)}; "
                          "`zoo list` shows them all")
    if len(found) > 1:
        kinds = ", ".join(c.kind for c in found)
        raise ConfigError(f"'{name}' names several components ({kinds}); pass a kind")
    comp = found[0]
    return reg.get(comp.kind, name) if not comp.clash else comp


def _override_list(overrides: dict[str, Any]) -> builtins.list[str]:
    """``trainer={"epochs": 5}, **{"model.hidden": 8}`` -> dotted ``KEY=VALUE`` items."""
    import json

    items: builtins.list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        else:
            items.append(f"{prefix}={json.dumps(value)}")

    for key, value in overrides.items():
        walk(key, value)
    return items


def build(config: str | Path | dict[str, Any], overrides: builtins.list[str] | None = None,
          *, registry: Registry | None = None, **kw_overrides: Any) -> Experiment:
    """Assemble an experiment from a config (a path, a bundled config name or a dict).

    Overrides come as ``KEY=VALUE`` strings (``overrides=["model.hidden=64"]``) or as
    keyword arguments (``trainer={"epochs": 50}``, ``**{"model.hidden": 64}``). The
    whole config is validated and every component is constructed once here, before any
    data loads: a config that cannot run fails now, with nothing written.
    """
    loaded = load_config(config, [*(overrides or []), *_override_list(kw_overrides)])
    reg = registry or default_registry()
    exp = Experiment(loaded, validate_config(loaded, reg), reg)
    exp.check()
    return exp


def nested_sections(value: Any, tp: Any, path: str) -> Iterator[tuple[str, dict, str]]:
    """Every nested component section ``(kind, section, path)`` inside a validated
    parameter value of type ``tp`` (sections in dataclass sections included)."""
    if value is None:
        return
    base, meta = (typing.get_args(tp)[0], typing.get_args(tp)[1:]) if (
        typing.get_origin(tp) is typing.Annotated) else (tp, ())
    kinds = [m for m in meta if isinstance(m, Kind)]
    if kinds and isinstance(value, Mapping):
        yield kinds[0].kind, dict(value), path
    elif dataclasses.is_dataclass(base) and isinstance(value, Mapping):
        params = dataclass_params(base)
        for key, item in value.items():
            yield from nested_sections(item, params[key].type, f"{path}.{key}")
    elif typing.get_origin(base) in (typing.Union, types.UnionType):
        for arg in typing.get_args(base):
            if arg is not type(None):
                yield from nested_sections(value, arg, path)
    elif typing.get_origin(base) in (builtins.list, tuple) and isinstance(value, (builtins.list,
                                                                               tuple)):
        args = typing.get_args(base)
        for i, item in enumerate(value):
            yield from nested_sections(item, args[0] if args else Any, f"{path}[{i}]")


class Experiment:
    """An assembled experiment: ``.data``, ``.graph``, ``.model``, ``.fit()``,
    ``.evaluate()``. Data and model are built on first use."""

    def __init__(self, loaded: LoadedConfig, config: dict[str, Any], registry: Registry):
        self.name = loaded.name
        self.config = config
        self.registry = registry
        self.runtime = Runtime.from_config(config.get("device", "auto"),
                                           config.get("threads", "auto"))
        self.task = self._probe("task", lambda: registry.build("task", config["task"]))
        self._data: GraphData | None = None
        self._graph: Any = None
        self._model: Classifier | None = None
        self.summary: dict[str, Any] | None = None
        self.seed: int | None = None  # the seed of a model loaded from a run folder
        self._search_index: Any = None

    # -- checks before anything runs ---------------------------------------------------
    @staticmethod
    def _probe(label: str, build: Callable[[], Any]) -> Any:
        """Build a component to check its config; its failure is an error naming it."""
        try:
            return build()
        except ZooError:
            raise
        except (ValueError, TypeError, AssertionError, KeyError) as e:
            raise ConfigError(f"{label} cannot be built with this config: "
                              f"{excerpt(e, 300)}") from None
        except Exception as e:
            raise ContractError(f"{label} failed while being built: {type(e).__name__}: "
                                f"{excerpt(e, 300)}") from None

    def check(self) -> None:
        """Construct every component once (the model with probe sizes) and check that
        they fit together: a batch source's graph input against the model, the number
        of sampled blocks against the node model's layers."""
        reg, cfg = self.registry, self.config
        model = self._probe("the model", lambda: self.build_classifier(PROBE_IN_DIM,
                                                                        PROBE_OUT_DIM))
        regularizers = [self._probe(f"regularizers[{i}]", lambda s=section, i=i: reg.build(
            "regularizer", s, path=f"regularizers[{i}]"))
            for i, section in enumerate(cfg["regularizers"])]
        trainer = self._probe("trainer", lambda: reg.build("trainer", cfg["trainer"]))
        for i, section in enumerate(cfg.get("loggers", [])):
            self._probe(f"loggers[{i}]", lambda s=section, i=i: reg.build(
                "logger", s, path=f"loggers[{i}]"))
        check_setup = getattr(trainer, "check_setup", None)
        if callable(check_setup):
            check_setup(self.task, regularizers)
        self.check_processes(self.runtime.world_size)
        comp = reg.get("trainer", cfg["trainer"]["name"])
        for key, value in cfg["trainer"].items():
            if key == "name":
                continue
            for kind, section, path in nested_sections(value, comp.params[key].type,
                                                       f"trainer.{key}"):
                if kind == "batch_source":
                    source = self._probe(path, lambda s=section, p=path: reg.build(
                        "batch_source", s, path=p))
                    check_batches_fit_model(source, model, path)
                elif kind == "optimizer":
                    self._probe(path, lambda s=section, p=path: reg.build(
                        "optimizer", s, [torch.nn.Parameter(torch.zeros(1))], path=p))

    def check_processes(self, processes: int) -> None:
        """A ConfigError when ``processes`` > 1 and the trainer trains in one process
        only (it lacks ``supports_distributed``)."""
        name = self.config["trainer"]["name"]
        factory = self.registry.get("trainer", name).factory
        if processes > 1 and not getattr(factory, "supports_distributed", False):
            raise ConfigError(f"trainer '{name}' trains in one process; run it without "
                              f"torchrun/--nproc (this run has {processes} processes)")

    # -- assembled parts ----------------------------------------------------------
    @property
    def data(self) -> GraphData:
        """The dataset, as loaded (once), on the CPU."""
        if self._data is None:
            self._data = self.registry.build("dataset", self.config["dataset"])
        return self._data

    @property
    def graph(self) -> Any:
        """The graph models and regularizers use: the ``graph`` builder's, or the
        dataset's own; edge weights in ``edata["weight"]`` (ones if the graph had none)."""
        if self._graph is None:
            if "graph" in self.config:
                graph = self.registry.build("graph_builder", self.config["graph"], self.data)
            else:
                graph = self.data.graph
            if graph is not None and "weight" not in graph.edata:
                graph.edata["weight"] = torch.ones(graph.num_edges())
            self._graph = graph
        return self._graph

    @property
    def model(self) -> Classifier:
        """The model (the last one trained, or a fresh one before ``fit``)."""
        if self._model is None:
            self._model = self.build_model()
        return self._model

    def build_classifier(self, in_dim: int, out_dim: int) -> Classifier:
        """The config's encoder and/or node model for ``in_dim`` input columns and
        ``out_dim`` outputs, without the task's head and without loading data (what
        :meth:`build_model` builds on; a program that knows the sizes, such as a
        DistDGL trainer, calls it directly)."""
        encoder = node_model = None
        if "encoder" in self.config:
            enc_out = None if "model" in self.config else out_dim
            encoder = self.registry.build("encoder", self.config["encoder"], in_dim, enc_out)
            in_dim = int(encoder.out_dim)
        if "model" in self.config:
            node_model = self.registry.build("node_model", self.config["model"], in_dim,
                                             out_dim, path="model")
        return Classifier(encoder, node_model)

    def build_model(self) -> Classifier:
        """A freshly initialized model as the config describes it, with the task's head
        (if it has one), on the run's device."""
        data = self.data
        out_dim = int(self.task.output_size(data))
        model = self.build_classifier(data.num_features, out_dim)
        make_head = getattr(self.task, "head", None)
        if callable(make_head):
            head = make_head(data, out_dim)
            if head is not None and not isinstance(head, torch.nn.Module):
                raise ContractError(f"{component_label(self.task)} returned "
                                    f"{describe_value(head)} from head(); it must return "
                                    "an nn.Module or None")
            model.head = head
        return model.to(self.runtime.device)

    def build_regularizers(self) -> builtins.list[torch.nn.Module]:
        """The configured regularizers, fresh, on the run's device."""
        return [self.registry.build("regularizer", r, path=f"regularizers[{i}]").to(
            self.runtime.device) for i, r in enumerate(self.config["regularizers"])]

    def _context(self, seed: int, engine: Engine) -> TrainContext:
        def build_model() -> Classifier:
            self._model = self.build_model()
            return self._model

        return TrainContext(data=self.runtime.to(self.data), graph=self.runtime.to(self.graph),
                            seed=seed, runtime=self.runtime, task=self.task, engine=engine,
                            build_model=build_model,
                            build_regularizers=self.build_regularizers)

    # -- running ------------------------------------------------------------------
    def fit(self, seeds: int | builtins.list[int] | None = None, out: str | Path | None = None,
            progress: bool = False, *, resume: bool = False) -> dict[str, Any]:
        """Train one model per seed and return the summary (also written to ``out``,
        if given, by the main process). ``seeds=10`` means seeds 0..9; default: the
        config's. ``progress`` shows where the run is on stderr (see
        :mod:`zoo.progress`). With ``out``, the run saves checkpoints as it trains (see
        :mod:`zoo.checkpoint`); ``resume=True`` continues the interrupted run in ``out``
        (the seeds are those it started with)."""
        run_state = None
        if resume:
            if out is None:
                raise ConfigError("resume needs the run folder: fit(out=RUN_DIR, resume=True)")
            run_state = RunState.read(Path(out))
            seeds = run_state.seeds
        resuming = resume
        seeds = seeds if seeds is not None else self.config["seeds"]
        if isinstance(seeds, int) and (isinstance(seeds, bool) or seeds < 1):
            raise ConfigError(f"seeds: expected a whole number >= 1, got {seeds!r}")
        seed_list = builtins.list(range(seeds)) if isinstance(seeds, int) else builtins.list(
            seeds)
        if not seed_list:
            raise ConfigError("seeds: give at least one seed")
        config = {**self.config, "seeds": len(seed_list)}
        start = time.perf_counter()
        origin = provenance()
        # Data and graph first: a missing or corrupt dataset leaves no run folder behind.
        _ = self.graph
        writer = (RunWriter(Path(out), resume=resume)
                  if out is not None and self.runtime.is_main else None)
        # Checkpoints need the run folder, and one process (ranks would each need theirs).
        if writer is not None and not self.runtime.distributed and run_state is None:
            run_state = RunState(writer.dir)
            run_state.data.update(seeds=seed_list, name=self.name,
                                  started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        # Loggers (tracking) and plugins' run hooks get the records of a run that has a
        # folder, in its main process.
        stream = (RecordStream(build_loggers(self.config.get("loggers", []), self.registry),
                               hooks=self.registry.run_hooks)
                  if writer is not None else RecordStream([]))

        def log(record: dict[str, Any]) -> None:
            assert writer is not None
            writer.log(record)
            stream.log(record)

        display = Progress(enabled=progress and self.runtime.is_main, monitor=self.task.monitor,
                           seeds=len(seed_list))
        policy = Checkpointing.from_config(self.config.get("checkpoint"))
        per_seed: builtins.list[Metrics] = []
        epoch_ms: builtins.list[float] = []
        seed_wall: builtins.list[float] = []
        summary: dict[str, Any] | None = None
        files: builtins.list[str] = []
        try:
            if writer is not None and not resume:
                writer.write_config(config)
            if run_state is not None:
                if resume:
                    run_state.data.setdefault("resumed", []).append(
                        time.strftime("%Y-%m-%dT%H:%M:%S%z"))
                run_state.write()
            if writer is not None:
                stream.start(RunInfo(writer.dir, self.name, config, resuming))
            display.line(self.data.describe())
            self.runtime.threads.begin()
            for index, seed in enumerate(seed_list):
                label = f"seed {seed}"
                done = run_state.finished(seed) if run_state is not None else None
                if done is not None:  # resumed: this seed finished before
                    per_seed.append(done["metrics"])
                    epoch_ms.extend(done["epoch_ms"])
                    seed_wall.append(done["wall_s"])
                    files = done.get("files", files)
                    display.line(f"{label}: finished before the interruption")
                    continue
                seed_started = time.perf_counter()
                checkpoints = None
                if run_state is not None and writer is not None:
                    checkpoints = SeedCheckpoints.open(run_state.seed_folder(seed), policy,
                                                       resume)
                    if resume:
                        writer.keep_records(run_state.kept_records(checkpoints.records))
                        resume = False  # later seeds start afresh
                seed_everything(seed)
                engine = Engine(log=log if writer else None, context={"seed": seed},
                                progress=display.update, tick=self.runtime.threads.tick,
                                reduce=self.runtime.reduce_metrics, checkpoints=checkpoints)
                display.start_seed(index, seed, engine)
                metrics = self._fit_seed(seed, engine)
                seed_wall.append(time.perf_counter() - seed_started)
                if writer is not None:
                    writer.save_weights(seed, self.model.state_dict(), config, metrics)
                    if not files:
                        files = self._write_files(writer.dir)
                per_seed.append(metrics)
                epoch_ms.extend(engine.epoch_ms)
                if run_state is not None and checkpoints is not None:
                    run_state.finish(seed, {"metrics": metrics, "epoch_ms": engine.epoch_ms,
                                            "records": engine.records,
                                            "wall_s": seed_wall[-1], "files": files})
                    checkpoints.remove()
                shown = [k for k in self.task.report if k in metrics]
                display.line(f"{label}: " + "  ".join(f"{k} {metrics[k]:.4f}" for k in shown))
            if resume and writer is not None and run_state is not None:
                # Every seed had finished: drop what followed the last one's records.
                writer.keep_records(run_state.kept_records(0))
            task = {"name": self.config["task"]["name"], "monitor": self.task.monitor,
                    "mode": self.task.mode, "report": builtins.list(self.task.report)}
            summary = summarize(config, seed_list, per_seed, epoch_ms,
                                time.perf_counter() - start, task, seed_wall)
            if files:
                summary["files"] = files
            if self.runtime.distributed:
                summary["processes"] = self.runtime.world_size
            summary["provenance"] = origin
            if run_state is not None and run_state.data.get("resumed"):
                origin["started"] = run_state.data.get("started", origin["started"])
                origin["resumed"] = run_state.data["resumed"]
            if writer is not None:
                curves = draw_curves(writer.dir)
                if curves:
                    summary["curves"] = curves
                writer.write_summary(summary)
                if run_state is not None:
                    run_state.remove()
            stream.end(summary, "finished")
        except DivergedError:
            # Resuming would diverge again at the same epoch: keep the records, not the
            # checkpoints (the folder is a failed run, not an interrupted one).
            if run_state is not None:
                run_state.remove()
            stream.end(None, "failed")
            raise
        except KeyboardInterrupt:
            stream.end(None, "interrupted")
            raise
        except BaseException:
            stream.end(None, "failed")
            raise
        finally:
            self.runtime.threads.end()
            display.close()
            if writer is not None:
                if summary is None and writer.records == 0 and not resuming and (
                        run_state is None or not run_state.data["finished"]):
                    if run_state is not None:
                        run_state.remove()
                    writer.discard()
                else:
                    writer.close()
        self.summary = summary
        return summary

    def _write_files(self, folder: Path) -> builtins.list[str]:
        """What the task draws of the trained model (``Task.write_files``), as names
        relative to the run folder."""
        write = getattr(self.task, "write_files", None)
        if not callable(write):
            return []
        paths = write(self.infer(), self.runtime.to(self.data), folder) or []
        return [str(Path(p).relative_to(folder)) if Path(p).is_relative_to(folder) else str(p)
                for p in paths]

    def _fit_seed(self, seed: int, engine: Engine) -> Metrics:
        trainer = self.registry.build("trainer", self.config["trainer"])
        metrics = trainer.fit(self._context(seed, engine))
        if not isinstance(metrics, Mapping) or not all(
                isinstance(v, (int, float, torch.Tensor)) for v in metrics.values()):
            raise ContractError(f"{component_label(trainer)} returned {describe_value(metrics)} "
                                "from fit(); it must return a dict of metric names to numbers")
        return to_floats(metrics)

    def _source(self, ctx: TrainContext, batches: dict[str, Any] | None) -> Any:
        """A batch source bound to ``ctx`` (default: plain item batches for a graph-free
        model, the whole graph otherwise)."""
        default = {"name": "items" if self.model.graph_free else "full_graph"}
        source = self.registry.build("batch_source", batches or default)
        source.bind(ctx.data, ctx.graph, self.runtime)
        return source

    def evaluate(self, batches: dict[str, Any] | None = None) -> Metrics:
        """The task's metrics for the current model over every node, computed through
        the batch source ``batches`` (default: the whole graph, or item batches for a
        graph-free model)."""
        ctx = self._context(0, Engine())
        return ctx.evaluate(self.model, self._source(ctx, batches))

    @torch.no_grad()
    def infer(self, batches: dict[str, Any] | None = None) -> ModelOutput:
        """The current model's output for every node (eval mode), through ``batches``."""
        ctx = self._context(0, Engine())
        source = self._source(ctx, batches)
        self.model.eval()
        return source.infer(self.model)

    def predict(self, features: Any = None, graph: Any = None,
                batches: dict[str, Any] | None = None) -> Any:
        """The current model's predictions (:class:`zoo.predict.Predictions`: ids, class
        probabilities and classes when the task classifies, embeddings) for the
        dataset's nodes, or for new nodes' ``features`` and their ``graph`` (a DGL
        graph, an edge-list file or ``(src, dst)`` arrays)."""
        from zoo.predict import predict

        return predict(self, features, graph, batches)

    def embed(self) -> tuple[builtins.list[str], Any]:
        """``(ids, vectors)``: every item's stable id and the vector an index stores for it
        (the task's ``embed(output)``; by default the model's last hidden layer), as a
        float32 NumPy array."""
        from zoo.retrieval import item_ids, output_vectors

        return item_ids(self.data), output_vectors(self.task, self.infer())

    def search(self, *, image: str | Path | None = None, id: str | None = None,  # noqa: A002
               text: str | None = None, k: int = 10, index: str = "auto",
               ) -> builtins.list[tuple[str, float]]:
        """The ``k`` items nearest (cosine) to one query: an image file, an item's id, or a
        label name (its row of the head's class weights: text-to-image search)."""
        from zoo.retrieval import search

        return search(self, image=image, item=id, text=text, k=k, index=index)


def draw_curves(folder: Path) -> builtins.list[str]:
    """The run's training curves as PNGs in its folder (:mod:`zoo.plots`), by name; a
    figure that cannot be drawn is a warning, never a failed run."""
    import sys

    from zoo.plots import write_curves

    try:
        return [Path(p).name for p in write_curves(folder)]
    except Exception as e:  # a plotting library's failure must not lose a trained run
        print(f"zoo: warning: the training curves could not be drawn: "
              f"{type(e).__name__}: {e}", file=sys.stderr)
        return []


def check_batches_fit_model(source: Any, model: Classifier, path: str) -> None:
    """A ConfigError when a batch source cannot feed this model."""
    graph_input = getattr(source, "graph_input", "whole")
    node_model = model.node_model
    if graph_input == "none" and node_model is not None:
        raise ConfigError(f"{path}: batch source '{component_name(source)}' gives the model no "
                          f"graph, but {component_label(node_model)} needs one; use an "
                          "encoder-only model, or a batch source such as full_graph or "
                          "neighbor_sampler")
    if graph_input == "blocks":
        if node_model is None or not getattr(node_model, "supports_blocks", False):
            what = (component_label(node_model) if node_model is not None
                    else "an encoder-only model")
            raise ConfigError(f"{path}: batch source '{component_name(source)}' feeds sampled "
                              f"blocks, which {what} cannot run on; use a node model that "
                              "supports blocks (built-in: gcn, sage, gat, gin) or another "
                              "batch source")
        layers = getattr(node_model, "num_layers", None)
        blocks = getattr(source, "num_blocks", None)
        if layers is not None and blocks is not None and layers != blocks:
            raise ConfigError(f"{path}.fanouts: {blocks} fanout(s) for "
                              f"{component_label(node_model)}, which has {layers} layers; "
                              "give one fanout per layer")



def default_out(name: str) -> Path:
    """The default run folder for a config called ``name``."""
    return default_run_dir(name)
