"""Experiment tracking: the run's records fanned out to its ``loggers:``.

A run has one stream of records, the lines of its ``metrics.jsonl``; the zoo hands the
same stream to every configured :class:`zoo.contracts.Logger` (TensorBoard, MLflow, a
file...) through a :class:`RecordStream`::

    stream = RecordStream(build_loggers(config["loggers"], registry))
    stream.start(RunInfo(run_dir, name, config, resumed=False))
    stream.log(record)                       # for every record metrics.jsonl gets
    stream.end(summary, "finished")          # or "failed" / "interrupted"

Plugins see the same stream through their run hooks (``zoo_run_start``, ``zoo_record``,
``zoo_run_end``; :mod:`zoo.hookspec`), called here right after the loggers as
:class:`PluginHooks`: ``RecordStream(loggers, hooks=registry.run_hooks)``.

Loggers and hooks are plugins that talk to other software (a tracking server, a disk
that fills up): one that raises is switched off for the rest of the run with a warning,
and the run, and the others, go on.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable
from typing import Any

from zoo.contracts import RunInfo
from zoo.registry import Registry, component_name

STATUSES = ("finished", "failed", "interrupted")
# The plugin hook each stream method calls (zoo/hookspec.py documents them).
HOOK_OF = {"start": "zoo_run_start", "log": "zoo_record", "end": "zoo_run_end"}
RUN_HOOKS = tuple(HOOK_OF.values())


class PluginHooks:
    """One plugin's run hooks, called like a logger's ``start``/``log``/``end``.

    ``hooks`` maps hook names of :data:`RUN_HOOKS` to ``(function, argnames)``; a hook the
    plugin lacks is skipped. What a hook prints to stdout goes to stderr. Make one per
    run with :meth:`for_run`: it remembers the run for ``zoo_run_end``.
    """

    def __init__(self, plugin: str,
                 hooks: dict[str, tuple[Callable[..., Any], tuple[str, ...]]]) -> None:
        self.plugin = plugin
        self.hooks = hooks
        self.run: RunInfo | None = None

    def for_run(self) -> PluginHooks:
        """A fresh copy, for one run."""
        return PluginHooks(self.plugin, self.hooks)

    def start(self, run: RunInfo) -> None:
        """``zoo_run_start(run)``."""
        self.run = run
        self._call("zoo_run_start", run=run)

    def log(self, record: dict[str, Any]) -> None:
        """``zoo_record(record)``."""
        self._call("zoo_record", record=record)

    def end(self, summary: dict[str, Any] | None, status: str) -> None:
        """``zoo_run_end(run, summary, status)``, for a run that started."""
        if self.run is not None:  # a run that never started has nothing to end
            self._call("zoo_run_end", run=self.run, summary=summary, status=status)

    def _call(self, hook: str, **kwargs: Any) -> None:
        if hook in self.hooks:
            function, argnames = self.hooks[hook]
            with contextlib.redirect_stdout(sys.stderr):
                function(**{name: kwargs[name] for name in argnames})


class RecordStream:
    """One run's records, handed to each of its loggers and plugin run hooks, each
    isolated from the others.

    ``start``, ``log`` and ``end`` call the same method of every logger still on, then
    the matching hook of every plugin still on. A logger or plugin whose method raises
    (``SystemExit`` included) is reported in one warning line and dropped for the rest
    of the run; the error goes no further. After ``end`` the stream is closed: a second
    ``end`` (a ``finally`` after a failure already reported) does nothing.
    """

    def __init__(self, loggers: Iterable[Any], hooks: Iterable[PluginHooks] = ()) -> None:
        # The plugins' run hooks go after the loggers, each its own copy for this run.
        self.loggers = [*loggers, *(h.for_run() for h in hooks)]
        # What was switched off, in order: logger names, and 'plugin:NAME' for plugins.
        self.dropped: list[str] = []
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
        except (Exception, SystemExit) as e:  # a plugin's failure must not take the run down
            self.loggers.remove(logger)
            if isinstance(logger, PluginHooks):
                self.dropped.append(f"plugin:{logger.plugin}")
                print(f"zoo: warning: plugin '{logger.plugin}' failed in {HOOK_OF[method]}(): "
                      f"{_describe(e)}; its run hooks are switched off for this run",
                      file=sys.stderr)
                return
            name = component_name(logger)
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
