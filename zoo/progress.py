"""The progress display of a run: where it is (seed, phase, round, epoch), the monitored
metric, and the time left for the whole run.

In a terminal it is one live line on stderr, redrawn in place; elsewhere (a log file, a
pipe, CI) it prints a plain line at every phase change and at least every
``interval`` seconds while training, so a redirected run never looks stuck.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any


def duration(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3725`` -> ``1h02m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Progress of a run over ``seeds`` seeds, shown on ``stream`` (stderr)."""

    def __init__(self, enabled: bool = True, monitor: str = "val_accuracy", seeds: int = 1,
                 stream: IO[str] | None = None, interval: float = 10.0,
                 live: bool | None = None) -> None:
        self.enabled, self.monitor, self.seeds = enabled, monitor, max(seeds, 1)
        self.stream = stream or sys.stderr
        self.interval = interval
        self.started = time.monotonic()
        self.seeds_done = 0
        self.label = ""
        self.engine: Any = None
        self._phase: str | None = None
        self._last_line = 0.0
        self._last_draw = 0.0
        self._live = None
        if live is None:
            live = bool(getattr(self.stream, "isatty", lambda: False)())
        if enabled and live:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            self._text = Text
            self._live = Live(Text(""), console=Console(file=self.stream),
                              refresh_per_second=4, transient=True)
            self._live.start()

    # -- what the run tells it -------------------------------------------------------
    def start_seed(self, index: int, seed: int, engine: Any = None) -> None:
        """Seed number ``index`` (0-based) of the run, ``seed``, starts; ``engine`` says
        which round a trainer that trains in rounds is in."""
        self.seeds_done, self.engine = index, engine
        self.label = f"seed {seed} ({index + 1}/{self.seeds})"
        self._phase = None

    def update(self, phase: str, done: int, total: int, metrics: dict[str, float]) -> None:
        """The engine finished epoch ``done`` of ``total`` of ``phase``."""
        if not self.enabled:
            return
        now = time.monotonic()
        # Build the line only when it is shown (this runs after every epoch).
        if self._live is not None:
            if now - self._last_draw >= 0.1 or done == total:
                self._live.update(self._text(self._line(phase, done, total, metrics, now)))
                self._last_draw = now
            return
        if phase != self._phase or now - self._last_line >= self.interval:
            self._phase = phase
            self._last_line = now
            print(self._line(phase, done, total, metrics, now), file=self.stream, flush=True)

    def _line(self, phase: str, done: int, total: int, metrics: dict[str, float],
              now: float) -> str:
        return self.status(phase, done, total, metrics, self.fraction(done, total), now)

    def fraction(self, done: int, total: int) -> float:
        """The share of the whole run done (epochs of the current loop; a trainer's
        rounds, when it declares them; seeds)."""
        within = done / max(total, 1)
        rounds = getattr(self.engine, "round", None)
        if rounds is not None:
            round_done, round_total = rounds
            within = (round_done + within) / max(round_total, 1)
        return min((self.seeds_done + within) / self.seeds, 1.0)

    def status(self, phase: str, done: int, total: int, metrics: dict[str, float],
               fraction: float, now: float) -> str:
        """One line: where the run is, the monitored metric and the time left."""
        elapsed = now - self.started
        parts = [self.label, phase, f"epoch {done}/{total}"]
        value, best = metrics.get(self.monitor), metrics.get("best_" + self.monitor)
        if value is not None:
            parts.append(f"{self.monitor} {value:.4f}"
                         + (f" (best {best:.4f})" if best is not None else ""))
        eta = (f"ETA {duration(elapsed / fraction - elapsed)}" if fraction >= 0.005
               else "ETA ?")
        parts.append(f"run {fraction:.0%}, {duration(elapsed)} elapsed, {eta}")
        return " · ".join(parts)

    def line(self, text: str) -> None:
        """Print a line (above the live line, in a terminal)."""
        if not self.enabled:
            return
        if self._live is not None:
            self._live.console.print(text, highlight=False, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
