"""Plugin discovery: load every ``zoo.plugins`` entry point, each in isolation.

pluggy's ``load_setuptools_entrypoints`` stops at the first plugin that fails to
import, so the zoo loads entry points itself: a plugin that fails to import, whose
hook raises (or calls ``sys.exit``), or that clashes with another is skipped with a
one-line warning and recorded, and the rest of the zoo keeps working.

Environment:
    ZOO_STRICT_PLUGINS=1   turn any plugin failure into an error.
    ZOO_PLUGINS=a,b        load only these third-party plugins (empty: built-ins only).
"""

from __future__ import annotations

import inspect
import os
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from zoo import hookspec
from zoo.errors import PluginError
from zoo.registry import BUILTIN_DISTRIBUTION, PluginRegistrar, Registry
from zoo.schema import suggest

GROUP = "zoo.plugins"
HOOKS = tuple(name for name in dir(hookspec) if name.startswith("zoo_"))


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    def load_entry_points(self, entry_points: list[metadata.EntryPoint] | None = None,
                          *, strict: bool | None = None,
                          allow: set[str] | None | bool = False) -> list[PluginInfo]:
        """Load each entry point of the ``zoo.plugins`` group (built-ins first)."""
        strict = _flag("ZOO_STRICT_PLUGINS") if strict is None else strict
        allowed = _allowlist() if allow is False else allow
        if entry_points is None:
            entry_points = list(metadata.entry_points(group=GROUP))
        seen: set[str] = set()

        def order(ep: metadata.EntryPoint) -> tuple[bool, str]:
            return (_dist_name(ep) != BUILTIN_DISTRIBUTION, ep.name)

        for ep in sorted(entry_points, key=order):
            if ep.name in seen:  # the same distribution seen twice on sys.path
                continue
            seen.add(ep.name)
            dist, version = _dist_name(ep), _dist_version(ep)
            info = PluginInfo(ep.name, ep.value, dist, version, dist == BUILTIN_DISTRIBUTION)
            self.plugins.append(info)
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
        return self.plugins

    def load_module(self, module: Any, name: str, *, distribution: str = "",
                    version: str = "", strict: bool = True) -> PluginInfo:
        """Register an already imported plugin module (tests, notebooks)."""
        info = PluginInfo(name, getattr(module, "__name__", name), distribution, version,
                          builtin=False)
        self.plugins.append(info)
        self._register(module, info, strict)
        return info

    def _load_one(self, ep: metadata.EntryPoint, info: PluginInfo, strict: bool) -> None:
        try:
            module = ep.load()
        except (Exception, SystemExit) as e:  # a plugin must not take the host down
            self._fail(info, f"failed to import: {_describe(e)}", strict, e)
            return
        self._register(module, info, strict)

    def _register(self, module: Any, info: PluginInfo, strict: bool) -> None:
        try:
            self.pm.register(module, name=info.name)
        except (Exception, SystemExit) as e:
            self._fail(info, f"is not a valid zoo plugin: {_describe(e)}", strict, e)
            return
        registrar = PluginRegistrar(info.name, info.distribution, info.version)
        impls = [i for i in self.pm.hook.zoo_register.get_hookimpls() if i.plugin is module]
        try:
            for impl in impls:
                impl.function(registry=registrar)
        except (Exception, SystemExit) as e:
            self.pm.unregister(module)
            self._fail(info, f"raised in zoo_register: {_describe(e)}", strict, e)
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
                self._warn(f"plugin '{info.name}' replaces {c.kind} '{c.name}' of "
                           f"{c.overrides} (override=True); the replaced one stays "
                           f"reachable as '{c.candidates[0].qualified_name}'")
        info.refused = list(registrar.refused)
        for problem in registrar.refused:
            self._fail(info, f"{problem}; it is not offered", strict, None, status="loaded")
        for clash in clashes:
            self._fail(info, clash, strict, None, status="loaded")
        if not registrar.pending and not registrar.refused and not hook_problems:
            self._fail(info, "registers no components; its zoo_register hook (decorated "
                       "with @zoo.hookimpl) must call registry.add(kind, name, factory)",
                       strict, None, status="loaded")

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
    marked ``@zoo.hookimpl`` under a name that is no zoo hook (``zoo_registr``), or a
    zoo hook's name without the marker."""
    problems = []
    for name, value in vars(module).items():
        if not inspect.isfunction(value) or getattr(value, "__module__", None) != module.__name__:
            continue
        marked = hasattr(value, hookspec.PROJECT + "_impl")
        if marked and name not in HOOKS:
            problems.append(f"defines hook '{name}', which is not a zoo hook"
                            f"{suggest(name, HOOKS)}; zoo hooks are {', '.join(HOOKS)}")
        elif not marked and name in HOOKS:
            problems.append(f"defines {name} without @zoo.hookimpl, so the zoo never calls it; "
                            "decorate it")
        elif not marked and name.startswith("zoo_") and suggest(name, HOOKS):
            problems.append(f"defines '{name}'{suggest(name, HOOKS)}; a hook needs the name "
                            "of a zoo hook and @zoo.hookimpl")
    return problems


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
