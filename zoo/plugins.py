"""Plugin discovery: load every ``zoo.plugins`` entry point, each in isolation.

pluggy's ``load_setuptools_entrypoints`` stops at the first plugin that fails to
import, so the zoo loads entry points itself: a plugin that fails to import, whose
hook raises (or calls ``sys.exit``, or is interrupted), or that clashes with another is
skipped with a one-line warning and recorded, and the rest of the zoo keeps working.
While plugins load, their stdout goes to stderr (``zoo list --json`` stays JSON).

Loading collects what each plugin offers (:mod:`zoo.hookspec`): components into the
:class:`Registry`, its run hooks into ``registry.run_hooks``, its configs into
``manager.configs`` (named by :mod:`zoo.config`) and its commands into
``manager.commands`` (dispatched by :mod:`zoo.cli`).

Environment:
    ZOO_STRICT_PLUGINS=1   turn any plugin failure into an error.
    ZOO_PLUGINS=a,b        load only these third-party plugins (empty: built-ins only).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from zoo import hookspec
from zoo.errors import PluginError
from zoo.registry import BUILTIN_DISTRIBUTION, PluginRegistrar, Registry
from zoo.schema import suggest
from zoo.tracking import RUN_HOOKS, PluginHooks

GROUP = "zoo.plugins"
HOOKS = tuple(name for name in dir(hookspec) if name.startswith("zoo_"))
# The hooks called while a plugin loads; if one raises, nothing of the plugin is kept.
LOAD_HOOKS = ("zoo_register", "zoo_configs", "zoo_register_commands")
# What a plugin may raise at import or in a hook without taking the zoo down: a plugin
# that calls sys.exit, or whose import a stray KeyboardInterrupt ends, fails alone.
PLUGIN_ERRORS = (Exception, SystemExit, KeyboardInterrupt)
COMMAND_NAME = re.compile(r"[a-z][a-z0-9_-]*\Z")


@dataclass
class PluginInfo:
    """What ``zoo plugins`` reports about one plugin."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool
    status: str = "loaded"  # loaded | failed | skipped
    components: list[str] = field(default_factory=list)
    error: str | None = None
    refused: list[str] = field(default_factory=list)  # components not offered, and why
    replaces: list[str] = field(default_factory=list)  # what its override=True replaced
    configs: list[str] = field(default_factory=list)  # names of the configs it ships
    commands: list[str] = field(default_factory=list)  # the CLI commands it adds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ShippedConfig:
    """A config file a plugin ships (``zoo_configs``); :mod:`zoo.config` names it."""

    plugin: str
    distribution: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass(frozen=True)
class PluginCommand:
    """A ``zoo`` subcommand a plugin adds (``zoo_register_commands``)."""

    name: str
    plugin: str
    distribution: str
    parser: Callable[[], Any]  # returns the command's parser, which names its handler
    help: str = ""


