"""Run output: ``config.yaml`` (resolved), ``metrics.jsonl`` (one record per epoch per
seed), ``weights/seed-<k>.pt`` (each seed's best model) and ``summary.json``, written so
that a failure never leaves a half-written file."""

from __future__ import annotations

import contextlib
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


def default_run_dir(config_name: str, root: Path = Path("runs"), *,
                    create: bool = True) -> Path:
    """``runs/<config-name>-<timestamp>``, created here, empty (``create=False``: only
    the name, for a process that will not write the run).

    The folder is made with an exclusive ``mkdir``, the next suffix (``-2``, ``-3``...)
    taken when it exists: runs started in the same second, in several processes, each
    get their own folder; checking for the name first and creating it later would let
    two of them pick the same one.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if not create:
        return root / f"{config_name}-{stamp}"
    candidate, n = root / f"{config_name}-{stamp}", 1
    try:
        root.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                n += 1
                candidate = root / f"{config_name}-{stamp}-{n}"
    except OSError as e:
        raise ConfigError(f"cannot create a run folder in '{root}' ({e.strerror or e}); "
                          "run from a folder you can write, or give --out") from None


def remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` if it is empty (a reserved run folder a failed run left unused)."""
    with contextlib.suppress(OSError):
        folder.rmdir()


def _own_output() -> set[tuple[int, int]]:
    """The files this process's stdout and stderr write to, as ``(device, inode)``."""
    ids = set()
    for fd in (1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        ids.add((st.st_dev, st.st_ino))
    return ids


def _file_id(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_dev, st.st_ino


def check_new_run_dir(folder: Path) -> None:
    """A ConfigError unless a new run may write ``folder``: it is absent or an empty
    folder, not under a file, and holds no earlier run. A folder of the user's own
    files is refused (the run would overwrite its ``config.yaml`` and mix its files
    with theirs); the log this command's output is redirected into may be there
    (``zoo run ... --out x > x/run.log``)."""
    folder = Path(folder)
    try:
        _check_new_run_dir(folder)
    except OSError as e:  # a folder on the way that cannot be read (permissions)
        raise ConfigError(f"cannot use '{folder}' as the output folder ({e.strerror or e}); "
                          "choose a folder you can write for --out") from None


def _check_new_run_dir(folder: Path) -> None:
    finished = (folder / "summary.json").exists()
    if finished or (folder / "metrics.jsonl").exists():
        resumable = (folder / "checkpoints" / "run.json").is_file()
        hint = (f"continue it with `zoo run --resume {folder}`, " if resumable and
                not finished else "")
        raise ConfigError(f"output folder '{folder}' already holds a run; {hint}choose "
                          "another --out or remove it")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"output path '{folder}' is a file; choose a folder for --out")
    above = next((p for p in folder.parents if p.exists() or p.is_symlink()), None)
    if above is not None and not above.is_dir():
        raise ConfigError(f"output path '{folder}' is under '{above}', which is not a "
                          "folder; choose a folder for --out")
    if folder.is_dir():
        own = _own_output()
        theirs = sorted(p.name for p in folder.iterdir() if _file_id(p) not in own)
        if theirs:
            shown = ", ".join(theirs[:3]) + (f" and {len(theirs) - 3} more"
                                             if len(theirs) > 3 else "")
            raise ConfigError(f"output folder '{folder}' is not empty and holds no zoo run "
                              f"(it has {shown}); choose a new or empty folder for --out")


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
        if not resume:
            check_new_run_dir(self.dir)
        elif (finished := (self.dir / "summary.json").exists()) or not (
                self.dir / "checkpoints" / "run.json").is_file():
            why = ("it finished (it has summary.json)" if finished else
                   "it holds no interrupted run (no checkpoints/run.json)")
            raise ConfigError(f"cannot resume '{self.dir}': {why}; give the folder of an "
                              "interrupted `zoo run`")
        self._created = [] if resume else [p for p in (self.dir, *self.dir.parents)
                                           if not p.exists()]
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            # Line-buffered: every record reaches the file (the OS) as it is logged, once
            # an epoch at least, so a killed run (even SIGKILL) loses none it logged.
            self._metrics = open(self.dir / "metrics.jsonl", "a", encoding="utf-8",
                                 buffering=1)
        except OSError as e:
            self._remove_created()
            raise ConfigError(f"cannot write the run folder '{self.dir}' "
                              f"({e.strerror or e}); choose a folder you can write for "
                              "--out") from None
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
        self._remove_created()

    def _remove_created(self) -> None:
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
