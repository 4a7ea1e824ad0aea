"""Run output: ``config.yaml`` (resolved), ``metrics.jsonl`` (one record per epoch per
seed), ``weights/seed-<k>.pt`` (each seed's best model) and ``summary.json``, written so
that a failure never leaves a half-written file."""

from __future__ import annotations

import json
import math
import os
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
    never overwrites an earlier one's results; ``resume`` opens an interrupted run's
    folder to go on writing it."""

    def __init__(self, out_dir: Path, resume: bool = False) -> None:
        self.dir = Path(out_dir)
        resumable = (self.dir / "checkpoints" / "run.json").is_file()
        finished = (self.dir / "summary.json").exists()
        if resume and (finished or not resumable):
            why = ("it finished (it has summary.json)" if finished else
                   "it holds no interrupted run (no checkpoints/run.json)")
            raise ConfigError(f"cannot resume '{self.dir}': {why}; give the folder of an "
                              "interrupted `zoo run`")
        if not resume and (finished or (self.dir / "metrics.jsonl").exists()):
            hint = (f"continue it with `zoo run --resume {self.dir}`, " if resumable and
                    not finished else "")
            raise ConfigError(f"output folder '{self.dir}' already holds a run; {hint}choose "
                              "another --out or remove it")
        if self.dir.exists() and not self.dir.is_dir():
            raise ConfigError(f"output path '{self.dir}' is a file; choose a folder for --out")
        self._created = [] if resume else [p for p in (self.dir, *self.dir.parents)
                                           if not p.exists()]
        self.dir.mkdir(parents=True, exist_ok=True)
        # Line-buffered: a killed run keeps every record written before it died.
        self._metrics = open(self.dir / "metrics.jsonl", "a", encoding="utf-8", buffering=1)
        self.records = 0

    def keep_records(self, count: int) -> None:
        """Keep the first ``count`` records of ``metrics.jsonl`` (a resumed run drops what
        was written after its last checkpoint, and writes it again)."""
        self._metrics.close()
        path = self.dir / "metrics.jsonl"
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        kept = [line for line in lines[:count] if line.endswith("\n")]
        atomic_write(path, "".join(kept))
        self._metrics = open(path, "a", encoding="utf-8", buffering=1)
        self.records = len(kept)

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

    def save_weights(self, seed: int, state: dict[str, Any], config: dict[str, Any],
                     metrics: dict[str, float]) -> Path:
        """Save a seed's trained model as ``weights/seed-<seed>.pt`` (atomically): its
        weights, with the resolved config, the seed's metrics and the zoo version, for
        ``zoo.load``, ``zoo predict``, ``zoo embed`` and ``zoo search``. Tensors and plain
        values only: it loads with ``torch.load(weights_only=True)``."""
        from zoo import __version__
        from zoo.checkpoint import cpu_state, save_file

        path = self.dir / "weights" / f"seed-{seed}.pt"
        save_file({"format": "zoo-weights", "zoo_version": __version__, "seed": seed,
                   "config": config, "metrics": metrics, "state_dict": cpu_state(state)},
                  path)
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
              task: dict[str, Any] | None = None,
              seed_wall_s: list[float] | None = None) -> dict[str, Any]:
    """The ``summary.json`` object: config, seeds, the task (name, monitored metric and
    its direction), every metric the seeds reported (mean/std/values), timing (with
    each seed's wall time)."""
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
                   "wall_s": round(wall_s, 3),
                   **({"seed_wall_s": [round(t, 3) for t in seed_wall_s]}
                      if seed_wall_s is not None else {})},
    }
