"""The distributed plugin's command line: ``zoo partition`` writes a config's graph as
DistDGL partitions.

The command arrives through the ``zoo_register_commands`` hook, as any plugin's would;
DGL's distributed modules are imported only when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import zoo
from zoo.cli import Parser
from zoo.errors import UsageError


def partition_parser() -> Parser:
    """The parser of ``zoo partition CONFIG [KEY=VALUE ...] --parts N --out DIR``."""
    p = Parser(prog="zoo partition", description="Split a config's graph into DistDGL "
               "partitions (DGL's partition_graph) for distributed training; train on them "
               "with `python -m zoo_plugins.distributed.launch` (see docs/distdgl.md).")
    p.add_argument("config", nargs="?",
                   help="a YAML file, or the name of a config (sage_cora_sampled)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides anywhere on the line, e.g. model.hidden=64")
    p.add_argument("--parts", type=int, required=True, help="number of partitions")
    p.add_argument("--out", type=Path, required=True, help="folder (absent or empty)")
    p.add_argument("--method", choices=("metis", "random"), default="metis",
                   help="METIS (few edges cut) or random (default metis)")
    p.add_argument("--name", help="graph name (default: from the config's name)")
    p.set_defaults(func=run_partition)
    return p


def run_partition(args: argparse.Namespace) -> int:
    """``zoo partition``: write the partitions and say how to train on them."""
    from zoo_plugins.distributed.partition import partition

    if args.parts < 1:
        raise UsageError(f"--parts must be a whole number >= 1, got {args.parts}")
    path = partition(args.config, args.parts, args.out, args.method,
                     overrides=args.overrides, graph_name=args.name)
    print(f"{args.parts} partition(s) written; partition config {path}")
    print(f"train: python -m zoo_plugins.distributed.launch --part-config {path} "
          f"--num-trainers {args.parts}")
    return 0


@zoo.hookimpl
def zoo_register_commands(commands) -> None:
    """Add ``zoo partition``."""
    commands.add("partition", partition_parser, "split a graph into DistDGL partitions")
