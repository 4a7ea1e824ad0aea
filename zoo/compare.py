"""``zoo compare``: runs side by side — the config keys that differ, the metrics
(mean ± std, the task's reported metrics first), timing and seeds.

A sweep folder (``zoo sweep``'s output) stands for its points' run folders. The table
helpers here (metric order, value and statistic formatting, plain-text and Markdown
tables) are also what ``zoo sweep`` draws its results table with.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.cli import Parser
from zoo.errors import ConfigError, UsageError

TIMING_PREFIX = "seconds_"  # per-phase timings a trainer reports among its metrics
ABSENT = "-"
_MISSING = object()  # a key a run's config lacks


@dataclass
class Run:
    """A run folder and its ``summary.json``."""

    dir: Path
    summary: dict[str, Any]
    label: str = ""


# -- formatting shared with zoo.sweep ----------------------------------------------

def metric_names(summaries: list[dict[str, Any]], timing: bool = False) -> list[str]:
    """Metric names over several summaries: the task's reported metrics and its
    monitored metric first, then the others in the order they first appear; per-phase
    timings (``seconds_*``) only when ``timing``."""
    tasks = [s.get("task") or {} for s in summaries]
    first = [m for t in tasks for m in [*t.get("report", []), t.get("monitor")] if m]
    present = dict.fromkeys(m for s in summaries for m in s.get("metrics", {}))
    names = list(dict.fromkeys(m for m in [*first, *present] if m in present))
    return [m for m in names if timing or not m.startswith(TIMING_PREFIX)]


def show_value(value: Any) -> str:
    """A config value as one would write it in an override (``64``, ``[10, 10]``)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def show_stat(stat: dict[str, Any] | None) -> str:
    """``mean ± std`` with four decimals, ``-`` for a missing metric."""
    if not stat:
        return ABSENT
    return f"{_number(stat.get('mean'))} ± {_number(stat.get('std'))}"


def _number(value: Any) -> str:
    try:
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return "nan"


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
             for r in [header, *rows]]
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


# -- reading runs ------------------------------------------------------------------

def load_runs(paths: list[Path]) -> list[Run]:
    """The run folders named, a sweep folder expanded to its finished points; a folder
    that is neither is a :class:`ConfigError`."""
    runs: list[Run] = []
    for path in paths:
        if not path.exists():
            raise ConfigError(f"run folder '{path}' not found; give folders `zoo run` wrote")
        if not path.is_dir():
            raise ConfigError(f"'{path}' is not a run folder but a file; give folders "
                              "`zoo run` wrote")
        if (path / "summary.json").is_file():
            runs.append(Run(path, _read_summary(path)))
            continue
        points = sorted(p for p in path.iterdir() if p.is_dir() and (p / "run.log").is_file())
        finished = [p for p in points if (p / "summary.json").is_file()]
        if not finished:
            raise ConfigError(f"'{path}' is not a run folder: it has no summary.json; give "
                              "folders `zoo run` wrote")
        for p in points:
            if p not in finished:  # a failed sweep point: say so, compare the rest
                print(f"zoo: note: skipping '{p}': it has no summary.json (the point failed)",
                      file=sys.stderr)
        runs += [Run(p, _read_summary(p)) for p in finished]
    names = [r.dir.name for r in runs]
    for run in runs:
        run.label = run.dir.name if names.count(run.dir.name) == 1 else str(run.dir)
    return runs


