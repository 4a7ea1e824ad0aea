"""The ``zoo`` command line: run, validate, list, show, plugins, configs, graph build, embed,
search, and the commands plugins add (``zoo_register_commands``, :mod:`zoo.hookspec`).

Overrides (``KEY=VALUE``) may stand anywhere after the command. Exit codes: 0 success,
2 config or usage error (one line on stderr, after the command's usage for a malformed
command line; no traceback), 1 runtime failure (a diverged run too), 130 a run stopped by
Ctrl-C and 143 one stopped by SIGTERM (records flushed, resumable with ``--resume``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

os.environ.setdefault("DGLBACKEND", "pytorch")

from zoo.errors import ConfigError, PluginError, UsageError, ZooError  # noqa: E402
from zoo.schema import suggest  # noqa: E402


class Parser(argparse.ArgumentParser):
    """argparse with the zoo's error line: the command's usage, then ``zoo: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"zoo: error: {message}", file=sys.stderr)
        sys.exit(2)


def _config_args(p: argparse.ArgumentParser) -> None:
    # Optional here so that a missing config gets the zoo's own message, not argparse's
    # (which would call the optional overrides required too).
    p.add_argument("config", nargs="?",
                   help="a YAML file, or the name of a bundled config (gcn_cora)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides anywhere on the line, e.g. model.hidden=64; "
                        "KEY+=VALUE appends to a list, ~KEY removes")


def _run_parser() -> Parser:
    p = Parser(prog="zoo run", description="Train the experiment a config describes.")
    _config_args(p)
    p.add_argument("--seeds", type=int, help="train seeds 0..N-1 (default: the config's)")
    p.add_argument("--out", type=Path, help="run folder (default runs/<config>-<time>)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue an interrupted run in its folder (no config, overrides, "
                        "--seeds or --out with it)")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train with N processes on this machine (data parallel, launched "
                        "with torchrun; see the README for several machines)")
    return p


def _validate_parser() -> Parser:
    p = Parser(prog="zoo validate", description="Check a config and build every component "
               "once; print the resolved config.")
    _config_args(p)
    return p


def _list_parser() -> Parser:
    p = Parser(prog="zoo list", description="List components, optionally of a kind or "
               "matching a wildcard pattern.")
    p.add_argument("what", nargs="?", help="a kind (encoder, ...) or a wildcard pattern")
    p.add_argument("pattern", nargs="?", help="a wildcard pattern when a kind is given")
    p.add_argument("--json", action="store_true")
    return p


def _show_parser() -> Parser:
    p = Parser(prog="zoo show", description="A component's schema, defaults and docs.")
    p.add_argument("name", help="a component name, or plugin:name")
    p.add_argument("--kind", help="disambiguate when several kinds share the name")
    p.add_argument("--json", action="store_true")
    return p


def _plugins_parser() -> Parser:
    p = Parser(prog="zoo plugins", description="Plugins, their components and load errors.")
    p.add_argument("--json", action="store_true")
    return p


def _graph_parser() -> Parser:
    p = Parser(prog="zoo graph build", description="Build a config's graph and save it.")
    _config_args(p)
    p.add_argument("--out", type=Path, required=True,
                   help="output file: .bin (DGL binary) or .tsv (weighted edge list)")
    return p


def _embed_parser() -> Parser:
    p = Parser(prog="zoo embed", description="Write every item's embedding (embeddings.npy) "
               "and id (embedding_ids.json) from a run's trained model.")
    p.add_argument("run_dir", type=Path, help="a folder `zoo run` wrote")
    p.add_argument("--seed", type=int, help="whose weights (default: the lowest seed saved)")
    p.add_argument("--out", type=Path, help="output folder (default: the run folder)")
    return p


