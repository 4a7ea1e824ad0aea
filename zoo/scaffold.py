"""``zoo new-plugin NAME [--kind KIND ...] [--out DIR]``: scaffold a plugin package.

The package holds a pyproject with the ``zoo.plugins`` entry point, a README, the module
with one small working component per kind asked for (default: a node model), a config
using them shipped as package data (``NAME/configs/NAME.yaml``), and tests built on
:mod:`zoo.testing` (the conformance checks and a tiny training run). It installs and
passes its tests as written (``tests/core/test_new_plugin.py`` proves it).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import keyword
import os
import re
import shutil
import tempfile
import textwrap
from pathlib import Path
from string import Template
from typing import Any

import yaml

from zoo.cli import Parser
from zoo.contracts import KINDS, a
from zoo.errors import UsageError
from zoo.scaffold_templates import (
    IMPORTS,
    MODULE_HEADER,
    PYPROJECT,
    README,
    REGISTER,
    TEMPLATES,
    TESTS,
    TYPING_NAMES,
    ZOO_NAMES,
)

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,29}$")
DEFAULT_KINDS = ("node_model",)
# The config's dataset when the plugin ships none: synthetic, no download, seconds.
DEFAULT_DATASET = {"name": "sbm", "num_nodes": 2000}


def parser() -> Parser:
    """The ``zoo new-plugin`` command line."""
    p = Parser(prog="zoo new-plugin", description="Scaffold a plugin package: pyproject with "
               "the zoo.plugins entry point, one working component per kind, a config and "
               "tests using zoo.testing. It installs and passes its tests as written.")
    p.add_argument("name", help="the plugin's name: lowercase letters, digits, _ and - "
                   "(the module is the name with - as _)")
    p.add_argument("--kind", action="append", choices=list(KINDS), metavar="KIND",
                   help=f"a kind of component to write, repeatable ({', '.join(KINDS)}; "
                        "default: node_model)")
    p.add_argument("--out", type=Path, help="the package folder to create (default: "
                   "./zoo-NAME); it must not exist")
    p.set_defaults(func=cmd_new_plugin)
    return p


def cmd_new_plugin(args: argparse.Namespace) -> int:
    """Write the package and say what to do next."""
    kinds = tuple(dict.fromkeys(args.kind or DEFAULT_KINDS))
    out = args.out if args.out is not None else Path(f"zoo-{args.name}")
    files = scaffold(args.name, kinds, out)
    config_file = next(f for f in files if f.suffix == ".yaml")
    print(f"wrote {out}/: {', '.join(str(f) for f in files)}")
    print(f"next: pip install -e {out} && pytest {out} && zoo run {out / config_file}")
    return 0


def module_name(name: str) -> str:
    """The import name of plugin ``name``; a UsageError if ``name`` cannot be one."""
    if not NAME_PATTERN.match(name):
        raise UsageError(f"'{name}' is not a valid plugin name; use 1-30 lowercase letters, "
                         "digits, _ and -, starting with a letter (e.g. my_gat)")
    module = name.replace("-", "_")
    if keyword.iskeyword(module):
        raise UsageError(f"'{name}' is a Python keyword; choose another plugin name")
    spec = importlib.util.find_spec(module)
    if spec is not None:
        where = f" ({spec.origin})" if spec.origin else ""
        raise UsageError(f"a module '{module}' can already be imported here{where}, which "
                         "the plugin would shadow or be shadowed by; choose another name")
    return module


def component_names(module: str, kinds: tuple[str, ...]) -> dict[str, str]:
    """The registered name of each kind's component: the module's name for a single
    kind, ``<module>_<kind>`` for several; a UsageError if one is taken."""
    from zoo.api import default_registry

    names = {k: module if len(kinds) == 1 else f"{module}_{k}" for k in kinds}
    registry = default_registry()
    for kind, name in names.items():
        taken = registry.find_exact(kind, name)
        if taken is not None:
            raise UsageError(f"{kind} '{name}' is already provided by {taken.origin}; "
                             "choose another plugin name")
    return names


def scaffold(name: str, kinds: tuple[str, ...], out: Path) -> list[Path]:
    """Write the package for plugin ``name`` with one component per kind into ``out``
    (created whole, or not at all); returns the files, relative to ``out``."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise UsageError(f"unknown kind {unknown[0] if unknown else '(none)'}; kinds are "
                         f"{', '.join(KINDS)}")
    module = module_name(name)
    if out.exists() or out.is_symlink():
        raise UsageError(f"--out {out} already exists; give a new folder (zoo new-plugin "
                         "never overwrites)")
    names = component_names(module, kinds)
    files = render(name, module, names)
    # Written into a hidden sibling, then renamed into place: a failure leaves nothing.
    staging: Path | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
        for path, text in files.items():
            (staging / path).parent.mkdir(parents=True, exist_ok=True)
            (staging / path).write_text(text, encoding="utf-8")
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 -> a normal folder's mode
        os.rename(staging, out)
    except OSError as e:
        if out.exists():
            raise UsageError(f"--out {out} already exists; give a new folder") from None
        raise UsageError(f"cannot write the package to {out}: {e.strerror or e}; choose "
                         "another --out") from None
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return list(files)


