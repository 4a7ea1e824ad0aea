"""``zoo sweep``: train a grid of overrides, one ``zoo run`` per point, and tabulate it.

``zoo sweep gcn_cora model.hidden=16,64 trainer.optimizer.lr=0.01,0.005 --seeds 3``
trains the four points of the cartesian product, in the order given. Like Hydra's
``-m`` multirun, every point gets its own folder under the sweep folder, a complete
run folder that ``zoo compare`` reads; like GraphGym's aggregation, ``results.md`` and
``results.csv`` then hold one row per point (mean ± std over the seeds).

An override is a swept axis when its value has a comma outside brackets, braces and
quotes: ``model.hidden=16,64`` is two points, while ``trainer.batches.fanouts=[10,10]``
and ``description="a, b"`` are one value each. Each value is passed on to ``zoo run``
exactly as written.

Every point is validated before anything runs. Each then trains in its own process with
one thread, ``--jobs`` at a time: on a shared CPU, N single-thread runs side by side
finish sooner than N runs one after another with N threads each (see zoo.threads).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.cli import Parser
from zoo.compare import markdown_table, metric_names, show_stat, show_value
from zoo.config import parse_value
from zoo.errors import ConfigError, UsageError, ZooError
from zoo.run import atomic_write, default_run_dir

OPENERS, CLOSERS, QUOTES = "[{(", "]})", "'\""
NAME_LIMIT = 100  # characters of a point's folder name after its index


def split_values(value: str) -> list[str]:
    """An override's value split at its top-level commas (outside brackets, braces and
    quotes), each part stripped: ``16,64`` -> ``["16", "64"]``, ``[10,10]`` -> one."""
    parts, current, depth, quote = [], [], 0, ""
    chars = iter(value)
    for ch in chars:
        if quote:
            current.append(ch)
            if ch == "\\" and quote == '"':  # YAML's escapes live in double quotes only
                current.append(next(chars, ""))
            elif ch == quote:
                quote = ""
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
            if ch in QUOTES:
                quote = ch
            elif ch in OPENERS:
                depth += 1
            elif ch in CLOSERS:
                depth = max(0, depth - 1)
    parts.append("".join(current).strip())
    return parts


def _axes(overrides: list[str]) -> list[list[tuple[str, str | None, str | None]]]:
    """Per override, its choices as ``(item, swept key, value text)``; a fixed override
    (one value, ``~KEY``, anything without ``=``) has the single choice ``(item, None,
    None)``."""
    axes = []
    for item in overrides:
        key, sep, value = item.partition("=")
        values = split_values(value) if sep else []
        if len(values) < 2:
            axes.append([(item, None, None)])
            continue
        if not all(values):
            raise UsageError(f"override '{item}' has an empty value between its commas; "
                             "write null for a null value")
        axes.append([(f"{key}={v}", key.strip(), v) for v in values])
    return axes


def grid(overrides: list[str]) -> list[list[str]]:
    """The points of a sweep: each override with a top-level comma is an axis, and the
    points are the cartesian product of the axes in the order given, each a list of
    ``KEY=VALUE`` overrides (fixed ones included, in place)."""
    return [[item for item, _, _ in combo] for combo in itertools.product(*_axes(overrides))]


@dataclass
class Point:
    """One point of a sweep: its overrides and the values of the swept keys."""

    index: int
    overrides: list[str]
    swept: dict[str, str]  # swept key -> its value, as written

    @property
    def label(self) -> str:
        """``model.hidden=64 trainer.optimizer.lr=0.01``: what tells the point apart."""
        return " ".join(f"{k}={v}" for k, v in self.swept.items()) or "(no swept key)"

    def folder_name(self, width: int = 3) -> str:
        """``000-model.hidden=16,trainer.optimizer.lr=0.01``, safe on any filesystem."""
        text = ",".join(f"{k}={v}" for k, v in self.swept.items())
        safe = re.sub(r"[^\w.=,+-]+", "_", text, flags=re.ASCII).strip("_")[:NAME_LIMIT]
        return f"{self.index:0{width}d}" + (f"-{safe}" if safe else "")

    def values(self) -> dict[str, Any]:
        """The swept values, read as YAML the way ``zoo run`` reads them."""
        return {k: parse_value(f"{k}={v}", v) for k, v in self.swept.items()}


def plan(overrides: list[str]) -> tuple[list[str], list[Point]]:
    """The swept keys and the points of a sweep over ``overrides``."""
    axes = _axes(overrides)
    keys = [choices[0][1] for choices in axes if choices[0][1] is not None]
    for key in keys:
        if keys.count(key) > 1:
            raise UsageError(f"'{key}' is swept twice; give all its values in one "
                             f"override, e.g. {key}=a,b,c")
    points = [Point(i, [item for item, _, _ in combo],
                    {k: v for _, k, v in combo if k is not None and v is not None})
              for i, combo in enumerate(itertools.product(*axes))]
    return keys, points  # type: ignore[return-value]


@dataclass
class Row:
    """A point's outcome: status ``ok``, ``failed``, ``interrupted`` or ``pending``."""

    point: Point
    dir: Path
    status: str = "pending"
    wall_s: float = math.nan
    summary: dict[str, Any] | None = None
    error: str = ""
    values: dict[str, Any] = field(default_factory=dict)


