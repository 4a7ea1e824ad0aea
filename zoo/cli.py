"""The ``zoo`` command line: run, validate, list, show, plugins, graph build.

Exit codes: 0 success, 2 config or usage error (one or two lines on stderr, no
traceback), 1 runtime failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("DGLBACKEND", "pytorch")

from zoo.errors import ZooError  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zoo", description="A plugin-based model zoo for GNNs "
                                "and neural structured learning.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="train the experiment a config describes")
    run.add_argument("config", help="a YAML file, or the name of a bundled config (gcn_cora)")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                     help="dotted overrides, e.g. model.hidden=64 trainer.lr=0.005")
    run.add_argument("--seeds", type=int, help="train seeds 0..N-1 (default: the config's)")
    run.add_argument("--out", type=Path, help="run folder (default runs/<config>-<time>)")
    run.add_argument("--quiet", action="store_true", help="no progress display")

    val = sub.add_parser("validate", help="check a config against the component schemas")
    val.add_argument("config")
    val.add_argument("overrides", nargs="*", metavar="KEY=VALUE")

    lst = sub.add_parser("list", help="list components (optionally of a kind or a pattern)")
    lst.add_argument("what", nargs="?", help="a kind (encoder, ...) or a wildcard pattern")
    lst.add_argument("pattern", nargs="?", help="a wildcard pattern when a kind is given")
    lst.add_argument("--json", action="store_true")

    show = sub.add_parser("show", help="a component's schema, defaults and docs")
    show.add_argument("name")
    show.add_argument("--kind", help="disambiguate when several kinds share the name")
    show.add_argument("--json", action="store_true")

    plug = sub.add_parser("plugins", help="list plugins, their components and load errors")
    plug.add_argument("--json", action="store_true")

    graph = sub.add_parser("graph", help="graph tools")
    gsub = graph.add_subparsers(dest="graph_command", metavar="COMMAND")
    gsub.required = True
    gb = gsub.add_parser("build", help="build a config's graph and save it to a file")
    gb.add_argument("config")
    gb.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    gb.add_argument("--out", type=Path, required=True,
                    help="output file: .bin (DGL binary) or .tsv (weighted edge list)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        handler = globals()[f"cmd_{args.command}"]
        return int(handler(args) or 0)
    except ZooError as e:
        print(f"zoo: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    import zoo.api

    exp = zoo.api.build(args.config, args.overrides)
    out = args.out or zoo.api.default_out(exp.name)
    summary = exp.fit(seeds=args.seeds, out=out, progress=not args.quiet)
    lines = [f"{k}: {v['mean']:.4f} ± {v['std']:.4f} over {len(v['values'])} seed(s)"
             for k, v in summary["metrics"].items() if k.endswith("accuracy")]
    t = summary["timing"]
    print("\n".join(lines))
    print(f"epoch median {t['epoch_ms_median']:.2f} ms, wall {t['wall_s']:.1f} s; "
          f"run saved to {out}")
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
    from zoo.registry import KINDS

    kind, pattern = None, "*"
    if args.what in KINDS:
        kind, pattern = args.what, args.pattern or "*"
    elif args.what is not None:
        if args.pattern is not None:
            from zoo.errors import ConfigError
            from zoo.schema import suggest

            raise ConfigError(f"unknown kind '{args.what}'{suggest(args.what, KINDS)}; "
                              f"kinds are {', '.join(KINDS)}")
        pattern = args.what
    comps = zoo.api.list(pattern, kind)
    if args.json:
        print(json.dumps([c.to_dict() for c in comps], indent=2))
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


def cmd_show(args: argparse.Namespace) -> int:
    import zoo.api

    comp = zoo.api.show(args.name, args.kind)
    info = comp.to_dict()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"{comp.kind} '{comp.name}' — {comp.summary}")
    print(f"from plugin '{comp.plugin}' ({comp.origin})")
    if comp.inputs:
        print(f"inputs supplied by the zoo: {', '.join(comp.inputs)}")
    print("config:")
    print(f"  name: {comp.name}")
    for name, p in info["params"].items():
        default = "(required)" if p["required"] else json.dumps(p["default"], default=str)
        print(f"  {name}: {default}    # {p['type']}{'  ' + p['doc'] if p['doc'] else ''}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from zoo.plugins import default_manager

    plugins = default_manager(warn=False).plugins  # the table shows the errors
    if args.json:
        print(json.dumps([p.to_dict() for p in plugins], indent=2))
        return 0
    for p in plugins:
        where = "built-in" if p.builtin else f"{p.distribution} {p.version}".strip()
        comps = ", ".join(p.components) or "-"
        print(f"{p.name:<16} {p.status:<8} {where:<20} {comps}")
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


if __name__ == "__main__":
    sys.exit(main())
