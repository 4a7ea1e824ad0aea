"""Checkpoints: every seed's best model, and the state that resumes an interrupted run.

A run folder keeps, while it trains, ``checkpoints/``:

- ``run.json``: the seeds of the run and what each finished seed reported (its metrics,
  epoch times, records written, wall time);
- ``seed-<k>/fit-<n>.pt``: one file per finished training loop (:meth:`zoo.Engine.fit`)
  of the seed in progress: the loop's result, the trained model's weights and the
  random-number generators' states right after it;
- ``seed-<k>/current.pt``: the loop in progress, saved every ``checkpoint.epochs``
  epochs or ``checkpoint.seconds`` seconds: model, optimizer, batch position, best
  weights so far, early-stopping state and generator states.

Resuming replays the seed's trainer from its start: each finished loop returns its
saved result, weights and generator states instead of training, and the loop in
progress continues from its last save. Whatever a trainer computes between loops (an
agreement model's pairs, self-labels) is recomputed from exactly the same state, so a
resumed run writes the same records and reports the same metrics as one that was never
interrupted (on the same machine; DGL's own sampling generator cannot be saved, so
neighbour-sampled training resumes on other random draws). Every file is written
atomically and read back with ``torch.load(weights_only=True)``: tensors and plain
containers only, never pickled code. The folder is removed when the run finishes.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import DataError

STATE_VERSION = 1


def save_file(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file and an atomic rename."""
    from zoo.run import default_file_mode

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_file(path: Path) -> Any:
    """A file :func:`save_file` wrote, loaded weights-only (no code runs), on the CPU."""
    try:
        with warnings.catch_warnings():  # torch's note on a foreign pickle protocol
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's text advises weights_only=False, i.e. running the file's code: never.
        asked = re.search(r"GLOBAL ([\w.]+)", str(e))
        if asked:
            raise DataError(f"refusing to load '{path}': it asks for {asked.group(1)}, which "
                            "a zoo checkpoint never needs, so it was tampered with; delete "
                            "it (nothing in it was run)") from None
        raise DataError(f"cannot load '{path}': it is damaged or holds more than tensors, so "
                        "it is not a zoo checkpoint; delete it (nothing in it was run)"
                        ) from None
    except Exception as e:  # truncation, a directory, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot load '{path}': {first[:300]}; the file is damaged or not "
                        "a zoo checkpoint") from None


def cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict's tensors, detached, cloned, on the CPU."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


# -- generator states ------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's generator states, as tensors and plain lists."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                  float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- one seed -------------------------------------------------------------------------
@dataclass
class Checkpointing:
    """When the loop in progress is saved: every ``epochs`` epochs and/or every
    ``seconds`` seconds (None: not on that account). A finished loop is always saved."""

    epochs: int | None = None
    seconds: float | None = 60.0

    @classmethod
    def from_config(cls, section: dict[str, Any] | None) -> Checkpointing:
        section = section or {}
        return cls(epochs=section.get("epochs"), seconds=section.get("seconds", 60.0))


@dataclass
class SeedCheckpoints:
    """The checkpoints of one seed in ``folder``: what a resumed run restores, and
    where the engine saves (see the module docstring)."""

    folder: Path
    policy: Checkpointing = field(default_factory=Checkpointing)
    finished: dict[int, dict[str, Any]] = field(default_factory=dict)
    current: dict[str, Any] | None = None
    _last_save: float = field(default_factory=time.monotonic)

    @classmethod
    def open(cls, folder: Path, policy: Checkpointing, resume: bool) -> SeedCheckpoints:
        """The seed's checkpoints; with ``resume``, those an earlier process left."""
        ck = cls(Path(folder), policy)
        if resume and ck.folder.is_dir():
            for path in sorted(ck.folder.glob("fit-*.pt")):
                index = path.stem.removeprefix("fit-")
                if index.isdigit():
                    ck.finished[int(index)] = load_file(path)
            if (ck.folder / "current.pt").is_file():
                ck.current = load_file(ck.folder / "current.pt")
        elif ck.folder.exists():
            shutil.rmtree(ck.folder)
        return ck

    @property
    def records(self) -> int:
        """Records this seed had written at its latest save (what the run keeps)."""
        counts = [s["records"] for s in self.finished.values()]
        if self.current is not None:
            counts.append(self.current["records"])
        return max(counts, default=0)

    def in_progress(self, index: int) -> dict[str, Any] | None:
        """The saved state of loop ``index``, if it was saved mid-way (used once)."""
        if self.current is None or self.current["fit"] != index:
            return None
        state, self.current = self.current, None
        return state

    def due(self, epoch: int) -> bool:
        """Whether the loop in progress should be saved after ``epoch``."""
        p = self.policy
        return bool((p.epochs and (epoch + 1) % p.epochs == 0) or (
            p.seconds is not None and time.monotonic() - self._last_save >= p.seconds))

    def save_progress(self, state: dict[str, Any]) -> None:
        save_file({"version": STATE_VERSION, **state}, self.folder / "current.pt")
        self._last_save = time.monotonic()

    def save_finished(self, index: int, state: dict[str, Any]) -> None:
        save_file({"version": STATE_VERSION, "fit": index, **state},
                  self.folder / f"fit-{index:04d}.pt")
        (self.folder / "current.pt").unlink(missing_ok=True)
        self._last_save = time.monotonic()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# -- the run --------------------------------------------------------------------------
class RunState:
    """``checkpoints/run.json``: the seeds of a run and what its finished seeds reported."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder) / "checkpoints"
        self.path = self.folder / "run.json"
        self.data: dict[str, Any] = {"version": STATE_VERSION, "seeds": [], "finished": {}}

    @classmethod
    def read(cls, run_dir: Path) -> RunState:
        state = cls(run_dir)
        if not state.path.is_file():
            from zoo.errors import ConfigError

            raise ConfigError(f"cannot resume '{run_dir}': it holds no interrupted run (no "
                              "checkpoints/run.json); give the folder of an interrupted "
                              "`zoo run`")
        try:
            data = json.loads(state.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("finished"), dict):
                raise ValueError("not a run state")
        except (OSError, ValueError) as e:
            raise DataError(f"cannot resume '{run_dir}': its checkpoints/run.json is "
                            f"missing or damaged ({type(e).__name__}); run the config "
                            "again into a new folder") from None
        state.data = data
        return state

    def write(self) -> None:
        from zoo.run import atomic_write

        atomic_write(self.path, json.dumps(self.data, indent=1) + "\n")

    @property
    def seeds(self) -> list[int]:
        return list(self.data["seeds"])

    def finished(self, seed: int) -> dict[str, Any] | None:
        return self.data["finished"].get(str(seed))

    def finish(self, seed: int, report: dict[str, Any]) -> None:
        self.data["finished"][str(seed)] = report
        self.write()

    def kept_records(self, seed_records: int) -> int:
        """Records of the finished seeds plus ``seed_records`` of the one in progress."""
        return sum(int(r["records"]) for r in self.data["finished"].values()) + seed_records

    def seed_folder(self, seed: int) -> Path:
        return self.folder / f"seed-{seed}"

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