def validate(config: str | Path, points: list[Point]) -> str:
    """Build every point's experiment (no data is loaded): the first invalid point is a
    :class:`ConfigError` naming it. Returns the config's name."""
    import zoo.api

    name = ""
    for p in points:
        try:
            name = zoo.api.build(config, p.overrides).name
        except ZooError as e:
            raise ConfigError(f"sweep point {p.index + 1} of {len(points)} ({p.label}) is "
                              f"not valid, so nothing ran: {e}") from None
    return name


def run_commands(commands: list[tuple[list[str], Path]], jobs: int,
                 on_done: Callable[[int, int, float], None],
                 env: dict[str, str] | None = None) -> None:
    """Run ``(argv, log file)`` commands, at most ``jobs`` at a time, each one's output
    into its log; ``on_done(index, exit code, seconds)`` as each ends. An exception
    (Ctrl-C) terminates the commands still running before it propagates."""
    pending = list(range(len(commands)))
    running: dict[int, tuple[subprocess.Popen, float]] = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                i = pending.pop(0)
                argv, log = commands[i]
                with open(log, "wb") as f:  # the child holds its own copy of the handle
                    proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env)
                running[i] = (proc, time.perf_counter())
            for i, (proc, start) in list(running.items()):
                if proc.poll() is not None:
                    del running[i]
                    on_done(i, proc.returncode, time.perf_counter() - start)
            time.sleep(0.05)
    finally:
        for proc, _ in running.values():
            proc.terminate()
        for proc, _ in running.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def last_line(log: Path) -> str:
    """The last non-blank line of a log (why a point failed)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def run_sweep(config: str | Path, overrides: list[str], *, seeds: int | None = None,
              jobs: int | None = None, out: str | Path | None = None,
              quiet: bool = True) -> list[Row]:
    """Validate and train every point of the grid over ``overrides`` (``zoo run`` in a
    subprocess per point, ``jobs`` at a time), write ``results.md`` and
    ``results.csv`` in the sweep folder and return one :class:`Row` per point."""
    from zoo.threads import usable_cores

    if seeds is not None and seeds < 1:
        raise UsageError(f"--seeds must be a whole number >= 1, got {seeds}")
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be a whole number >= 1, got {jobs}")
    keys, points = plan(list(overrides))
    name = validate(config, points)
    folder = Path(out) if out is not None else default_run_dir(f"sweep-{name}")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"sweep folder '{folder}' already exists and is not empty; choose "
                          "another --out or remove it")
    width = max(3, len(str(len(points) - 1)))
    rows = [Row(p, folder / p.folder_name(width), values=p.values()) for p in points]
    commands = []
    for row in rows:
        row.dir.mkdir(parents=True)
        argv = [sys.executable, "-m", "zoo", "run", str(config), *row.point.overrides]
        # A thread count the user swept or fixed is theirs; otherwise one per process.
        if not any(o.partition("=")[0].strip() == "threads" for o in row.point.overrides):
            argv.append("threads=1")
        argv += ["--out", str(row.dir), "--quiet"]
        argv += ["--seeds", str(seeds)] if seeds is not None else []
        commands.append((argv, row.dir / "run.log"))
    finished = 0

    def on_done(i: int, code: int, seconds: float) -> None:
        nonlocal finished
        finished += 1
        row = rows[i]
        row.wall_s = seconds
        row.summary = _summary(row.dir) if code == 0 else None
        row.status = "ok" if row.summary is not None else "failed"
        if row.status == "failed":
            row.error = last_line(row.dir / "run.log") or f"exit code {code}"
        if not quiet:
            print(f"[{finished}/{len(rows)}] {row.point.label}: {_headline(row)} "
                  f"({seconds:.1f} s)", file=sys.stderr, flush=True)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        run_commands(commands, min(jobs or usable_cores(), len(rows)), on_done, env)
    except KeyboardInterrupt:
        for row in rows:
            row.status = "interrupted" if row.status == "pending" else row.status
        write_results(folder, rows, keys)
        raise
    write_results(folder, rows, keys)
    return rows


def _summary(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _headline(row: Row) -> str:
    """The point's first reported metric (``test_accuracy 0.8150 ± 0.0040``), or why it
    failed."""
    if row.summary is None:
        return f"failed: {row.error}"
    names = metric_names([row.summary])
    if not names:
        return "ok"
    return f"{names[0]} {show_stat(row.summary['metrics'][names[0]])}"


def results_markdown(rows: list[Row], keys: list[str]) -> str:
    """The Markdown table: a column per swept key, mean ± std per metric, the seconds
    per point, and the status when a point did not finish."""
    metrics = metric_names([r.summary for r in rows if r.summary])
    with_status = any(r.status != "ok" for r in rows)
    header = [*keys, *metrics, "seconds", *(["status"] * with_status)]
    body = []
    for r in rows:
        stats = (r.summary or {}).get("metrics", {})
        cells = [show_value(r.values[k]) for k in keys]
        cells += [show_stat(stats.get(m)) for m in metrics]
        cells.append("-" if math.isnan(r.wall_s) else f"{r.wall_s:.1f}")
        if with_status:
            cells.append(f"failed: {r.error}" if r.status == "failed" else r.status)
        body.append(cells)
    return markdown_table(header, body)


def results_csv(rows: list[Row], keys: list[str]) -> str:
    """The CSV table: each swept key, ``<metric>_mean`` and ``<metric>_std`` per metric,
    ``wall_s`` and ``status``; empty cells where a point has no value."""
    metrics = metric_names([r.summary for r in rows if r.summary])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*keys, *(f"{m}_{s}" for m in metrics for s in ("mean", "std")),
                     "wall_s", "status"])
    for r in rows:
        stats = (r.summary or {}).get("metrics", {})
        cells: list[Any] = [show_value(r.values[k]) for k in keys]
        for m in metrics:
            stat = stats.get(m) or {}
            cells += [stat.get("mean", ""), stat.get("std", "")]
        cells += ["" if math.isnan(r.wall_s) else round(r.wall_s, 3), r.status]
        writer.writerow(cells)
    return buffer.getvalue()


def write_results(folder: Path, rows: list[Row], keys: list[str]) -> None:
    """``results.md`` and ``results.csv`` in the sweep folder, each written atomically."""
    atomic_write(folder / "results.md", results_markdown(rows, keys) + "\n")
    atomic_write(folder / "results.csv", results_csv(rows, keys))


def parser() -> Parser:
    """The ``zoo sweep`` command line."""
    p = Parser(prog="zoo sweep", description="Train every point of a grid of overrides "
               "(KEY=a,b,c sweeps KEY; the grid is the product of the swept keys), one "
               "`zoo run` per point, and tabulate the results.")
    p.add_argument("config", nargs="?",
                   help="a YAML file, or the name of a bundled config (gcn_cora)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="KEY=a,b,c sweeps KEY over a, b and c (commas inside brackets, "
                        "braces or quotes do not split); KEY=VALUE is fixed")
    p.add_argument("--seeds", type=int, help="train seeds 0..N-1 at every point "
                   "(default: the config's)")
    p.add_argument("--jobs", type=int, help="points trained at once (default: the usable "
                   "cores, at most the number of points)")
    p.add_argument("--out", type=Path, help="sweep folder (default runs/sweep-<config>-<time>)")
    p.add_argument("--quiet", action="store_true", help="no line per finished point")
    p.set_defaults(func=cmd_sweep)
    return p


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep, print its table; exit code 1 when a point failed."""
    rows = run_sweep(args.config, args.overrides, seeds=args.seeds, jobs=args.jobs,
                     out=args.out, quiet=args.quiet)
    keys, _ = plan(args.overrides)
    print(results_markdown(rows, keys))
    failed = sum(r.status != "ok" for r in rows)
    folder = rows[0].dir.parent
    print(f"{len(rows)} point(s), {failed} failed; results.md and results.csv in {folder}")
    return 1 if failed else 0
