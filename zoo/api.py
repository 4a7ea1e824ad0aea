"""The Python API: ``zoo.build(config, **overrides)``, ``zoo.list(pattern, kind)``,
``zoo.show(name)`` and the :class:`Experiment` they return."""

from __future__ import annotations

import builtins
import time
from pathlib import Path
from typing import Any

import torch

from zoo.config import LoadedConfig, load_config, validate_config
from zoo.data import GraphData
from zoo.engine import (
    Classifier,
    Engine,
    Metrics,
    TrainContext,
    evaluate_full_graph,
    seed_everything,
)
from zoo.errors import ConfigError
from zoo.plugins import default_manager
from zoo.registry import Component, Registry
from zoo.run import Progress, RunWriter, default_run_dir, summarize


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
    found = reg.find(name)
    if not found:
        from zoo.schema import suggest

        names = sorted({c.name for c in reg.list()})
        raise ConfigError(f"no component called '{name}'{suggest(name, names)}; "
                          "`zoo list` shows them all")
    if len(found) > 1:
        kinds = ", ".join(c.kind for c in found)
        raise ConfigError(f"'{name}' names several components ({kinds}); pass a kind")
    return reg.get(found[0].kind, name)


def _override_list(overrides: dict[str, Any]) -> builtins.list[str]:
    """``trainer={"lr": 0.1}, **{"model.hidden": 8}`` -> dotted ``KEY=VALUE`` items."""
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
    keyword arguments (``trainer={"lr": 0.005}``, ``**{"model.hidden": 64}``). The
    whole config is validated here, before anything is built or trained.
    """
    loaded = load_config(config, [*(overrides or []), *_override_list(kw_overrides)])
    reg = registry or default_registry()
    return Experiment(loaded, validate_config(loaded, reg), reg)


class Experiment:
    """An assembled experiment: ``.data``, ``.graph``, ``.model``, ``.fit()``,
    ``.evaluate()``. Data and model are built on first use."""

    def __init__(self, loaded: LoadedConfig, config: dict[str, Any], registry: Registry):
        self.name = loaded.name
        self.config = config
        self.registry = registry
        self._data: GraphData | None = None
        self._graph: Any = None
        self._model: Classifier | None = None
        self.summary: dict[str, Any] | None = None

    # -- assembled parts ----------------------------------------------------------
    @property
    def data(self) -> GraphData:
        """The dataset (loaded once)."""
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
            if "weight" not in graph.edata:
                graph.edata["weight"] = torch.ones(graph.num_edges())
            self._graph = graph
        return self._graph

    @property
    def model(self) -> Classifier:
        """The classifier (the last one trained, or a fresh one before ``fit``)."""
        if self._model is None:
            self._model = self.build_model()
        return self._model

    def build_model(self) -> Classifier:
        """A freshly initialized classifier as the config describes it."""
        data = self.data
        in_dim, out_dim = data.num_features, data.num_classes
        encoder = node_model = None
        if "encoder" in self.config:
            enc_out = None if "model" in self.config else out_dim
            encoder = self.registry.build("encoder", self.config["encoder"], in_dim, enc_out)
            in_dim = int(getattr(encoder, "out_dim", in_dim))
        if "model" in self.config:
            node_model = self.registry.build("node_model", self.config["model"], in_dim,
                                             out_dim)
        return Classifier(encoder, node_model)

    def build_regularizers(self) -> builtins.list[torch.nn.Module]:
        """The configured regularizers, fresh."""
        return [self.registry.build("regularizer", r, path=f"regularizers[{i}]")
                for i, r in enumerate(self.config["regularizers"])]

    # -- running ------------------------------------------------------------------
    def fit(self, seeds: int | builtins.list[int] | None = None, out: str | Path | None = None,
            progress: bool = False) -> dict[str, Any]:
        """Train one model per seed and return the summary (also written to ``out``,
        if given). ``seeds=10`` means seeds 0..9; default: the config's ``seeds``."""
        seeds = seeds if seeds is not None else self.config["seeds"]
        seed_list = builtins.list(range(seeds)) if isinstance(seeds, int) else builtins.list(
            seeds)
        config = {**self.config, "seeds": len(seed_list)}
        start = time.perf_counter()
        # Data and graph first: a missing or corrupt dataset leaves no run folder behind.
        _ = self.graph
        writer = RunWriter(Path(out)) if out is not None else None
        display = Progress(enabled=progress)
        per_seed: builtins.list[Metrics] = []
        epoch_ms: builtins.list[float] = []
        try:
            if writer is not None:
                writer.write_config(config)
            display.line(self.data.describe())
            for seed in seed_list:
                seed_everything(seed)
                label = f"seed {seed}"
                engine = Engine(log=writer.log if writer else None, context={"seed": seed},
                                progress=lambda ph, d, t, m, lb=label: display.update(
                                    lb, ph, d, t, m))
                metrics = self._fit_seed(seed, engine)
                per_seed.append(metrics)
                epoch_ms.extend(engine.epoch_ms)
                display.line(f"{label}: test_accuracy {metrics.get('test_accuracy', 0):.4f}  "
                             f"val_accuracy {metrics.get('val_accuracy', 0):.4f}")
            summary = summarize(config, seed_list, per_seed, epoch_ms,
                                time.perf_counter() - start)
            if writer is not None:
                writer.write_summary(summary)
        finally:
            display.close()
            if writer is not None:
                writer.close()
        self.summary = summary
        return summary

    def _fit_seed(self, seed: int, engine: Engine) -> Metrics:
        def build_model() -> Classifier:
            self._model = self.build_model()
            return self._model

        ctx = TrainContext(data=self.data, graph=self.graph, seed=seed, config=self.config,
                           engine=engine, build_model=build_model,
                           build_regularizers=self.build_regularizers,
                           build=self.registry.build)
        trainer = self.registry.build("trainer", self.config["trainer"])
        return dict(trainer.fit(ctx))

    def evaluate(self) -> Metrics:
        """Accuracy of the current model on the train, validation and test nodes."""
        ctx = TrainContext(self.data, self.graph, 0, self.config, Engine(), self.build_model,
                           self.build_regularizers, self.registry.build)
        return evaluate_full_graph(self.model, ctx)


def default_out(name: str) -> Path:
    """The default run folder for a config called ``name``."""
    return default_run_dir(name)
