"""Experiment tracking: the run's records fanned out to its ``loggers:``.

A run has one stream of records, the lines of its ``metrics.jsonl``; the zoo hands the
same stream to every configured :class:`zoo.contracts.Logger` (TensorBoard, MLflow, a
file...) through a :class:`RecordStream`::

    stream = RecordStream(build_loggers(config["loggers"], registry))
    stream.start(RunInfo(run_dir, name, config, resumed=False))
    stream.log(record)                       # for every record metrics.jsonl gets
    stream.end(summary, "finished")          # or "failed" / "interrupted"

Loggers are plugins that talk to other software (a tracking server, a disk that fills
up): one that raises is switched off for the rest of the run with a warning, and the
run, and the other loggers, go on.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from zoo.contracts import RunInfo
from zoo.registry import Registry, component_name

STATUSES = ("finished", "failed", "interrupted")


class RecordStream:
    """One run's records, handed to each of its loggers, each isolated from the others.

    ``start``, ``log`` and ``end`` call the same method of every logger still on. A
    logger whose method raises is reported in one warning line and dropped for the rest
    of the run; the error goes no further. After ``end`` the stream is closed: a second
    ``end`` (a ``finally`` after a failure already reported) does nothing.
    """

    def __init__(self, loggers: Iterable[Any]) -> None:
        self.loggers = list(loggers)
        self.dropped: list[str] = []  # names of the loggers switched off, in order
        self.closed = False

    def start(self, run: RunInfo) -> None:
        """Tell every logger that ``run`` starts (or resumes)."""
        self._each("start", run)

    def log(self, record: dict[str, Any]) -> None:
        """Hand ``record`` to every logger (each its own copy, so none can alter what
        the others see)."""
        if not self.closed:
            for logger in list(self.loggers):
                self._call(logger, "log", dict(record))

    def end(self, summary: dict[str, Any] | None, status: str) -> None:
        """Tell every logger that the run ended with ``status`` ('finished', 'failed'
        or 'interrupted'); ``summary`` is the run's summary, or None if it has none."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        self._each("end", summary, status)
        self.closed = True

    def _each(self, method: str, *args: Any) -> None:
        if not self.closed:
            for logger in list(self.loggers):
                self._call(logger, method, *args)

    def _call(self, logger: Any, method: str, *args: Any) -> None:
        try:
            getattr(logger, method)(*args)
        except Exception as e:  # a plugin's failure must not take the run down
            name = component_name(logger)
            self.loggers.remove(logger)
            self.dropped.append(name)
            print(f"zoo: warning: logger '{name}' failed in {method}(): {_describe(e)}; it "
                  "is switched off for this run", file=sys.stderr)


def build_loggers(sections: list[dict[str, Any]], registry: Registry) -> list[Any]:
    """The loggers of a config's ``loggers:`` list, built (a missing package is a
    :class:`zoo.errors.ConfigError` now, before the run starts)."""
    return [registry.build("logger", section, path=f"loggers[{i}]")
            for i, section in enumerate(sections)]


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