def _umask() -> int:
    """The process's umask (read by setting it, then restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def render(name: str, module: str, names: dict[str, str]) -> dict[Path, str]:
    """Every file of the package, by path relative to its folder."""
    summary = ", ".join(a(kind.replace("_", " ")) for kind in names)
    common = {"name": name, "module": module, "dist": f"zoo-{name}", "summary": summary}
    rows = "\n".join(f"| {kind} | `{n}` | {first_doc_line(kind)} |" for kind, n in names.items())
    readme = Template(README).substitute(common, rows=rows, first=next(iter(names.values())))
    return {
        Path("pyproject.toml"): Template(PYPROJECT).substitute(common),
        Path("README.md"): readme,
        Path(module) / "configs" / f"{module}.yaml": config_text(module, names, summary),
        Path(module) / "__init__.py": module_text(module, names, summary),
        Path("tests") / f"test_{module}.py": tests_text(module, names),
    }


def first_doc_line(kind: str) -> str:
    """The summary line of a kind's template component."""
    body = TEMPLATES[kind].code.split('"""')[1]
    return body.strip().splitlines()[0]


def module_text(module: str, names: dict[str, str], summary: str) -> str:
    """The plugin module: imports, the components, the ``zoo_register`` hook."""
    needed = set().union(*(TEMPLATES[k].imports for k in names))
    lines = ["from __future__ import annotations", ""]
    needed.add("importlib")  # the zoo_configs hook
    stdlib = [IMPORTS[k] for k in ("csv", "importlib", "Path") if k in needed]
    typing = [n for n in TYPING_NAMES if n in needed]
    if typing:
        stdlib.append(f"from typing import {', '.join(typing)}")
    third = [IMPORTS[k] for k in ("dgl", "torch", "F") if k in needed]
    third += [IMPORTS[k] for k in ("GraphConv", "nn") if k in needed]
    zoo_names = [n for n in ZOO_NAMES if n in needed]
    first = ["import zoo"] + ([f"from zoo import {', '.join(zoo_names)}"] if zoo_names else [])
    for group in (stdlib, third, first):
        if group:
            lines += [*group, ""]
    about = textwrap.fill(f"{module}: a zoo plugin ({summary}), written by `zoo new-plugin`.",
                          88, subsequent_indent="")
    parts = [Template(MODULE_HEADER).substitute(about=about, module=module),
             "\n".join(lines)]
    parts += [Template(TEMPLATES[k].code).substitute(name=n)
              for k, n in names.items()]
    calls = "\n".join(f'    registry.add("{k}", "{n}", {TEMPLATES[k].suffix})'
                      for k, n in names.items())
    return "\n".join(parts) + Template(REGISTER).substitute(calls=calls)


def config(names: dict[str, str]) -> dict[str, Any]:
    """The shipped config: every component of the plugin in its place, the zoo's
    built-ins (sbm, gcn, supervised) where the plugin has none."""
    cfg: dict[str, Any] = {"dataset": {"name": names["dataset"]} if "dataset" in names
                           else dict(DEFAULT_DATASET)}
    if "graph_builder" in names:
        cfg["graph"] = {"name": names["graph_builder"]}
    if "encoder" in names:
        cfg["encoder"] = {"name": names["encoder"]}
    if "node_model" in names or "encoder" not in names:
        cfg["model"] = {"name": names.get("node_model", "gcn")}
    if "task" in names:
        cfg["task"] = {"name": names["task"]}
    if "regularizer" in names:
        cfg["regularizers"] = [{"name": names["regularizer"]}]
    if "logger" in names:
        cfg["loggers"] = [{"name": names["logger"]}]
    trainer: dict[str, Any] = {"name": names.get("trainer", "supervised"), "epochs": 100}
    if "optimizer" in names:
        trainer["optimizer"] = {"name": names["optimizer"], "lr": 0.01}
    if "batch_source" in names:
        trainer["batches"] = {"name": names["batch_source"]}
    cfg["trainer"] = trainer
    return cfg


def config_text(module: str, names: dict[str, str], summary: str) -> str:
    """The config file, with the header a recipe carries."""
    header = (f"# {module}: its components in one experiment, written by `zoo new-plugin`.\n"
              + textwrap.fill(f"Components: {summary}.", 88, initial_indent="# ",
                              subsequent_indent="# ") + "\n"
              f"# Run: zoo run {module}   (or the file; with the package installed)\n"
              "# A starting point: once tuned, write here what it reproduces, the number it\n"
              "# reaches and where the reference number comes from.\n")
    body = yaml.safe_dump(config(names), sort_keys=False, default_flow_style=None)
    return header + body


def tests_text(module: str, names: dict[str, str]) -> str:
    """The package's tests: conformance, the config, a tiny run, the unit tests."""
    if "dataset" in names:
        sample = ast.literal_eval(TEMPLATES["dataset"].code.split(".sample_config = ")[1])
        tiny, testing = json.dumps({"name": names["dataset"], **sample}), "check_plugin"
    else:
        tiny, testing = "TINY_GRAPH", "TINY_GRAPH, check_plugin"
    units = [Template(TEMPLATES[k].unit_test).substitute(name=n)
             for k, n in names.items() if TEMPLATES[k].unit_test]
    imports = "\nimport torch\n" if any("torch." in u for u in units) else ""
    expected = "\n".join(f'    "{key}",' for key in sorted(f"{k}:{n}" for k, n in names.items()))
    text = Template(TESTS).substitute(module=module, expected=expected, tiny=tiny,
                                      testing=testing, imports=imports)
    return "\n".join([text, *units])