def _read_summary(folder: Path) -> dict[str, Any]:
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"'{folder / 'summary.json'}' cannot be read ({e}); run it "
                          "again") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("metrics"), dict):
        raise ConfigError(f"'{folder / 'summary.json'}' is not a zoo run summary; give "
                          "folders `zoo run` wrote")
    return summary


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys (``model.hidden``); lists of sections by index
    (``regularizers.0.name``), other lists whole."""
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        items = enumerate(value)  # type: ignore[assignment]
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_differences(runs: list[Run]) -> dict[str, list[Any]]:
    """Dotted key -> its value in each run (a marker where a run lacks the key), for the
    keys whose values are not the same in every run."""
    flat = [flatten(r.summary.get("config") or {}) for r in runs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    # Compared as JSON, so that 1 and True (equal in Python) still differ.
    out = {}
    for key in keys:
        cells = [json.dumps(f[key], sort_keys=True, default=str) if key in f else None
                 for f in flat]
        if len(set(cells)) > 1:
            out[key] = [f.get(key, _MISSING) for f in flat]
    return out


def comparison(runs: list[Run]) -> dict[str, Any]:
    """The comparison as plain data: runs, differing config keys, metrics, timing, seeds."""
    summaries = [r.summary for r in runs]
    metrics = {m: [_stat(s, m) for s in summaries] for m in metric_names(summaries)}
    timing_keys = ["epoch_ms_median", "wall_s"]
    timing = {k: [(s.get("timing") or {}).get(k) for s in summaries] for k in timing_keys}
    timing.update({m: [_stat(s, m) for s in summaries]
                   for m in metric_names(summaries, timing=True)
                   if m.startswith(TIMING_PREFIX)})
    return {
        "runs": [str(r.dir) for r in runs],
        "labels": [r.label for r in runs],
        "config": {k: [None if v is _MISSING else v for v in vs]
                   for k, vs in config_differences(runs).items()},
        "metrics": metrics,
        "timing": timing,
        "seeds": [s.get("seeds") for s in summaries],
    }


def _stat(summary: dict[str, Any], metric: str) -> dict[str, Any] | None:
    stat = summary.get("metrics", {}).get(metric)
    if not isinstance(stat, dict):
        return None
    return {"mean": stat.get("mean"), "std": stat.get("std")}


def render(runs: list[Run], markdown: bool = False) -> str:
    """The comparison as tables: config differences, metrics, timing and seeds."""
    table = markdown_table if markdown else text_table
    labels = [r.label for r in runs]
    diffs = config_differences(runs)
    data = comparison(runs)
    config_rows = [[k, *(ABSENT if v is _MISSING else show_value(v) for v in vs)]
                   for k, vs in diffs.items()]
    parts = [table(["config", *labels], config_rows) if diffs
             else "config: the same in every run"]
    parts.append(table(["metric", *labels],
                       [[m, *map(show_stat, vs)] for m, vs in data["metrics"].items()]))
    rows = [["seeds", *(_seeds(s) for s in data["seeds"])]]
    for key, values in data["timing"].items():
        name = {"epoch_ms_median": "epoch ms (median)", "wall_s": "wall s"}.get(key, key)
        cells = [show_stat(v) if isinstance(v, dict) else _seconds(v) for v in values]
        rows.append([name, *cells])
    parts.append(table(["run", *labels], rows))
    return "\n\n".join(parts)


def _seeds(seeds: Any) -> str:
    if not isinstance(seeds, list) or not seeds:
        return ABSENT
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{len(seeds)} ({seeds[0]}-{seeds[-1]})"
    return f"{len(seeds)} ({', '.join(map(str, seeds))})"


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)) or math.isnan(value):
        return ABSENT
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


# -- the command -------------------------------------------------------------------

def parser() -> Parser:
    """The ``zoo compare`` command line."""
    p = Parser(prog="zoo compare", description="Runs side by side: the config keys that "
               "differ, the metrics (mean ± std), timing and seeds. A sweep folder stands "
               "for its points.")
    p.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                   help="folders `zoo run` (or `zoo sweep`) wrote")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print a machine-readable object")
    fmt.add_argument("--markdown", action="store_true", help="Markdown tables")
    p.set_defaults(func=cmd_compare)
    return p


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the comparison of ``args.run_dirs``."""
    runs = load_runs(args.run_dirs)
    if len(runs) < 2:
        raise UsageError(f"{len(runs)} run to compare; give two or more run folders "
                         "(or a sweep folder)")
    if args.json:
        print(json.dumps(comparison(runs), indent=2, default=str))
    else:
        print(render(runs, markdown=args.markdown))
    return 0