class CommandRegistrar:
    """What a plugin's ``zoo_register_commands`` hook receives: ``add`` checks and
    buffers each command, so a plugin whose hook raises adds none."""

    def __init__(self, plugin: str, distribution: str) -> None:
        self.plugin, self.distribution = plugin, distribution
        self.pending: list[PluginCommand] = []
        self.refused: list[str] = []

    def add(self, name: str, parser: Callable[[], Any], help: str = "") -> None:
        """Add the command ``zoo NAME``: ``parser()`` returns its :class:`zoo.cli.Parser`,
        which names the handler with ``set_defaults(func=handler)``; ``help`` is the
        line ``zoo --help`` shows."""
        if not isinstance(name, str) or not COMMAND_NAME.match(name):
            self.refused.append(f"adds the command {name!r}; a command name is lowercase "
                                "letters, digits, '-' and '_', starting with a letter")
        elif not callable(parser):
            self.refused.append(f"adds the command '{name}' with a parser that is not a "
                                "function; pass a function returning a zoo.cli.Parser")
        else:
            lines = str(help or "").strip().splitlines()
            self.pending.append(PluginCommand(name, self.plugin, self.distribution, parser,
                                              lines[0] if lines else ""))


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _allowlist() -> set[str] | None:
    raw = os.environ.get("ZOO_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class PluginManager:
    """Loads plugins into a :class:`Registry` and remembers how each one fared."""

    def __init__(self, registry: Registry | None = None, *, warn: bool = True) -> None:
        self.registry = registry or Registry()
        self.warn = warn
        self.pm = pluggy.PluginManager(hookspec.PROJECT)
        self.pm.add_hookspecs(hookspec)
        self.plugins: list[PluginInfo] = []
        self.configs: list[ShippedConfig] = []
        self.commands: dict[str, PluginCommand] = {}

    def load_entry_points(self, entry_points: list[metadata.EntryPoint] | None = None,
                          *, strict: bool | None = None,
                          allow: set[str] | None | bool = False) -> list[PluginInfo]:
        """Load each entry point of the ``zoo.plugins`` group (built-ins first)."""
        strict = _flag("ZOO_STRICT_PLUGINS") if strict is None else strict
        allowed = _allowlist() if allow is False else allow
        if entry_points is None:
            entry_points = list(metadata.entry_points(group=GROUP))
        with contextlib.redirect_stdout(sys.stderr):
            self._load_all(entry_points, strict, allowed)
        return self.plugins

    def _load_all(self, entry_points: list[metadata.EntryPoint], strict: bool,
                  allowed: set[str] | None) -> None:
        taken: dict[str, PluginInfo] = {}

        def order(ep: metadata.EntryPoint) -> tuple[bool, str]:
            return (_dist_name(ep) != BUILTIN_DISTRIBUTION, ep.name)

        for ep in sorted(entry_points, key=order):
            dist, version = _dist_name(ep), _dist_version(ep)
            first = taken.get(ep.name)
            if first is not None and first.distribution == dist:
                continue  # the same distribution seen twice on sys.path
            info = PluginInfo(ep.name, ep.value, dist, version, dist == BUILTIN_DISTRIBUTION)
            self.plugins.append(info)
            if first is not None:  # its name would make plugin:name ambiguous
                owner = "the built-in plugin" if first.builtin else "plugin"
                self._fail(info, f"is not loaded: its entry-point name '{ep.name}' is taken "
                           f"by {owner} '{first.name}' ({first.distribution} {first.version}"
                           f"); rename the entry point in the [project.entry-points."
                           f"\"zoo.plugins\"] table of {dist or 'its'} pyproject.toml",
                           strict, None, status="skipped")
                continue
            taken[ep.name] = info
            if not info.builtin and allowed is not None and ep.name not in allowed:
                info.status = "skipped"
                info.error = "not in ZOO_PLUGINS"
                continue
            self._load_one(ep, info, strict)
        if allowed:
            names = {p.name for p in self.plugins if not p.builtin}
            for name in sorted(allowed - names):
                text = (f"ZOO_PLUGINS names '{name}', which no installed plugin provides"
                        f"{suggest(name, names)}; installed plugins: "
                        f"{', '.join(sorted(names)) or 'none'}")
                if strict:
                    raise PluginError(f"{text} (ZOO_STRICT_PLUGINS is set)")
                self._warn(text)

    def load_module(self, module: Any, name: str, *, distribution: str = "",
                    version: str = "", strict: bool = True) -> PluginInfo:
        """Register an already imported plugin module (tests, notebooks)."""
        info = PluginInfo(name, getattr(module, "__name__", name), distribution, version,
                          builtin=False)
        self.plugins.append(info)
        with contextlib.redirect_stdout(sys.stderr):
            self._register(module, info, strict)
        return info

    def _load_one(self, ep: metadata.EntryPoint, info: PluginInfo, strict: bool) -> None:
        try:
            module = ep.load()
        except PLUGIN_ERRORS as e:  # a plugin must not take the host down
            self._fail(info, f"failed to import: {_describe(e)}", strict, e)
            return
        self._register(module, info, strict)

    def _impls(self, hook: str, module: Any) -> list[Any]:
        """``module``'s implementations of ``hook`` (pluggy HookImpls)."""
        return [i for i in getattr(self.pm.hook, hook).get_hookimpls() if i.plugin is module]

    def _register(self, module: Any, info: PluginInfo, strict: bool) -> None:
        try:
            self.pm.register(module, name=info.name)
        except PLUGIN_ERRORS as e:
            self._fail(info, f"is not a valid zoo plugin: {_describe(e)}", strict, e)
            return
        registrar = PluginRegistrar(info.name, info.distribution, info.version)
        commands = CommandRegistrar(info.name, info.distribution)
        shipped: list[Any] = []  # what each zoo_configs returned
        given = {"registry": registrar, "commands": commands}
        hook = ""
        try:
            for hook in LOAD_HOOKS:
                for impl in self._impls(hook, module):
                    result = impl.function(**{name: given[name] for name in impl.argnames})
                    if hook == "zoo_configs":
                        shipped.append(result)
        except PLUGIN_ERRORS as e:
            self.pm.unregister(module)
            self._fail(info, f"raised in {hook}: {_describe(e)}", strict, e)
            return
        hook_problems = misspelled_hooks(module)
        for problem in hook_problems:
            self._fail(info, problem, strict, None, status="loaded")
        added, clashes = registrar.commit(self.registry)
        # A component that left a built-in its name is offered as plugin:name.
        info.components = [
            f"{c.kind}:{c.name}" if self.registry.find_exact(c.kind, c.name) is c
            or self.registry.find_exact(c.kind, c.name).clash
            else f"{c.kind}:{c.qualified_name}" for c in added]
        for c in added:
            if c.overrides and self.registry.find_exact(c.kind, c.name) is c:
                info.replaces.append(f"{c.kind}:{c.name} of {c.overrides}")
                self._warn(f"plugin '{info.name}' replaces {c.kind} '{c.name}' of "
                           f"{c.overrides} (override=True); the replaced one stays "
                           f"reachable as '{c.candidates[0].qualified_name}'")
        info.refused = list(registrar.refused)
        for problem in registrar.refused:
            self._fail(info, f"{problem}; it is not offered", strict, None, status="loaded")
        for clash in clashes:
            self._fail(info, clash, strict, None, status="loaded")
        for problem in [*self._add_configs(info, shipped), *self._add_commands(info, commands)]:
            self._fail(info, problem, strict, None, status="loaded")
        run_hooks = {hook: (impl.function, tuple(impl.argnames))
                     for hook in RUN_HOOKS for impl in self._impls(hook, module)}
        if run_hooks:
            self.registry.run_hooks.append(PluginHooks(info.name, run_hooks))
        other_hooks = any(self._impls(hook, module) for hook in HOOKS if hook != "zoo_register")
        if not (registrar.pending or registrar.refused or hook_problems or other_hooks):
            self._fail(info, "registers no components; its zoo_register hook (decorated "
                       "with @zoo.hookimpl) must call registry.add(kind, name, factory)",
                       strict, None, status="loaded")

    def _add_configs(self, info: PluginInfo, shipped: list[Any]) -> list[str]:
        """Offer the configs a plugin's ``zoo_configs`` returned; what was wrong."""
        files, problems = config_files(shipped)
        for path in files:
            if path.stem in info.configs:
                problems.append(f"ships two configs named '{path.stem}'; only the first is "
                                "offered (rename one)")
            elif ":" in path.stem:
                problems.append(f"ships the config '{path.name}'; a config name cannot hold "
                                "':' (it is for plugin:name), rename the file")
            else:
                info.configs.append(path.stem)
                self.configs.append(ShippedConfig(info.name, info.distribution, path))
        return problems

    def _add_commands(self, info: PluginInfo, commands: CommandRegistrar) -> list[str]:
        """Offer the commands a plugin added, unless the name is taken; what was wrong."""
        from zoo.cli import COMMANDS  # the zoo's own commands, which nobody replaces

        problems = [f"{problem}; it is not offered" for problem in commands.refused]
        for command in commands.pending:
            other = self.commands.get(command.name)
            if command.name in COMMANDS or other is not None:
                owner = "a built-in zoo command" if other is None else (
                    f"a command of plugin '{other.plugin}'")
                problems.append(f"adds the command '{command.name}', which is {owner}; it "
                                "cannot be replaced, so this one is not offered (choose "
                                "another name)")
            else:
                self.commands[command.name] = command
                info.commands.append(command.name)
        return problems

    def _fail(self, info: PluginInfo, message: str, strict: bool, exc: BaseException | None,
              status: str = "failed") -> None:
        info.status = status
        info.error = message if info.error is None else f"{info.error}; {message}"
        origin = f"{info.distribution} {info.version}".strip()
        text = f"plugin '{info.name}'{f' ({origin})' if origin else ''} {message}"
        if strict:
            why = "ZOO_STRICT_PLUGINS is set" if _flag("ZOO_STRICT_PLUGINS") else "strict loading"
            raise PluginError(f"{text} ({why})") from exc
        self._warn(f"{text}; skipped (set ZOO_STRICT_PLUGINS=1 to make this an error)"
                   if status == "failed" else text)

    def _warn(self, text: str) -> None:
        if self.warn:
            print(f"zoo: warning: {text}", file=sys.stderr)


def misspelled_hooks(module: Any) -> list[str]:
    """Hooks a plugin module meant to define but the zoo will never call: a function
    marked ``@zoo.hookimpl`` under a name that is no zoo hook (``zoo_registr``), any
    other function named ``zoo_*`` that is no hook (the prefix is the hooks'; as pytest
    does with ``pytest_*``), or a zoo hook's name without the marker."""
    problems = []
    for name, value in vars(module).items():
        if not inspect.isfunction(value) or getattr(value, "__module__", None) != module.__name__:
            continue
        marked = hasattr(value, hookspec.PROJECT + "_impl")
        if name not in HOOKS and (marked or name.startswith("zoo_")):
            problems.append(f"defines {'hook ' if marked else ''}'{name}', which is not a zoo "
                            f"hook{suggest(name, HOOKS)}; zoo hooks are {', '.join(HOOKS)}"
                            f"{'' if marked else ' (the zoo_ prefix is for hooks)'}")
        elif not marked and name in HOOKS:
            problems.append(f"defines {name} without @zoo.hookimpl, so the zoo never calls it; "
                            "decorate it")
    return problems


def config_files(shipped: list[Any]) -> tuple[list[Path], list[str]]:
    """The YAML files that ``zoo_configs`` hooks returned (each a folder, a file, or a list
    of either), and a problem line for each thing returned that is neither."""
    items: list[Any] = []
    for value in shipped:
        items += list(value) if isinstance(value, (list, tuple)) else [value]
    files, problems = [], []
    for item in items:
        if item is None:
            continue
        if not isinstance(item, (str, os.PathLike)) and not hasattr(item, "iterdir"):
            problems.append(f"zoo_configs returned {item!r}, which is not a path; return a "
                            "folder of .yaml files, a .yaml file, or a list of them")
            continue
        # importlib.resources paths of an installed package are file-system paths.
        path = Path(os.fspath(item) if isinstance(item, (str, os.PathLike)) else str(item))
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix == ".yaml" and p.is_file())
        elif path.is_file() and path.suffix == ".yaml":
            files.append(path)
        else:
            what = "not a .yaml file or a folder" if path.exists() else "missing"
            problems.append(f"zoo_configs returned '{item}', which is {what}; its configs "
                            "are not offered")
    return files, problems


def _dist_name(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else ""


def _dist_version(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else ""


_default: PluginManager | None = None


def default_manager(*, warn: bool = True) -> PluginManager:
    """The process's plugin manager, loaded from entry points on first use
    (``warn=False``: record plugin failures without printing warnings)."""
    global _default
    if _default is None:
        manager = PluginManager(warn=warn)
        manager.load_entry_points()
        _default = manager
    return _default


def reset_default_manager() -> None:
    """Forget the loaded plugins so the next use reloads them (tests, notebooks)."""
    global _default
    _default = None
