"""Conformance checks: does a registered component honour its kind's contract?

Like scikit-learn's ``check_estimator``, one call runs every rule on a component:

- it has a summary line and every parameter is documented (``zoo show`` prints both);
- its defaults validate, and so does its *sample config*;
- it builds and does what its kind promises (:mod:`zoo.contracts`), on the tiny graph
  (:func:`tiny_graph_data`): encoders and node models run forward and backward and give
  finite outputs of the right shape, regularizers a finite 0-dim term with a gradient,
  tasks a loss over ``loss_rows`` and the metrics they monitor, batch sources batches a
  model can train on, graph builders a weighted graph over the data's nodes, optimizers
  a step that lowers a loss, trainers a finished run, loggers files under the run folder.
  See :mod:`zoo.testing.kinds` for each kind's rules.

A component may declare, as class (or function) attributes:

``sample_config``
    a config section without ``name`` that the checks build it with (default: its
    defaults). A component with required parameters needs one to be run at all; a
    dataset needs one to be built (datasets may download: without it only the schema
    is checked), and it should then need no network and build in about a second.
``sample_input_shape``
    the shape of one input row for an encoder that does not read feature vectors, e.g.
    ``(3, 16, 16)`` for an image encoder (its ``in_dim`` is the first entry).
``sample_experiment``
    for a trainer: top-level config sections it needs besides the trainer, e.g.
    ``{"regularizers": [{"name": "agreement"}]}``.

A broken rule is an ``AssertionError`` naming the component, the rule and the fix.
"""

from __future__ import annotations

import re
import sys
import tempfile
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoo.contracts import GraphData
from zoo.registry import Component, Registry

TINY_GRAPH_WEIGHT_SEED = 0


@dataclass
class Report:
    """What :func:`check_component` found: the rules that held, the rules it could not
    run (and why), and the broken ones (each a sentence naming the rule and the fix)."""

    kind: str
    name: str
    origin: str
    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.kind} '{self.name}' ({self.origin})"

    def message(self) -> str:
        """Every broken rule, one per line."""
        return "\n".join(f"{self.label} {failure}" for failure in self.failures)


class RuleBroken(Exception):
    """Raised inside a check: ``rule`` does not hold because of ``problem``; ``fix``."""

    def __init__(self, rule: str, problem: str, fix: str) -> None:
        super().__init__(f"breaks '{rule}': {problem}. Fix: {fix}")
        self.rule = rule


@dataclass
class Context:
    """One component under check: its section, the registry, the tiny graph and a
    scratch folder; ``passed``/``skipped`` collect what the rules found."""

    comp: Component
    section: dict[str, Any]
    registry: Registry
    data: GraphData
    folder: Path
    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @contextmanager
    def rule(self, rule: str, fix: str) -> Iterator[None]:
        """Run the block as ``rule``: an exception it raises breaks the rule."""
        try:
            yield
        except RuleBroken:
            raise
        except Exception as e:
            raise RuleBroken(rule, raised(e, self.comp), fix) from e
        if rule not in self.passed:
            self.passed.append(rule)

    def require(self, ok: bool, rule: str, problem: str, fix: str) -> None:
        """Break ``rule`` with ``problem`` unless ``ok``."""
        if not ok:
            raise RuleBroken(rule, problem, fix)
        if rule not in self.passed:
            self.passed.append(rule)

    def build(self, *inputs: Any, section: dict[str, Any] | None = None) -> Any:
        """The component, built by the registry from its section and ``inputs``."""
        with self.rule("builds", "make the factory accept its sample config (or defaults) "
                                 "and return what its kind must return (zoo.contracts)"):
            return self.registry.build(self.comp.kind, section or self.section, *inputs)


def raised(e: BaseException, comp: Component) -> str:
    """``it raised X: message (file.py:line)``, the line in the component's own code
    when the traceback passes through it."""
    frames = traceback.extract_tb(e.__traceback__)
    module = sys.modules.get(getattr(comp.factory, "__module__", ""), None)
    home = Path(getattr(module, "__file__", "") or ".").parent
    own = [f for f in frames if Path(f.filename).is_relative_to(home)] if module else []
    where = (own or frames)[-1] if frames else None
    at = f" ({Path(where.filename).name}:{where.lineno})" if where else ""
    text = (str(e).strip().splitlines() or [""])[0][:300]
    return f"it raised {type(e).__name__}: {text}{at}"


def finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t.to_dense() if t.is_sparse else t).all())


def dense(x: torch.Tensor) -> torch.Tensor:
    return x.to_dense() if x.is_sparse else x


def tiny_graph_data() -> GraphData:
    """The tiny graph (:data:`zoo.testing.TINY_GRAPH`: 90 nodes, 3 communities, 8 dense
    features), built by the zoo's ``sbm`` dataset, with uneven positive edge weights in
    ``graph.edata["weight"]``; the same on every call."""
    from zoo.api import default_registry
    from zoo.testing import TINY_GRAPH

    data = default_registry().build("dataset", dict(TINY_GRAPH))
    gen = torch.Generator().manual_seed(TINY_GRAPH_WEIGHT_SEED)
    data.graph.edata["weight"] = 0.5 + torch.rand(data.graph.num_edges(), generator=gen)
    data.name = "tiny_graph"
    return data


def sample_config(comp: Component) -> Any:
    """The component's declared ``sample_config`` (None if it declares none)."""
    return getattr(comp.factory, "sample_config", None)


