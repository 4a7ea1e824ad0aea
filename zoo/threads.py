"""How many CPU threads a run computes with: a policy that shares the cores.

torch's default is one OpenMP thread per core. On an idle machine that is right; on a
busy one it is the worst choice there is: every parallel operation ends by waiting for
all its threads, so when another process holds a core each operation waits for a thread
the OS has descheduled. Two runs with two threads each on two cores are each several
times slower than with one thread each, and slower together than one after the other.

The policy ``auto`` (the default) gives a run the cores the rest of the machine leaves
free, and follows the load as it changes:

- the cap is the cores this process may use: its CPU affinity, the cgroup's CPU quota
  (``cpu.max``) and ``OMP_NUM_THREADS`` when set;
- at the start of training, and then at most every ``interval`` seconds between steps,
  it measures how many cores *other* processes kept busy since it last looked (busy
  time of this process's CPUs in ``/proc/stat``, less this process's own CPU time,
  over the wall time) and uses ``cap - others`` threads, at least one. A core counts
  as taken when others use more than a quarter of it, so two runs sharing two cores
  settle at one thread each instead of taking turns to grab both. Where there is no
  ``/proc/stat`` (macOS, Windows) the one-minute load average stands in for it.

A whole number N instead of ``auto`` means exactly N threads. The environment variable
``ZOO_THREADS`` (``auto`` or N) overrides the config's ``threads:``, so one setting
applies to every run of a sweep or a shared machine.

Changing the thread count mid-run can change floating-point results in the last bit
(a reduction split another way); set a fixed N where runs must be bitwise repeatable
whatever the machine's load.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from zoo.errors import ConfigError

ENV = "ZOO_THREADS"
TAKEN = 0.25  # others using more than this much of a core take it


def parse_threads(value: object, what: str = "threads") -> int | None:
    """A thread setting: None for ``auto``, else a whole number >= 1 (ConfigError)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what}: expected auto or a whole number >= 1, got {value!r}")
    return value


def usable_cores() -> int:
    """Cores this process may use: affinity, cgroup quota and OMP_NUM_THREADS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        cores = min(cores, int(omp))
    return max(1, cores)


def _cpu_ids() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def busy_seconds(cpus: set[int] | None) -> float | None:
    """Seconds the given CPUs (all when None) have been busy since boot, from
    ``/proc/stat``; None where there is no such file."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = 0
    found = False
    for line in lines:
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        values = [int(f) for f in fields[:8]]
        # user nice system idle iowait irq softirq steal: all but idle and iowait.
        busy += sum(values) - values[3] - values[4]
        found = True
    return busy / ticks if found else None


class ThreadPolicy:
    """Sets torch's (and DGL's) CPU threads for a run; see the module's documentation.

    Args:
        threads: None (``auto``) or a fixed number of threads.
        interval: seconds between two looks at the machine's load under ``auto``.
    """

    def __init__(self, threads: int | None = None, interval: float = 1.0) -> None:
        self.fixed = threads
        self.interval = interval
        self.cap = usable_cores()
        self.current: int | None = None
        self._previous: int | None = None
        self._cpus = _cpu_ids()
        self._last = self._sample()
        self.history: list[int] = []  # every thread count set, for reports and tests

    @classmethod
    def from_setting(cls, config_value: object = None) -> ThreadPolicy:
        """The policy of ``ZOO_THREADS`` if set, else of the config's ``threads:``."""
        env = os.environ.get(ENV)
        if env is not None and env.strip():
            return cls(parse_threads(env, f"{ENV} (environment variable)"))
        return cls(parse_threads(config_value))

    def _sample(self) -> tuple[float, float | None, float]:
        return time.monotonic(), busy_seconds(self._cpus), time.process_time()

    def others(self) -> float:
        """Cores other processes kept busy since the last look (and start a new window)."""
        now = self._sample()
        (t0, busy0, own0), (t1, busy1, own1) = self._last, now
        wall = t1 - t0
        if busy0 is None or busy1 is None:
            if not hasattr(os, "getloadavg"):
                return 0.0
            mine = self.current or 0
            return max(0.0, os.getloadavg()[0] - mine)
        if wall < 0.05:  # too short a window to say anything
            return 0.0
        self._last = now
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / wall)

    def choose(self) -> int:
        """The thread count for now."""
        if self.fixed is not None:
            return self.fixed
        free = self.cap - self.others()
        return max(1, min(self.cap, math.floor(free + TAKEN)))

    def _apply(self, threads: int) -> None:
        if threads != self.current:
            torch.set_num_threads(threads)
            try:  # DGL's kernels may run on their own OpenMP runtime
                from dgl.utils.internal import set_num_threads

                set_num_threads(threads)
            except Exception:  # noqa: BLE001 - DGL is optional for this
                pass
            self.current = threads
            self.history.append(threads)
        self._next = time.monotonic() + self.interval

    def begin(self) -> None:
        """Start of training: choose the thread count (remembering torch's setting)."""
        if self._previous is None:
            self._previous = torch.get_num_threads()
        if self.fixed is None:  # a window long enough to see the load (10 ms ticks)
            time.sleep(max(0.0, self._last[0] + 0.1 - time.monotonic()))
        self._apply(self.choose())

    def tick(self) -> None:
        """Between two steps: look at the load again if ``interval`` has passed."""
        if self.fixed is None and self.current is not None and time.monotonic() >= self._next:
            self._apply(self.choose())

    def end(self) -> None:
        """End of training: torch's thread setting as it was before :meth:`begin`."""
        if self._previous is not None:
            self._apply(self._previous)
            self._previous = None
        self.current = None
