"""Run output: ``config.yaml`` (resolved), ``metrics.jsonl`` (one record per epoch per
seed) and ``summary.json``, written so that a failure never leaves a half-written file,
plus the live progress display."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean, median, stdev
from typing import Any

from omegaconf import OmegaConf

from zoo.errors import ConfigError


def default_file_mode() -> int:
    """The mode a plain ``open()`` gives a new file: 0o666 less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename; the file
    gets the user's normal mode (``mkstemp`` alone would make it 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_run_dir(config_name: str, root: Path = Path("runs")) -> Path:
    """``runs/<config-name>-<timestamp>``, never an existing folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = root / f"{config_name}-{stamp}"
    n = 2
    while candidate.exists():
        candidate = root / f"{config_name}-{stamp}-{n}"
        n += 1
    return candidate


def stats(values: list[float]) -> dict[str, Any]:
    """``{"mean", "std", "values"}`` (sample std; 0 for a single value)."""
    clean = [float(v) for v in values]
    return {
        "mean": mean(clean) if clean else math.nan,
        "std": stdev(clean) if len(clean) > 1 else 0.0,
        "values": clean,
    }


class RunWriter:
    """Owns one run folder. It refuses a folder that already holds a run, so a new run
    never overwrites an earlier one's results."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = Path(out_dir)
        if (self.dir / "summary.json").exists() or (self.dir / "metrics.jsonl").exists():
            raise ConfigError(f"output folder '{self.dir}' already holds a run; choose "
                              "another --out or remove it")
        if self.dir.exists() and not self.dir.is_dir():
            raise ConfigError(f"output path '{self.dir}' is a file; choose a folder for --out")
        self._created = [p for p in (self.dir, *self.dir.parents) if not p.exists()]
        self.dir.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.dir / "metrics.jsonl", "a", encoding="utf-8")
        self.records = 0

    def write_config(self, config: dict[str, Any]) -> None:
        """Save the resolved config as ``config.yaml``."""
        atomic_write(self.dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(config)))

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to ``metrics.jsonl``."""
        self._metrics.write(json.dumps(record, default=float) + "\n")
        self.records += 1

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Save ``summary.json`` (atomically) and close the metrics file."""
        self._metrics.flush()
        atomic_write(self.dir / "summary.json", json.dumps(summary, indent=2) + "\n")

    def save_weights(self, seed: int, state: dict[str, Any]) -> Path:
        """Save a seed's trained weights as ``weights/seed-<seed>.pt`` (atomically), for
        ``zoo.load``, ``zoo embed`` and ``zoo search``."""
        import torch

        path = self.dir / "weights" / f"seed-{seed}.pt"
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save({k: v.detach().cpu() for k, v in state.items()}, tmp)
            os.chmod(tmp, default_file_mode())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def close(self) -> None:
        self._metrics.close()

    def discard(self) -> None:
        """Remove what this writer made, for a run that failed before its first record:
        it leaves nothing behind, and the same folder can hold the run once it is fixed."""
        self.close()
        for name in ("metrics.jsonl", "config.yaml"):
            (self.dir / name).unlink(missing_ok=True)
        for folder in self._created:  # the run folder first, then parents it had to make
            try:
                folder.rmdir()
            except OSError:
                break


def summarize(config: dict[str, Any], seeds: list[int], per_seed: list[dict[str, float]],
              epoch_ms: list[float], wall_s: float,
              task: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``summary.json`` object: config, seeds, the task (name, monitored metric and
    its direction), every metric the seeds reported (mean/std/values), timing."""
    keys: list[str] = []
    for m in per_seed:
        keys.extend(k for k in m if k not in keys)
    metrics = {k: stats([m.get(k, math.nan) for m in per_seed]) for k in keys}
    return {
        "config": config,
        "seeds": list(seeds),
        **({"task": task} if task is not None else {}),
        "metrics": metrics,
        "timing": {"epoch_ms_median": median(epoch_ms) if epoch_ms else 0.0,
                   "wall_s": round(wall_s, 3)},
    }


class Progress:
    """A live progress bar on stderr (a line per seed when stderr is not a terminal)."""

    def __init__(self, enabled: bool = True, monitor: str = "val_accuracy") -> None:
        self.enabled = enabled
        self.shown = ("loss", monitor, "best_" + monitor)
        self._bar = None
        self._task = None
        self._phase = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
            from rich.progress import Progress as RichProgress
            from rich.progress import TimeElapsedColumn

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True)
            self._bar.start()

    def update(self, label: str, phase: str, done: int, total: int,
               metrics: dict[str, float]) -> None:
        """Show the state of the current epoch loop."""
        if self._bar is None:
            return
        status = "  ".join(f"{k} {v:.3f}" for k, v in metrics.items()
                           if k in self.shown)
        desc = f"{label} {phase}"
        if self._task is None or self._phase != desc:
            if self._task is not None:
                self._bar.remove_task(self._task)
            self._task = self._bar.add_task(desc, total=total, status="")
            self._phase = desc
        self._bar.update(self._task, completed=done, total=total, status=status)

    def line(self, text: str) -> None:
        """Print a line above the bar (or to stderr)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(text, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