def _schema_rules(comp: Component, ref: str, registry: Registry, report: Report) -> bool:
    """The rules read from the component's definition; whether its config can be built."""
    if comp.summary.strip():
        report.passed.append("summary line")
    else:
        report.failures.append("breaks 'summary line': its docstring has no first line. Fix: "
                               "open the docstring with one line that says what it is "
                               "(`zoo list` shows it)")
    undocumented = [p.name for p in comp.params.values() if not p.doc.strip()]
    if undocumented:
        report.failures.append(
            f"breaks 'documented parameters': {', '.join(map(repr, undocumented))} "
            "undocumented. Fix: describe each in an `Args:` section of the docstring (`    "
            f"{undocumented[0]}: what it does.`); `zoo show {comp.name}` prints them")
    else:
        report.passed.append("documented parameters")
    buildable = True
    required = [p.name for p in comp.params.values() if p.required]
    if not required:
        try:
            registry.validate(comp.kind, {"name": ref}, comp.kind)
            report.passed.append("defaults validate")
        except Exception as e:  # a ConfigError, or a bug in a nested section's schema
            buildable = False
            report.failures.append(f"breaks 'defaults validate': {e}. Fix: give every "
                                   "parameter a default its type and range accept")
    sample = sample_config(comp)
    if sample is not None:
        if not isinstance(sample, Mapping) or "name" in sample:
            report.failures.append(f"breaks 'sample config': sample_config is {sample!r}. "
                                   "Fix: make it a mapping of parameters, without 'name'")
            return False
        try:
            registry.validate(comp.kind, {"name": ref, **sample}, f"{comp.kind}.sample_config")
            report.passed.append("sample config validates")
        except Exception as e:
            report.failures.append(f"breaks 'sample config validates': {e}. Fix: correct "
                                   "its sample_config (a config section without 'name')")
            return False
    elif required:
        report.skipped.append(f"run: it has required parameter(s) {', '.join(required)} and "
                              "no sample_config, so only its schema was checked (declare "
                              "sample_config = {...} to have it run)")
        return False
    elif comp.kind == "dataset":
        report.skipped.append("build: a dataset may download, so without a sample_config "
                              "only its schema was checked (declare an offline "
                              "sample_config to have it built)")
        return False
    return buildable


def check_component(kind: str, name: str, registry: Registry | None = None) -> Report:
    """Run every conformance rule on the ``kind`` component ``name`` (or
    ``plugin:name``); raise ``AssertionError`` listing the broken ones, else return the
    :class:`Report` (``report.skipped`` says which rules could not run, and why)."""
    from zoo.api import default_registry
    from zoo.testing.kinds import KIND_CHECKS

    registry = registry or default_registry()
    comp = registry.get(kind, name)
    report = Report(kind, comp.name, comp.origin)
    if _schema_rules(comp, name, registry, report):
        section = {"name": name, **(sample_config(comp) or {})}
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory(prefix="zoo-conformance-") as folder:
            ctx = Context(comp, section, registry, tiny_graph_data(), Path(folder))
            try:
                KIND_CHECKS[kind](ctx)
                report.passed.extend(ctx.passed)
            except RuleBroken as e:
                report.passed.extend(ctx.passed)
                report.failures.append(str(e))
            report.skipped.extend(ctx.skipped)
    if report.failures:
        raise AssertionError(report.message())
    return report


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def plugin_components(name: str, registry: Registry) -> list[tuple[Component, str]]:
    """Every component a plugin (entry point name) or distribution ``name`` registered,
    with the name it is reachable by (``plugin:name`` where another holds the name)."""
    wanted = _normalized(name)
    found = []
    for holder in registry.list():
        for comp in (holder, *holder.candidates):
            if comp.plugin == name or _normalized(comp.distribution) == wanted:
                found.append((comp, comp.name if comp is holder else comp.qualified_name))
    return found


def check_plugin(name: str, registry: Registry | None = None) -> dict[str, Report]:
    """Run :func:`check_component` on every component of the plugin or distribution
    ``name`` (``"zoo"``: the built-ins); raise ``AssertionError`` listing every broken
    rule of every component, and the plugin's load errors (with the default registry).
    Returns the reports by ``kind:name``."""
    from zoo.plugins import default_manager

    failures: list[str] = []
    if registry is None:
        manager = default_manager(warn=False)
        registry = manager.registry
        infos = [p for p in manager.plugins
                 if p.name == name or _normalized(p.distribution) == _normalized(name)]
        for info in infos:
            if info.status != "loaded" or info.error:
                failures.append(f"plugin '{info.name}' ({info.distribution} {info.version}) "
                                f"did not load cleanly: {info.error}")
            failures += [f"plugin '{info.name}' had a component refused: {why}"
                         for why in info.refused]
    components = plugin_components(name, registry)
    if not components and not failures:
        plugins = sorted({c.plugin for c in registry.list()} | {
            c.distribution for c in registry.list() if c.distribution})
        raise AssertionError(f"no plugin or distribution '{name}' registered any component; "
                             f"known: {', '.join(plugins)} (is the package installed, with "
                             "a zoo.plugins entry point?)")
    reports: dict[str, Report] = {}
    for comp, ref in components:
        try:
            reports[f"{comp.kind}:{ref}"] = check_component(comp.kind, ref, registry)
        except AssertionError as e:
            failures.append(str(e))
    if failures:
        raise AssertionError(f"{len(failures)} conformance problem(s) in '{name}':\n"
                             + "\n".join(failures))
    return reports


__all__ = ["Report", "RuleBroken", "check_component", "check_plugin", "plugin_components",
           "tiny_graph_data"]
