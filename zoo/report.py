"""``zoo report RUN_DIR...``: one self-contained HTML page for one or more run folders —
config, metrics (mean ± std and per seed), timing, provenance and figures, with every
image inlined as a data URI so the file can be mailed or archived alone."""

from __future__ import annotations

import argparse
import base64
import json
import math
from html import escape
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, UsageError
from zoo.run import atomic_write

RUN_FOLDER = ("a run folder holds summary.json, config.yaml and metrics.jsonl, as "
              "written by `zoo run CONFIG --out DIR`")
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif", ".svg": "image/svg+xml"}
CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1080px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.reported td { font-weight: 600; background: #f4f8ff; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 12px; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #666; font-size: 12px; }
"""


def parser() -> Any:
    """The ``zoo report`` command line."""
    from zoo.cli import Parser

    p = Parser(prog="zoo report", description="Write one self-contained HTML page (config, "
               "metrics, timing, training curves and figures) for one or more run folders.")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                   help="run folders written by `zoo run --out`")
    p.add_argument("--out", type=Path, help="the HTML file (default: report.html in the run "
                   "folder when there is one run; required for several)")
    p.set_defaults(func=cmd_report)
    return p


def cmd_report(args: argparse.Namespace) -> int:
    """Write the report and print where it is."""
    out = args.out
    if out is None:
        if len(args.runs) > 1:
            raise UsageError("give --out FILE.html when reporting on several run folders")
        out = args.runs[0] / "report.html"
    print(write_report(args.runs, out))
    return 0


def load_summary(run_dir: Path) -> dict[str, Any]:
    """A run folder's ``summary.json``; a ConfigError names a folder that is not a run."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise ConfigError(f"'{run_dir}' is not a run folder: {RUN_FOLDER}")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise ConfigError(f"'{path}' cannot be read ({e}); rerun the config to write it "
                          "again") from None
    if not isinstance(summary, dict):
        raise ConfigError(f"'{path}' is not a run summary (a JSON object); {RUN_FOLDER}")
    return summary


def write_report(run_dirs: list[Path], out: Path) -> Path:
    """Write one self-contained HTML report of ``run_dirs`` to ``out`` (atomically);
    draws the training curves of a run that has none yet. Returns ``out``."""
    runs = [(Path(d), load_summary(Path(d))) for d in run_dirs]  # every folder checked first
    sections = [run_section(d, s, i) for i, (d, s) in enumerate(runs)]
    title = "zoo report: " + ", ".join(d.resolve().name for d, _ in runs)
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{escape(title)}</h1>"]
    if len(runs) > 1:
        parts.append(overview(runs))
    parts += sections
    parts.append("</body></html>\n")
    out = Path(out)
    atomic_write(out, "\n".join(parts))
    return out


def fmt(value: Any) -> str:
    """A metric value as the report shows it: integers bare, others to 4 decimals."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return escape(str(value))
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4f}"


def mean_std(stats: dict[str, Any]) -> str:
    """``mean ± std`` of one summary metric, the std to the mean's decimals."""
    mean, std = fmt(stats.get("mean", math.nan)), stats.get("std", math.nan)
    decimals = len(mean.partition(".")[2])
    if decimals and isinstance(std, int | float) and not math.isnan(std):
        return f"{mean} ± {std:.{decimals}f}"
    return f"{mean} ± {fmt(std)}"


def metric_order(summary: dict[str, Any]) -> list[str]:
    """The task's reported metrics first, then the rest in the summary's order."""
    metrics = summary.get("metrics") or {}
    reported = [m for m in (summary.get("task") or {}).get("report", []) if m in metrics]
    return reported + [m for m in metrics if m not in reported]


def overview(runs: list[tuple[Path, dict[str, Any]]]) -> str:
    """A table of each run's reported metrics, linking to its section."""
    rows = []
    for i, (d, s) in enumerate(runs):
        reported = [m for m in (s.get("task") or {}).get("report", [])
                    if m in (s.get("metrics") or {})]
        shown = "; ".join(f"{escape(m)} {mean_std(s['metrics'][m])}" for m in reported)
        rows.append(f"<tr><td><a href=\"#run-{i}\">{escape(d.resolve().name)}</a></td>"
                    f"<td>{shown}</td></tr>")
    return ("<table><tr><th>run</th><th>reported metrics (mean ± std)</th></tr>"
            + "".join(rows) + "</table>")


