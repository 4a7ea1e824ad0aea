"""Write the README's table of configs from the measurement records in ``results/``.

Each ``results/<config>/summary.json`` is the summary of a ``zoo run <config>`` (kept with
its ``config.yaml``; weights and metrics are not committed; the provenance keeps versions,
commit and CPU, not the command line, working folder or host name, which name places on
the measuring machine). The table goes between the
README's ``<!-- configs-table:start -->`` and ``<!-- configs-table:end -->`` markers::

    python scripts/config_table.py                        # rewrite the README's table
    python scripts/config_table.py --from runs/gcn_cora   # first copy a run's records in
    python scripts/config_table.py --check                # exit 1 when the README is stale
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from zoo.run import atomic_write

REPO = Path(__file__).resolve().parents[1]
START = "<!-- configs-table:start -->"
END = "<!-- configs-table:end -->"
KEPT = ("summary.json", "config.yaml")
# default_run_dir's suffix: runs/<config>-20240131-235959 or ...-235959-2
_STAMP = re.compile(r"-\d{8}-\d{6}(-\d+)?$")
HEADER = ("| config | reproduces | reported metric (mean ± std) | seeds | validation "
          "| median epoch (ms) | wall (s per seed) |\n|---|---|---|---|---|---|---|")


class TableError(Exception):
    """A problem the user fixes (a missing marker, a run folder of unknown config)."""


def reproduces(config: str, configs_dir: Path) -> str:
    """The first header line of ``configs/<config>.yaml`` (what the config reproduces),
    with "…" when its sentence goes on to the next line."""
    path = configs_dir / f"{config}.yaml"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    if not lines or not lines[0].startswith("#"):
        return "—"
    first = lines[0].lstrip("#").strip().replace("|", "\\|")
    goes_on = len(lines) > 1 and lines[1].startswith("# ") and not first.endswith((".", ":"))
    return f"{first} …" if goes_on and first else first or "—"


def _num(value: Any, digits: int) -> str:
    """A number to ``digits`` decimals; "—" when absent or NaN."""
    if not isinstance(value, int | float) or math.isnan(value):
        return "—"
    return f"{value:.{digits}f}"


def table_row(config: str, summary: dict[str, Any], configs_dir: Path) -> str:
    """One Markdown row: the task's first reported metric, the monitored validation
    metric and the timing of one run's summary."""
    metrics = summary.get("metrics") or {}
    task = summary.get("task") or {}
    reported = next((m for m in task.get("report", []) if m in metrics), None)
    shown = "—"
    if reported:
        stats = metrics[reported]
        shown = f"{reported} {_num(stats.get('mean'), 3)} ± {_num(stats.get('std'), 3)}"
    monitor = task.get("monitor")
    validation = (f"{monitor} {_num(metrics[monitor].get('mean'), 3)}"
                  if monitor in metrics else "—")
    seeds = len(summary.get("seeds") or [])
    timing = summary.get("timing") or {}
    wall = timing.get("wall_s")
    per_seed = wall / seeds if isinstance(wall, int | float) and seeds else None
    cells = [f"`{config}`", reproduces(config, configs_dir), shown, str(seeds or "—"),
             validation, _num(timing.get("epoch_ms_median"), 1), _num(per_seed, 1)]
    return "| " + " | ".join(cells) + " |"


def read_results(results_dir: Path) -> dict[str, dict[str, Any]]:
    """``{config: summary}`` of every ``results/<config>/summary.json``, by name."""
    found = {}
    for path in sorted(results_dir.glob("*/summary.json")):
        try:
            found[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise TableError(f"{path} is not valid JSON ({e}); copy the run's summary "
                             "again with --from") from None
    return found


def make_table(results_dir: Path, configs_dir: Path) -> str:
    """The whole Markdown table of the configs measured in ``results_dir``."""
    rows = [table_row(name, s, configs_dir) for name, s in read_results(results_dir).items()]
    return "\n".join([HEADER, *rows])


def replace_block(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        raise TableError(f"the README has no '{START}' ... '{END}' block; put the two "
                         "markers where the configs table goes")
    return readme[:start + len(START)] + "\n" + table + "\n" + readme[end:]


def config_name(run_dir: Path, configs_dir: Path) -> str:
    """The config a run folder measured: its name, less a ``default_run_dir`` stamp."""
    name = _STAMP.sub("", run_dir.resolve().name)
    if not (configs_dir / f"{name}.yaml").is_file():
        raise TableError(f"cannot tell which config '{run_dir}' ran: name the run folder "
                         f"after a config in configs/ (zoo run CONFIG --out runs/CONFIG)")
    return name


# Provenance that names places on the measuring machine: not for a committed record.
LOCAL_PROVENANCE = ("command", "cwd")


def shareable_summary(text: str) -> str:
    """A run's ``summary.json`` without its machine-local provenance (the command line,
    with its --out path, the working folder and the host name)."""
    summary = json.loads(text)
    provenance = summary.get("provenance")
    if isinstance(provenance, dict):
        for key in LOCAL_PROVENANCE:
            provenance.pop(key, None)
        if isinstance(provenance.get("host"), dict):
            provenance["host"].pop("hostname", None)
    return json.dumps(summary, indent=2) + "\n"


def copy_records(run_dirs: list[Path], results_dir: Path, configs_dir: Path) -> None:
    """Copy each run's ``summary.json`` and ``config.yaml`` into ``results/<config>/``;
    its weights, metrics and figures stay behind."""
    for run_dir in run_dirs:  # check them all before copying any
        if not (run_dir / "summary.json").is_file():
            raise TableError(f"'{run_dir}' is not a run folder (no summary.json); give "
                             "the --out folder of a finished `zoo run`")
    names = [config_name(run_dir, configs_dir) for run_dir in run_dirs]
    for run_dir, name in zip(run_dirs, names):
        dest = results_dir / name
        if dest.resolve() == run_dir.resolve():
            continue
        dest.mkdir(parents=True, exist_ok=True)
        for name in KEPT:
            if (run_dir / name).is_file():
                text = (run_dir / name).read_text(encoding="utf-8")
                if name == "summary.json":
                    text = shareable_summary(text)
                atomic_write(dest / name, text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="runs", nargs="+", type=Path, default=[], metavar="RUN_DIR",
                   help="run folders whose summary.json and config.yaml to copy into results/")
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 when the README's table is stale")
    p.add_argument("--readme", type=Path, default=REPO / "README.md")
    p.add_argument("--results", type=Path, default=REPO / "results")
    p.add_argument("--configs", type=Path, default=REPO / "configs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Copy records, then rewrite (or ``--check``) the README's table; the exit code."""
    args = parse_args(argv)
    try:
        if args.runs and args.check:
            raise TableError("--check changes nothing; give --from without it")
        copy_records(args.runs, args.results, args.configs)
        readme = args.readme.read_text(encoding="utf-8")
        updated = replace_block(readme, make_table(args.results, args.configs))
    except TableError as e:
        print(f"config_table: error: {e}", file=sys.stderr)
        return 2
    if args.check:
        if updated != readme:
            print(f"{args.readme.name}'s configs table is stale: run "
                  "python scripts/config_table.py", file=sys.stderr)
            return 1
        return 0
    if updated != readme:
        atomic_write(args.readme, updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
