"""Training-curve figures of a run folder: ``curves.png`` (loss, regularizer terms and the
validation/test metrics per epoch, per phase group) and, for GAM runs, ``iterations.png``
(accuracy, labeled-set size and agreement accuracy per GAM iteration).

matplotlib is optional (the ``report`` and ``images`` extras): without it no figure is
drawn and :func:`write_curves` returns an empty list.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo.run import default_file_mode

CURVES = "curves.png"
ITERATIONS = "iterations.png"
# Above this many seeds a panel shows the mean with a ±std band instead of one line each.
MAX_SEED_LINES = 3
DPI = 100
# "iter 3 classifier" -> "classifier": GAM restarts its epochs each iteration, so the
# iterations of one model are drawn as one curve.
_ITER_PREFIX = re.compile(r"^iter \d+ ")
GAM_PHASE = "gam"

Record = dict[str, Any]


def read_metrics(path: Path) -> list[Record]:
    """The records of a ``metrics.jsonl``; a line that is not a JSON object (a write cut
    short by a crash) is skipped. The bare ``NaN`` token parses as ``float('nan')``."""
    records = []
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def curve_files(run_dir: Path) -> list[Path]:
    """The curve figures the run folder holds now, in display order."""
    return [p for p in (Path(run_dir) / CURVES, Path(run_dir) / ITERATIONS) if p.is_file()]


def write_curves(run_dir: Path) -> list[Path]:
    """Draw ``curves.png`` (and ``iterations.png`` for a GAM run) into ``run_dir`` from its
    ``metrics.jsonl``; returns the written paths (``run_dir / name``), or ``[]`` when
    matplotlib is missing or the run logged no records."""
    try:
        import matplotlib
    except ImportError:
        return []
    matplotlib.use("Agg")  # headless: no display on servers and CI
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    written = []
    groups = epoch_groups(records)
    if groups:
        written.append(_save(_curves_figure(groups), run_dir / CURVES))
    iterations = [r for r in records if r.get("phase") == GAM_PHASE and "iteration" in r]
    if iterations:
        written.append(_save(_iterations_figure(iterations), run_dir / ITERATIONS))
    return written


def epoch_groups(records: list[Record]) -> dict[str, dict[Any, list[tuple[int, Record]]]]:
    """Per-epoch records by phase group and seed: ``{group: {seed: [(x, record)]}}``. The x
    of a group spanning several GAM iterations counts its epochs across them."""
    groups: dict[str, dict[Any, list[tuple[int, Record]]]] = defaultdict(
        lambda: defaultdict(list))
    for r in records:
        phase = str(r.get("phase", "train"))
        if phase == GAM_PHASE or "epoch" not in r:
            continue
        group = _ITER_PREFIX.sub("", phase)
        series = groups[group][r.get("seed", 0)]
        x = len(series) if "iteration" in r else r["epoch"]
        series.append((x, r))
    return {g: dict(by_seed) for g, by_seed in groups.items()}


def is_loss_key(key: str) -> bool:
    """Keys drawn on the loss panel: the loss, regularizer terms and any ``*_loss``."""
    return key == "loss" or key.startswith("reg_") or key.endswith("_loss")


def is_eval_key(key: str) -> bool:
    """Validation and test metrics other than losses (``val_accuracy``,
    ``agreement_val_accuracy``, ``test_map_at_10``)."""
    parts = key.split("_")
    return ("val" in parts or "test" in parts) and not key.endswith("_loss")


def _keys(by_seed: dict[Any, list[tuple[int, Record]]], keep: Callable[[str], bool]
          ) -> list[str]:
    """The keys of a group's records that ``keep`` accepts, in first-seen order."""
    seen: dict[str, None] = {}
    for series in by_seed.values():
        for _, r in series:
            for k, v in r.items():
                if keep(k) and isinstance(v, int | float) and not isinstance(v, bool):
                    seen.setdefault(k, None)
    return list(seen)


def _series(points: list[tuple[int, Record]], key: str) -> tuple[list[float], list[float]]:
    """(x, y) of the records that carry ``key`` (epochs without evaluation lack it)."""
    xs, ys = [], []
    for x, r in points:
        if key in r and r[key] is not None:
            xs.append(float(x))
            ys.append(float(r[key]))
    return xs, ys


def _draw(ax, by_seed: dict[Any, list[tuple[int, Record]]], key: str, color: Any,
          style: str = "-") -> None:
    """One line per seed, or the mean with a ±std band over more than a few seeds."""
    import numpy as np

    if len(by_seed) <= MAX_SEED_LINES:
        for i, points in enumerate(by_seed.values()):
            xs, ys = _series(points, key)
            ax.plot(xs, ys, style, color=color, lw=1.2, alpha=1.0 if i == 0 else 0.6,
                    label=key if i == 0 else None)
        return
    columns: dict[float, list[float]] = defaultdict(list)
    for points in by_seed.values():
        for x, y in zip(*_series(points, key)):
            columns[x].append(y)
    xs = sorted(columns)
    with np.errstate(all="ignore"):
        mean = np.array([np.nanmean(columns[x]) if columns[x] else math.nan for x in xs])
        std = np.array([np.nanstd(columns[x]) for x in xs])
    ax.plot(xs, mean, style, color=color, lw=1.2, label=f"{key} (mean)")
    ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.2, lw=0)


def _panel(ax, by_seed, keys: list[str], title: str, xlabel: str) -> None:
    """Draw ``keys`` on one axis, colour per key; dashed for validation/test losses."""
    for i, key in enumerate(keys):
        evaluated_loss = key.endswith("_loss") and is_eval_key(key.removesuffix("_loss"))
        _draw(ax, by_seed, key, f"C{i % 10}", "--" if evaluated_loss else "-")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if keys:
        ax.legend(fontsize=7, loc="best")


def _seed_note(n: int) -> str:
    """How the seeds are drawn, for panel titles."""
    if n > MAX_SEED_LINES:
        return f"mean ± std over {n} seeds"
    return "one line per seed" if n > 1 else "1 seed"


def _curves_figure(groups):
    """Two panels per phase group: losses, then validation/test metrics."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(groups), 2, figsize=(10, 3 * len(groups)), squeeze=False)
    for row, (group, by_seed) in enumerate(groups.items()):
        spans = any("iteration" in r for pts in by_seed.values() for _, r in pts)
        xlabel = "epoch (GAM iterations in sequence)" if spans else "epoch"
        note = _seed_note(len(by_seed))
        _panel(axes[row][0], by_seed, _keys(by_seed, is_loss_key),
               f"{group}: loss ({note})", xlabel)
        _panel(axes[row][1], by_seed, _keys(by_seed, is_eval_key),
               f"{group}: validation / test ({note})", xlabel)
    fig.tight_layout()
    return fig


def _iterations_figure(records: list[Record]):
    """Three panels per GAM iteration: accuracy, labeled-set size, agreement accuracy."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    by_seed: dict[Any, list[tuple[int, Record]]] = defaultdict(list)
    for r in records:
        by_seed[r.get("seed", 0)].append((int(r["iteration"]), r))
    note = _seed_note(len(by_seed))
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    panels = ((["val_accuracy", "test_accuracy"], "accuracy"),
              (["labeled"], "labeled-set size"),
              (["agreement_accuracy"], "agreement accuracy"))
    for ax, (keys, title) in zip(axes, panels):
        present = [k for k in keys if any(k in r for r in records)]
        _panel(ax, dict(by_seed), present, f"{title} ({note})", "GAM iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> Path:
    """Save ``fig`` as PNG through a temporary file and an atomic rename; close it."""
    import matplotlib.pyplot as plt

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=DPI)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return path