def _search_parser() -> Parser:
    p = Parser(prog="zoo search", description="The items nearest a query in a run's "
               "embedding space (cosine similarity).")
    p.add_argument("run_dir", type=Path, help="a folder `zoo run` wrote")
    query = p.add_mutually_exclusive_group()
    query.add_argument("--image", type=Path, help="an image file to search by")
    query.add_argument("--id", help="an item's id (`zoo embed` lists them)")
    query.add_argument("--text", help="a label name: search by its classifier weights")
    p.add_argument("-k", type=int, default=10, help="how many results (default 10)")
    p.add_argument("--seed", type=int, help="whose weights (default: the lowest seed saved)")
    p.add_argument("--index", choices=("auto", "exact", "faiss"), default="auto",
                   help="exact search, faiss HNSW, or auto (exact up to 100,000 items)")
    p.add_argument("--json", action="store_true")
    return p


def _configs_parser() -> Parser:
    p = Parser(prog="zoo configs", description="Every config `zoo run NAME` finds: bundled "
               "ones and those plugins ship (as plugin:name where a name is taken), with "
               "the first line of each one's header.")
    p.add_argument("--json", action="store_true")
    return p


COMMANDS = {
    "run": (_run_parser, "train the experiment a config describes"),
    "validate": (_validate_parser, "check a config against the component schemas"),
    "list": (_list_parser, "list components (optionally of a kind or a pattern)"),
    "show": (_show_parser, "a component's schema, defaults and docs"),
    "plugins": (_plugins_parser, "list plugins, their components and load errors"),
    "graph": (_graph_parser, "graph tools: zoo graph build CONFIG --out FILE"),
    "embed": (_embed_parser, "write a run's item embeddings and ids"),
    "search": (_search_parser, "nearest items to an image, an id or a label"),
    "configs": (_configs_parser, "list the configs `zoo run NAME` finds, with their origin"),
    # Commands in their own module: "module:function" returns the command's parser
    # (a zoo.cli.Parser), which names its handler with set_defaults(func=handler);
    # the module is imported only when its command runs.
    "predict": ("zoo.predict:predict_parser", "write a run's predictions (CSV)"),
    "evaluate": ("zoo.predict:evaluate_parser", "re-compute a run's metrics from its model"),
    "sweep": ("zoo.sweep:parser", "run a grid of overrides and tabulate it"),
    "compare": ("zoo.compare:parser", "runs side by side: config differences, metrics"),
    "report": ("zoo.report:parser", "one self-contained HTML page for runs"),
    "export": ("zoo.export:parser", "write a standalone training script for a config"),
    "new-plugin": ("zoo.scaffold:parser", "scaffold a plugin package"),
}


def _resolve(ref: str) -> Any:
    """``"module:name"`` -> the object (the module imported on use)."""
    import importlib

    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _plugin_commands() -> dict[str, Any]:
    """The commands plugins add (zoo.plugins.PluginCommand by name), loading plugins."""
    from zoo.plugins import default_manager

    return default_manager().commands


def _plugin_parser(command: Any) -> argparse.ArgumentParser:
    """A plugin command's parser, from its factory; a factory that fails is the plugin's
    error, reported like a plugin that fails to load."""
    who = f"command '{command.name}' of plugin '{command.plugin}'"
    try:
        parser = command.parser()
    except Exception as e:
        raise PluginError(f"{who} failed to build its parser: {type(e).__name__}: {e}; "
                          "report it to the plugin's authors") from e
    if not isinstance(parser, argparse.ArgumentParser):
        raise PluginError(f"{who} built {type(parser).__name__!r}, not a parser; its parser "
                          "function must return a zoo.cli.Parser")
    return parser