def metrics_table(summary: dict[str, Any]) -> str:
    """Mean ± std and the per-seed values of every metric, reported ones highlighted."""
    seeds = summary.get("seeds") or []
    reported = set((summary.get("task") or {}).get("report", []))
    head = "".join(f"<th>seed {escape(str(s))}</th>" for s in seeds)
    rows = [f"<tr><th>metric</th><th>mean ± std</th>{head}</tr>"]
    for name in metric_order(summary):
        stats = summary["metrics"][name]
        if not isinstance(stats, dict):
            continue
        values = "".join(f"<td>{fmt(v)}</td>" for v in stats.get("values", []))
        css = ' class="reported"' if name in reported else ""
        rows.append(f"<tr{css}><td>{escape(name)}</td><td>{mean_std(stats)}</td>{values}</tr>")
    return "<table>" + "".join(rows) + "</table>"


def key_values(title: str, items: dict[str, Any]) -> str:
    """A two-column table (timing, provenance); nested values shown as JSON."""
    if not items:
        return ""
    rows = []
    for key, value in items.items():
        text = fmt(value) if isinstance(value, int | float) else (
            escape(value) if isinstance(value, str) else escape(json.dumps(value, default=str)))
        rows.append(f"<tr><td>{escape(str(key))}</td><td>{text}</td></tr>")
    return f"<h3>{escape(title)}</h3><table>" + "".join(rows) + "</table>"


def config_yaml(run_dir: Path, summary: dict[str, Any]) -> str:
    """The run's resolved config as YAML: its ``config.yaml``, else the summary's copy."""
    path = run_dir / "config.yaml"
    if path.is_file():
        return path.read_text(encoding="utf-8", errors="replace")
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(summary.get("config") or {}))


def figure(path: Path, caption: str) -> str:
    """An ``<img>`` with the file inlined as a base64 data URI."""
    mime = IMAGE_TYPES[path.suffix.lower()]
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img src=\"data:{mime};base64,{data}\" alt=\"{escape(caption)}\">"
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def run_figures(run_dir: Path, summary: dict[str, Any]) -> list[tuple[Path | None, str]]:
    """(path, caption) of each figure to show: the curves (drawn when absent), then the
    files the task listed; a listed file that is missing or not an image gets no path."""
    from zoo import plots

    curves = plots.curve_files(run_dir) or plots.write_curves(run_dir)
    shown: list[tuple[Path | None, str]] = [(p, p.name) for p in curves]
    root = run_dir.resolve()
    for rel in summary.get("files") or []:
        path = (run_dir / str(rel)).resolve()
        # A summary names files inside its own folder; never inline one from elsewhere.
        inside = path.is_relative_to(root) and path.is_file()
        ok = inside and path.suffix.lower() in IMAGE_TYPES
        shown.append((path if ok else None, str(rel)))
    return shown


def run_section(run_dir: Path, summary: dict[str, Any], index: int) -> str:
    """The HTML section of one run."""
    parts = [f"<section id=\"run-{index}\"><h2>{escape(run_dir.resolve().name)}</h2>"]
    task = summary.get("task") or {}
    if task:
        parts.append(f"<p>task <b>{escape(str(task.get('name', '?')))}</b>, monitor "
                     f"{escape(str(task.get('monitor', '?')))} "
                     f"({escape(str(task.get('mode', '?')))}), seeds "
                     f"{escape(', '.join(str(s) for s in summary.get('seeds') or []))}</p>")
    parts.append("<h3>Metrics</h3>" + metrics_table(summary))
    timing = dict(summary.get("timing") or {})
    if "processes" in summary:
        timing["processes"] = summary["processes"]
    parts.append(key_values("Timing", timing))
    parts.append(key_values("Provenance", summary.get("provenance") or {}))
    figures = run_figures(run_dir, summary)
    if figures:
        parts.append("<h3>Figures</h3>")
    for path, caption in figures:
        parts.append(figure(path, caption) if path else
                     f"<p>{escape(caption)} (not an image in the run folder)</p>")
    parts.append(f"<h3>Config</h3><pre>{escape(config_yaml(run_dir, summary))}</pre>")
    parts.append("</section>")
    return "\n".join(parts)
