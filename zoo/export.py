"""``zoo export CONFIG --out train.py``: a standalone training script for a config.

After DGL-Go's ``export``: the script imports each component from its own module
(``from zoo_plugins.node_models.gcn import GCN``) and builds it with the config's
parameters written out as Python literals (those that differ from the component's
defaults; nested sections always, since a component receives them built). It reads no
config and uses no registry: a researcher reads it top to bottom and edits it. For the
``supervised`` trainer the training loop is written out (epochs, the shared step,
evaluation, early stopping, best weights, the baseline); any other trainer is built
with its parameters and run by its own ``fit`` on a hand-built ``zoo.TrainContext``.

Seeded by ``zoo.engine.seed_everything`` and building the parts in the order ``zoo
run`` does, the script draws the same random numbers: on the same machine and thread
count it gives ``zoo run``'s numbers seed for seed. It trains in one process (no
torchrun) and writes ``summary.json`` and the weights, not ``metrics.jsonl``. Export
itself uses the registry, only to validate the config and find each factory.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import shlex
import string
import sys
import textwrap
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.cli import Parser
from zoo.errors import ConfigError, UsageError
from zoo.export_templates import (
    ABOUT,
    HEADER,
    CONSTANTS,
    SECTION,
    COMMON,
    OUTPUTS_ARG,
    OUTPUTS_OF,
    SUPERVISED_BODY,
    ONE_SEED,
    BASELINE_SEED,
    TRAINER_BODY,
    MAIN,
)

LIMIT = 99  # columns a line may use (ruff's 100, less a closing comma or bracket)
SUPERVISED = ("zoo_plugins.trainers.supervised", "Supervised")
SUPERVISED_KEYS = {"name", "epochs", "patience", "optimizer", "batches", "baseline",
                   "eval_every"}
# Names the script defines or uses itself: an imported component never shadows them.
RESERVED = {"argparse", "json", "time", "Path", "torch", "CONFIG", "DEVICE", "RUNTIME",
            "SEEDS", "THREADS", "EPOCHS", "PATIENCE", "EVAL_EVERY", "section", "build_data",
            "build_model", "build_regularizers", "build_optimizer", "build_batches",
            "build_trainer", "evaluate", "train", "train_one_seed", "save_weights", "main",
            "data", "graph", "task", "model", "encoder", "node_model", "source", "params",
            "optimizer", "seed", "metrics", "batch", "out_dim", "epoch_ms", "args"}


# -- code as a tree, laid out to fit the line length -------------------------------------
@dataclass
class Code:
    """A piece of code, written as is."""

    text: str


@dataclass
class Call:
    """``func(*args, **kwargs)``."""

    func: str
    args: list[Any]
    kwargs: list[tuple[str, Any]] = dataclasses.field(default_factory=list)


@dataclass
class Items:
    """A list, tuple or dict display (``keys`` holds a dict's key nodes)."""

    items: list[Any]
    brackets: str = "[]"
    keys: list[Any] | None = None


def literal(value: Any) -> Any:
    """A plain config value (the resolved config's) as a node."""
    if isinstance(value, str):
        simple = value.isprintable() and '"' not in value and "\\" not in value
        return Code(f'"{value}"' if simple else repr(value))
    if isinstance(value, Mapping):
        return Items([literal(v) for v in value.values()], "{}",
                     [literal(k) for k in value])
    if isinstance(value, (list, tuple)):
        return Items([literal(v) for v in value], "()" if isinstance(value, tuple) else "[]")
    return Code(repr(value))


def _parts(node: Any) -> tuple[str, list[tuple[str, Any]], str]:
    if isinstance(node, Call):
        return (f"{node.func}(", [("", a) for a in node.args]
                + [(f"{k}=", v) for k, v in node.kwargs], ")")
    keys = node.keys or [None] * len(node.items)
    parts = [("", item) if key is None else (flat(key) + ": ", item)
             for key, item in zip(keys, node.items)]
    return node.brackets[0], parts, node.brackets[1]


def flat(node: Any) -> str:
    """``node`` on one line."""
    if isinstance(node, Code):
        return node.text
    opening, parts, closing = _parts(node)
    inner = ", ".join(prefix + flat(item) for prefix, item in parts)
    one = isinstance(node, Items) and node.brackets == "()" and len(parts) == 1
    return f"{opening}{inner}{',' if one else ''}{closing}"


def render(node: Any, column: int, indent: int) -> str:
    """``node`` starting at ``column`` of a line indented by ``indent``: on one line if
    it fits, else one argument (item) a line."""
    text = flat(node)
    if isinstance(node, Code) or column + len(text) <= LIMIT:
        return text
    opening, parts, closing = _parts(node)
    pad = " " * (indent + 4)
    lines = [f"{pad}{prefix}{render(item, indent + 4 + len(prefix), indent + 4)},"
             for prefix, item in parts]
    return "\n".join([opening, *lines, " " * indent + closing])


def statement(head: str, node: Any, indent: int = 4) -> str:
    """``head`` (``"model = "``) followed by ``node``, indented."""
    return " " * indent + head + render(node, indent + len(head), indent)


# -- imports ------------------------------------------------------------------------------
class Imports:
    """``from module import name`` lines, a name taken once (aliased on a clash)."""

    def __init__(self) -> None:
        self.taken: dict[str, tuple[str, str]] = {}  # alias -> (module, name)

    def add(self, module: str, name: str) -> str:
        for alias, key in self.taken.items():
            if key == (module, name):
                return alias
        alias, n = name, 2
        while alias in self.taken or (alias in RESERVED and module != "__script__"):
            alias, n = f"{name}_{n}", n + 1
        self.taken[alias] = (module, name)
        return alias

    def of(self, obj: Any, what: str) -> str:
        """The script's expression for ``obj`` (imported from its module)."""
        module, qualname = getattr(obj, "__module__", ""), getattr(obj, "__qualname__", "")
        found: Any = None
        if module and qualname and module != "__main__" and "<" not in qualname:
            try:
                found = importlib.import_module(module)
                for part in qualname.split("."):
                    found = getattr(found, part)
            except (ImportError, AttributeError):
                found = None
        if found is not obj:
            raise ConfigError(f"{what} cannot be exported: its factory "
                              f"{module or '?'}.{qualname or obj!r} cannot be imported by "
                              "name; register a module-level class or function")
        top, _, rest = qualname.partition(".")
        return self.add(module, top) + (f".{rest}" if rest else "")

    def lines(self) -> list[str]:
        by_module: dict[str, list[str]] = {}
        for alias, (module, name) in self.taken.items():
            by_module.setdefault(module, []).append(name if alias == name else
                                                    f"{name} as {alias}")
        lines = []
        for module in sorted(by_module):
            names = sorted(by_module[module])
            line = f"from {module} import {', '.join(names)}"
            if len(line) > LIMIT:
                line = f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")"
            lines.append(line)
        return lines


def split_annotated(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """``(base, metadata)`` of ``Annotated[base, *metadata]`` (``(tp, ())`` otherwise)."""
    if typing.get_origin(tp) is typing.Annotated:
        return typing.get_args(tp)[0], typing.get_args(tp)[1:]
    return tp, ()


def holds_section(tp: Any) -> bool:
    """Whether values of type hint ``tp`` hold a nested component or dataclass section
    (which the factory receives built, so the script always writes them)."""
    from zoo.schema import Kind

    base, meta = split_annotated(tp)
    if any(isinstance(m, Kind) for m in meta):
        return True
    if dataclasses.is_dataclass(base) and isinstance(base, type):
        return True
    return any(holds_section(a) for a in typing.get_args(base) if a is not Ellipsis)


# -- the script's parts -------------------------------------------------------------------
class Exporter:
    """Turns a validated experiment into the script's code."""

    def __init__(self, exp: Any, all_params: bool = False) -> None:
        self.exp, self.registry, self.config = exp, exp.registry, exp.config
        self.all_params = all_params
        self.imports = Imports()
        self.uses_section = False

    def factory(self, kind: str, name: str, path: str) -> tuple[str, Any]:
        comp = self.registry.get(kind, name, path)
        return self.imports.of(comp.factory, f"{path} ({kind} '{name}')"), comp

    def kwargs(self, params: Mapping[str, Any], section: Mapping[str, Any],
               path: str) -> list[tuple[str, Any]]:
        """The parameters worth writing: required ones, sections, non-default values."""
        from zoo.schema import coerce

        out = []
        for key, p in params.items():  # in the signature's order
            if key not in section:
                continue
            value = section[key]
            if value is None and p.default is None and not self.all_params:
                continue
            if not (self.all_params or p.required or holds_section(p.type)):
                try:
                    if value == coerce(p.default, p.type, key, self.registry.validate,
                                       p.default):
                        continue
                except ConfigError:
                    pass
            out.append((key, self.value(value, p.type, f"{path}.{key}")))
        return out

    def call(self, kind: str, section: Mapping[str, Any], inputs: list[str],
             path: str) -> Call:
        """The factory call building the component of ``section``."""
        func, comp = self.factory(kind, section["name"], path)
        return Call(func, [Code(i) for i in inputs], self.kwargs(comp.params, section, path))

    def value(self, value: Any, tp: Any, path: str) -> Any:
        """What the factory receives for ``value`` (as zoo.schema.materialize makes it)."""
        from zoo.introspect import dataclass_params
        from zoo.schema import Kind

        if value is None:
            return Code("None")
        base, meta = split_annotated(tp)
        kinds = [m.kind for m in meta if isinstance(m, Kind)]
        if kinds and isinstance(value, Mapping):
            self.uses_section = True
            func, comp = self.factory(kinds[0], value["name"], path)
            return Call("section", [literal(kinds[0]), literal(value["name"]), Code(func)],
                        self.kwargs(comp.params, value, path))
        origin = typing.get_origin(base)
        if origin in (typing.Union, types.UnionType):
            arms = [a for a in typing.get_args(base) if a is not type(None) and holds_section(a)]
            return self.value(value, arms[0], path) if arms else literal(value)
        if dataclasses.is_dataclass(base) and isinstance(base, type) and isinstance(
                value, Mapping):
            return Call(self.imports.of(base, path), [],
                        self.kwargs(dataclass_params(base), value, path))
        if origin in (list, tuple, typing.Sequence) and isinstance(value, (list, tuple)):
            args = typing.get_args(base)
            items = [self.value(v, args[0] if args else Any, f"{path}[{i}]")
                     for i, v in enumerate(value)]
            return Items(items, "()" if isinstance(value, tuple) else "[]")
        return literal(value)

    # -- functions of the script ----------------------------------------------------------
    def build_data(self) -> str:
        cfg = self.config
        lines = [statement("data = ", self.call("dataset", cfg["dataset"], [], "dataset"))]
        if "graph" in cfg:
            lines.append(statement("graph = ", self.call("graph_builder", cfg["graph"],
                                                         ["data"], "graph")))
        else:
            lines.append("    graph = data.graph  # the dataset's own graph")
        return "\n".join(lines)

    def build_model(self) -> tuple[str, str]:
        cfg = self.config
        lines, parts, in_dim = [], [], "data.num_features"
        if "encoder" in cfg:
            out = "None" if "model" in cfg else "out_dim"
            lines.append(statement("encoder = ", self.call("encoder", cfg["encoder"],
                                                           [in_dim, out], "encoder")))
            in_dim = "int(encoder.out_dim)"
            parts.append(cfg["encoder"]["name"])
        if "model" in cfg:
            lines.append(statement("node_model = ", self.call(
                "node_model", cfg["model"], [in_dim, "out_dim"], "model")))
            parts.append(cfg["model"]["name"])
        classifier = self.imports.add("zoo.model", "Classifier")
        lines.append(f"    model = {classifier}("
                     f"{'encoder' if 'encoder' in cfg else 'None'}, "
                     f"{'node_model' if 'model' in cfg else 'None'})")
        task = self.registry.get("task", cfg["task"]["name"]).factory
        if callable(getattr(task, "head", None)):
            lines.append("    model.head = task.head(data, out_dim)  # the task's own head")
        return "\n".join(lines), " then ".join(parts)

    def build_regularizers(self) -> str:
        from types import SimpleNamespace

        from zoo.engine import regularizer_names
        from zoo.registry import tag_component

        sections = self.config["regularizers"]
        if not sections:
            return "    return {}"
        tagged = []
        for s in sections:  # named as the engine names their terms: reg_<name>
            tag_component(obj := SimpleNamespace(), "regularizer",
                          self.registry.get("regularizer", s["name"]).name)
            tagged.append(obj)
        calls = [self.call("regularizer", s, [], f"regularizers[{i}]")
                 for i, s in enumerate(sections)]
        node = Items(calls, "{}", [literal(n) for n in regularizer_names(tagged)])
        return (statement("regularizers = ", node)
                + "\n    return {name: r.to(DEVICE) for name, r in regularizers.items()}")

    def supervised_parts(self) -> dict[str, str]:
        trainer = self.config["trainer"]
        opt = self.call("optimizer", trainer["optimizer"], ["params"], "trainer.optimizer")
        source = self.call("batch_source", trainer["batches"], [], "trainer.batches")
        for module, name in (("zoo.engine", "better"), ("zoo.engine", "seed_everything"),
                             ("zoo.engine", "to_floats"), ("zoo.engine", "training_step")):
            self.imports.add(module, name)
        factory = self.registry.get("batch_source", trainer["batches"]["name"]).factory
        # A graph-free model fed by a source that packs neighbours needs their outputs.
        outputs_of = "" if "model" in self.config or (
            isinstance(factory, type) and not hasattr(factory, "inputs_of")) else OUTPUTS_OF
        return {"epochs": repr(trainer["epochs"]), "patience": repr(trainer["patience"]),
                "eval_every": repr(trainer["eval_every"]),
                "optimizer": statement("return ", opt), "batches": statement("source = ", source),
                "outputs_of": outputs_of, "outputs_arg": OUTPUTS_ARG if outputs_of else "",
                "one_seed": BASELINE_SEED if trainer["baseline"] else ONE_SEED}

    def trainer_parts(self) -> dict[str, str]:
        trainer = self.config["trainer"]
        for name in ("Engine", "TrainContext", "seed_everything", "to_floats"):
            self.imports.add("zoo.engine", name)
        factory = self.registry.get("trainer", trainer["name"]).factory
        return {"trainer": trainer["name"], "module": factory.__module__,
                "build": statement("return ", self.call("trainer", trainer, [], "trainer"))}

    def script(self, command: str, script: str, run_args: str) -> str:
        """The whole script."""
        from zoo import __version__

        cfg = self.config
        trainer = self.registry.get("trainer", cfg["trainer"]["name"]).factory
        supervised = ((trainer.__module__, trainer.__qualname__) == SUPERVISED
                      and set(cfg["trainer"]) <= SUPERVISED_KEYS)
        parts = {"name": self.exp.name, "version": __version__, "script": script,
                 "which": "all the config's parameters" if self.all_params else
                 "the config's parameters that differ from the component's defaults",
                 "command": command, "run_args": run_args, "trainer": cfg["trainer"]["name"],
                 "seeds": repr(cfg["seeds"])}
        for module, name in (("zoo.run", "atomic_write"), ("zoo.run", "summarize"),
                             ("zoo.runtime", "Runtime")):
            self.imports.add(module, name)
        parts["data"] = self.build_data()
        parts["model"], parts["model_parts"] = self.build_model()
        parts["regularizers"] = self.build_regularizers()
        parts.update(self.supervised_parts() if supervised else self.trainer_parts())
        parts["task"] = render(self.call("task", cfg["task"], [], "task"), 11, 4)
        parts["task_name"] = flat(literal(cfg["task"]["name"]))
        device = cfg.get("device", "auto")
        parts["device"] = ('torch.device("cuda" if torch.cuda.is_available() else "cpu")'
                           if device == "auto" else f"torch.device({device!r})")
        threads = cfg.get("threads", "auto")
        parts["threads"] = (f"{threads}  # CPU threads (the config's threads)"
                            if isinstance(threads, int) else
                            "None  # torch's default (the config's threads: auto)")
        if self.uses_section:
            self.imports.add("zoo.schema", "ComponentSpec")
        body = string.Template(SUPERVISED_BODY if supervised else TRAINER_BODY)
        text = "\n\n\n".join(s for s in (
            string.Template(CONSTANTS).substitute(parts),
            SECTION if self.uses_section else "",
            string.Template(COMMON).substitute(parts),
            body.substitute(parts),
            string.Template(MAIN).substitute(parts)) if s)
        parts["about"] = "\n".join(textwrap.wrap(
            string.Template(ABOUT).substitute(parts), LIMIT, initial_indent="# ",
            subsequent_indent="# ", break_long_words=False, break_on_hyphens=False))
        header = string.Template(HEADER).substitute(parts)
        if cfg.get("description"):
            header = header.replace("#\n# Made", f"# {cfg['description']}\n#\n# Made", 1)
        header = "\n".join(wrap_comment(line) for line in header.splitlines())
        imports = "\n".join(["import argparse", "import json", "import time",
                             "from pathlib import Path", "", "import torch", "",
                             *self.imports.lines()])
        return f"{header}\n\n{imports}\n\n{text}\n"


def wrap_comment(line: str) -> str:
    """A comment line wrapped to the line length (other lines as they are)."""
    if not line.startswith("# ") or len(line) <= LIMIT:
        return line
    label = line.find(":  ")  # "# Made with:  zoo export ...": align under the command
    indent = "#" + " " * (label + 2) if 0 < label < 16 else "# "
    return "\n".join(textwrap.wrap(line, LIMIT, subsequent_indent=indent,
                                   break_long_words=False, break_on_hyphens=False))


def export_script(exp: Any, command: str, script: str = "train.py",
                  run_args: str | None = None, all_params: bool = False) -> str:
    """The standalone training script for the experiment ``exp`` (from ``zoo.build``).
    ``command`` is what the header says made it; ``run_args`` the ``zoo run`` arguments
    it matches (default: the config's name); ``all_params`` writes every parameter,
    defaults included."""
    return Exporter(exp, all_params).script(command, script, run_args or exp.name)


def parser() -> Parser:
    """The ``zoo export`` command line."""
    p = Parser(prog="zoo export", description="Write a standalone training script for a "
               "config: plain Python that builds each component from its module and "
               "trains it as `zoo run` does, with no config or registry (after DGL-Go's "
               "export).")
    p.add_argument("config", nargs="?",
                   help="a YAML file, or the name of a bundled config (gcn_cora)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides, e.g. trainer.epochs=50")
    p.add_argument("--out", type=Path, help="the script to write, e.g. train.py "
                   "(default: print it)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--all-params", action="store_true",
                   help="write every parameter, defaults included (default: only those "
                        "that differ from the component's defaults)")
    p.set_defaults(func=cmd_export)
    return p


def cmd_export(args: argparse.Namespace) -> int:
    """Write (or print) the script."""
    import zoo.api
    from zoo.run import atomic_write

    exp = zoo.api.build(args.config, args.overrides)
    out: Path | None = args.out
    if out is not None and out.is_dir():
        raise UsageError(f"--out '{out}' is a folder; give the script's file name, e.g. "
                         f"{out / 'train.py'}")
    if out is not None and out.exists() and not args.force:
        raise UsageError(f"'{out}' exists; pass --force to overwrite it, or choose another "
                         "--out")
    command = shlex.join(["zoo", "export", str(args.config), *args.overrides,
                          *(["--out", str(out)] if out is not None else [])])
    text = export_script(exp, command, out.name if out is not None else "train.py",
                         shlex.join([str(args.config), *args.overrides]), args.all_params)
    if out is None:
        sys.stdout.write(text)
        return 0
    atomic_write(out, text)
    print(f"wrote {out}; run it with: python {out} [--seeds N] [--out DIR]")
    return 0


# -- the script's text --------------------------------------------------------------------