def _top_help() -> str:
    lines = ["usage: zoo COMMAND [ARGS]", "",
             "A plugin-based model zoo for GNNs and neural structured learning.", "",
             "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    try:
        added = _plugin_commands()
    except ZooError as e:  # ZOO_STRICT_PLUGINS and a broken plugin: help still helps
        lines += ["", f"commands added by plugins: not listed ({e})"]
    else:
        if added:
            lines += ["", "commands added by plugins:"]
            lines += [f"  {c.name:<10} {c.help} (plugin '{c.plugin}')" for c in added.values()]
    lines += ["", "`zoo COMMAND --help` describes a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_help(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        from zoo import __version__

        print(f"zoo {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    plugin_command = None
    if command not in COMMANDS:  # a plugin's command, perhaps: load the plugins
        try:
            added = _plugin_commands()
            plugin_command = added.get(command)
        except ZooError as e:
            print(f"zoo: error: {e}", file=sys.stderr)
            return e.exit_code
        if plugin_command is None:
            known = [*COMMANDS, *added]
            print("usage: zoo COMMAND [ARGS]", file=sys.stderr)
            print(f"zoo: error: unknown command '{command}'{suggest(command, known)}; "
                  f"commands are {', '.join(known)}", file=sys.stderr)
            return 2
    if command == "graph":
        if not rest or rest[0] != "build":
            print("usage: zoo graph build CONFIG [KEY=VALUE ...] --out FILE", file=sys.stderr)
            print("zoo: error: the graph command has one subcommand, build", file=sys.stderr)
            return 2
        rest = rest[1:]
    try:
        if plugin_command is not None:
            parser = _plugin_parser(plugin_command)
        else:
            make_parser = COMMANDS[command][0]
            parser = _resolve(make_parser)() if isinstance(make_parser, str) else make_parser()
    except ZooError as e:
        print(f"zoo: error: {e}", file=sys.stderr)
        return e.exit_code
    try:
        args = parser.parse_intermixed_args(rest)
        if "config" in vars(args) and args.config is None and not getattr(args, "resume",
                                                                            None):
            raise UsageError("give a config: a YAML file or the name of a bundled config "
                             "(e.g. gcn_cora)")
        # A module's or a plugin's parser names its handler with ``set_defaults(func=...)``.
        handler = getattr(args, "func", None) or (
            globals()[f"cmd_{command}"] if plugin_command is None else None)
        if handler is None:
            raise PluginError(f"command '{command}' of plugin '{plugin_command.plugin}' "
                              "names no handler; its parser must call "
                              "set_defaults(func=HANDLER)")
        return int(handler(args) or 0)
    except UsageError as e:
        parser.print_usage(sys.stderr)
        print(f"zoo: error: {e}", file=sys.stderr)
        return e.exit_code
    except ZooError as e:
        print(f"zoo: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as stop:
        print("zoo: interrupted", file=sys.stderr)
        return interrupted_code(stop)
    except BrokenPipeError:  # `zoo list | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def launch_processes(args: argparse.Namespace, exp: Any, out: Path) -> int:
    """``zoo run`` again in ``args.nproc`` processes under torchrun on this machine."""
    import subprocess

    from zoo.threads import usable_cores

    exp.check_processes(args.nproc)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={args.nproc}", "-m", "zoo", "run", str(args.config),
               *args.overrides, "--out", str(out)]
    command += ["--seeds", str(args.seeds)] if args.seeds is not None else []
    command += ["--quiet"] if args.quiet else []
    env = dict(os.environ)
    # The cores shared out between the processes (torchrun would give each one thread).
    env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // args.nproc)))
    child = subprocess.Popen(command, env=env)
    # SIGTERM goes on to torchrun, which stops its ranks with it; the default action
    # would end this process alone and leave them training.
    with forward_sigterm(child) as forwarded:
        try:
            code = child.wait()
        except KeyboardInterrupt:  # Ctrl-C reached torchrun and its ranks: they stop and
            child.wait()           # the main one says so
            return EXIT_INTERRUPTED
    # torchrun ends with 1 when a signal stopped it; the run's code is SIGTERM's.
    return EXIT_TERMINATED if forwarded else code


def cmd_run(args: argparse.Namespace) -> int:
    import zoo.api
    from zoo.run import check_new_run_dir, default_run_dir, remove_if_empty
    from zoo.runtime import launched_world_size

    if args.nproc is not None:
        if args.nproc < 1:
            raise UsageError(f"--nproc must be a whole number >= 1, got {args.nproc}")
        if launched_world_size() > 1:
            raise UsageError("--nproc starts torchrun itself; under torchrun leave it out")
    if args.resume is not None:
        return resume_run(args)
    exp = zoo.api.build(args.config, args.overrides)
    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be a whole number >= 1, got {args.seeds}")
    # Only the main process writes the run (the other ranks of torchrun only name it).
    main_process = exp.runtime.is_main
    if args.out is not None and main_process:
        check_new_run_dir(args.out)  # now, not after the data has loaded
    # The default folder is made now, atomically: runs started in the same second get
    # their own; it goes again if the run fails before writing anything into it.
    reserved = None if args.out is not None else default_run_dir(exp.name,
                                                                 create=main_process)
    out = args.out or reserved
    try:
        if args.nproc is not None and args.nproc > 1:
            return launch_processes(args, exp, out)
        if exp.runtime.distributed:
            return run_rank(args, exp, out)
        try:
            with sigterm_stops_run():
                summary = exp.fit(seeds=args.seeds, out=out, progress=not args.quiet)
        except KeyboardInterrupt as stop:
            return interrupted(out, stop)
    finally:
        if reserved is not None and main_process:
            remove_if_empty(reserved)
    print_summary(summary, out)
    return 0


# Exit codes of a stopped run: 128 + the signal's number, the shell's convention (what
# `timeout`, container runtimes and schedulers expect of a process that SIGINT or
# SIGTERM stopped), though the run ends by returning, with its records flushed.
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + 2, 128 + 15


class Terminated(KeyboardInterrupt):
    """SIGTERM while ``zoo run`` trains: the run stops the way Ctrl-C stops it."""


def interrupted_code(stop: BaseException | None) -> int:
    """The exit code of a run that ``stop`` ended: 143 for SIGTERM, 130 for Ctrl-C."""
    return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED


@contextlib.contextmanager
def sigterm_stops_run() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt),
    so that the run stops as Ctrl-C stops it: records flushed, checkpoint kept, loggers
    told 'interrupted'. The handler before is restored after the block."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return

    def stop(signum: int, frame: Any) -> None:
        # Once: a second SIGTERM (torchrun forwards the one its process group got), or
        # one arriving while Ctrl-C's clean-up runs, must not cut the clean-up short.
        if not stopping and not isinstance(sys.exc_info()[1], KeyboardInterrupt):
            stopping.append(signum)
            raise Terminated()

    stopping: list[int] = []
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def forward_sigterm(child: Any) -> Iterator[list[int]]:
    """While the block runs, SIGTERM is passed on to the ``child`` process; the list the
    block gets holds the signals passed on."""
    forwarded: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield forwarded
        return

    def forward(signum: int, frame: Any) -> None:
        forwarded.append(signum)
        child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        yield forwarded
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def interrupted(out: Path, stop: BaseException | None = None) -> int:
    """A run stopped by Ctrl-C or SIGTERM: say how to go on, if the run left a checkpoint
    (exit code 130, or 143 for SIGTERM)."""
    how = (f"; continue it with `zoo run --resume {out}`"
           if (out / "checkpoints" / "run.json").is_file() else "")
    print(f"zoo: interrupted{how}", file=sys.stderr)
    return interrupted_code(stop)


def resume_run(args: argparse.Namespace) -> int:
    """``zoo run --resume RUN_DIR``: the interrupted run, continued in its own folder."""
    import zoo.api
    from zoo.checkpoint import RunState

    given = [flag for flag, value in (("a config", args.config), ("overrides", args.overrides),
                                      ("--seeds", args.seeds), ("--out", args.out),
                                      ("--nproc", args.nproc)) if value]
    if given:
        raise UsageError(f"--resume continues a run as it was configured; leave out "
                         f"{', '.join(given)}")
    run = args.resume
    if not run.is_dir():
        raise ConfigError(f"cannot resume '{run}': no such folder; give the folder of an "
                          "interrupted `zoo run`")
    if (run / "summary.json").exists():
        raise ConfigError(f"cannot resume '{run}': it finished (it has summary.json); give "
                          "the folder of an interrupted `zoo run`")
    state = RunState.read(run)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"cannot resume '{run}': its config.yaml is missing")
    exp = zoo.api.build(run / "config.yaml")
    exp.name = str(state.data.get("name") or run.name)
    try:
        with sigterm_stops_run():
            summary = exp.fit(out=run, progress=not args.quiet, resume=True)
    except KeyboardInterrupt as stop:
        return interrupted(run, stop)
    print_summary(summary, run)
    return 0


def run_rank(args: argparse.Namespace, exp: Any, out: Path) -> NoReturn:
    """``zoo run`` in one process of several (torchrun): train, wait for the others,
    leave the group, and exit at once. Exiting the ordinary way can abort in a C++
    destructor of the process group's threads ("terminate called without an active
    exception"), which torchrun reports as a failed run."""
    from zoo.runtime import leave_process_group

    try:
        with sigterm_stops_run():
            summary = exp.fit(seeds=args.seeds, out=out, progress=not args.quiet)
            exp.runtime.barrier()
    except KeyboardInterrupt as stop:
        # Ctrl-C, or SIGTERM (torchrun passes on the one it gets, to every rank): leave
        # the group and exit at once, as a finished rank does, and leave torchrun's
        # shutdown to torchrun; only the main process says how to go on.
        leave_process_group()
        code = interrupted(out, stop) if exp.runtime.is_main else interrupted_code(stop)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    except BaseException:
        leave_process_group()
        raise
    leave_process_group()
    if exp.runtime.is_main:
        print_summary(summary, out)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def print_summary(summary: dict[str, Any], out: Path) -> None:
    """The task's reported metrics (mean ± std) and the timing, after a run."""
    # The task's reported metrics, and the trainer's metrics of the same kind
    # (baseline_test_accuracy, agreement_accuracy...).
    report = summary.get("task", {}).get("report", [])
    suffixes = tuple(r.rpartition("_")[2] for r in report)
    lines = [f"{k}: {v['mean']:.4f} ± {v['std']:.4f} over {len(v['values'])} seed(s)"
             for k, v in summary["metrics"].items() if k in report or k.endswith(suffixes)]
    t = summary["timing"]
    print("\n".join(lines))
    print(f"epoch median {t['epoch_ms_median']:.2f} ms, wall {t['wall_s']:.1f} s; "
          f"run saved to {out}")


def cmd_configs(args: argparse.Namespace) -> int:
    from zoo.config import named_configs

    configs = named_configs()
    if args.json:
        print(json.dumps([c.to_dict() for c in configs], indent=2))
        return 0
    width = max((len(c.name) for c in configs), default=4)
    origin = max((len(c.origin) for c in configs), default=7)
    for c in configs:
        print(f"{c.name:<{width}}  {c.origin:<{origin}}  {c.description}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    import zoo.api
    from omegaconf import OmegaConf

    exp = zoo.api.build(args.config, args.overrides)
    print(OmegaConf.to_yaml(OmegaConf.create(exp.config)), end="")
    print(f"zoo: config '{args.config}' is valid", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    import zoo.api
    from zoo.contracts import KINDS

    kind, pattern = None, "*"
    if args.what in KINDS:
        kind, pattern = args.what, args.pattern or "*"
    elif args.what is not None:
        if args.pattern is not None:
            raise ConfigError(f"unknown kind '{args.what}'{suggest(args.what, KINDS)}; "
                              f"kinds are {', '.join(KINDS)}")
        pattern = args.what
    comps = zoo.api.list(pattern, kind)
    if args.json:
        print(json.dumps([c.to_dict() for c in comps], indent=2, default=str))
        return 0
    width = max((len(c.name) for c in comps), default=4)
    current = None
    for c in comps:
        if c.kind != current:
            print(f"{'' if current is None else chr(10)}{c.kind}:")
            current = c.kind
        flag = "  [CLASH: " + c.clash + "]" if c.clash else ""
        print(f"  {c.name:<{width}}  {c.summary}{flag}")
    if not comps:
        print("no components match", file=sys.stderr)
    return 0


def _schema_lines(params: dict[str, Any], indent: str = "  ") -> list[str]:
    """``name: default    # type  doc`` per parameter, dataclass sections expanded."""
    from zoo.registry import plain
    from zoo.introspect import dataclass_params

    lines = []
    for p in params.values():
        base = getattr(p.type, "__origin__", None) or p.type
        if dataclasses.is_dataclass(base) and isinstance(base, type):
            lines.append(f"{indent}{p.name}:    # section{'  ' + p.doc if p.doc else ''}")
            lines += _schema_lines(dataclass_params(base), indent + "  ")
            continue
        default = "(required)" if p.required else json.dumps(plain(p.default), default=str)
        lines.append(f"{indent}{p.name}: {default}    # {p.type_name()}"
                     f"{'  ' + p.doc if p.doc else ''}")
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    import zoo.api

    comp = zoo.api.show(args.name, args.kind)
    info = comp.to_dict()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"{comp.kind} '{comp.name}' — {comp.summary}")
    print(f"from plugin '{comp.plugin}' ({comp.origin})"
          + (f", replacing {comp.overrides}" if comp.overrides else ""))
    if comp.clash:
        print(f"CLASH: registered by both {comp.clash}; pick one as plugin:name")
    for other in comp.candidates:
        print(f"also registered: {other.qualified_name} from plugin '{other.plugin}' "
              f"({other.origin}) — {other.summary}")
    if comp.inputs:
        print(f"inputs supplied by the zoo: {', '.join(comp.inputs)}")
    print("config:")
    print(f"  name: {comp.name}")
    print("\n".join(_schema_lines(comp.params)))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from zoo.plugins import default_manager

    plugins = default_manager(warn=False).plugins  # the table shows the errors
    if args.json:
        print(json.dumps([p.to_dict() for p in plugins], indent=2))
        return 0
    for p in plugins:
        where = "built-in" if p.builtin else f"{p.distribution} {p.version}".strip()
        offers = [*p.components, *(f"command:{c}" for c in p.commands),
                  *(f"config:{c}" for c in p.configs)]
        print(f"{p.name:<16} {p.status:<8} {where:<20} {', '.join(offers) or '-'}")
        if p.replaces:
            print(f"{'':<16} replaces: {', '.join(p.replaces)} (override=True)")
        if p.error:
            print(f"{'':<16} error: {p.error}")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    import zoo.api
    from zoo.graphio import check_format, save_graph

    check_format(args.out)  # before the (possibly long) build, not after
    exp = zoo.api.build(args.config, args.overrides)
    graph: Any = exp.graph
    save_graph(graph, args.out)
    print(f"saved graph with {graph.num_nodes()} nodes and {graph.num_edges()} edges "
          f"to {args.out}")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from zoo.retrieval import load, write_embeddings

    exp = load(args.run_dir, args.seed)
    arrays, names = write_embeddings(exp, args.out or args.run_dir)
    print(f"wrote {len(exp.data.labels)} embeddings of seed {exp.seed} to {arrays} "
          f"and their ids to {names}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from zoo.retrieval import load, search

    if args.image is None and args.id is None and args.text is None:
        raise UsageError("give a query: --image PATH, --id ID or --text LABEL")
    if args.k < 1:
        raise UsageError(f"-k must be a whole number >= 1, got {args.k}")
    if args.image is not None and not args.image.is_file():
        raise ConfigError(f"image file '{args.image}' not found; give the path of a PNG or "
                          "JPEG file")
    exp = load(args.run_dir, args.seed)
    found = search(exp, image=args.image, item=args.id, text=args.text, k=args.k,
                   index=args.index)
    if args.json:
        print(json.dumps([{"id": i, "score": round(s, 6)} for i, s in found], indent=2))
        return 0
    width = max((len(i) for i, _ in found), default=2)
    for rank, (item, score) in enumerate(found, start=1):
        print(f"{rank:>3}  {item:<{width}}  {score:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
