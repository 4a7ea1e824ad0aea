"""The component registry: every dataset, encoder, graph builder, regularizer, node
model and trainer, registered by plugins and built from a config section by name."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ConfigError, PluginError
from zoo.schema import Param, coerce, derive_params, suggest, summary_line

KINDS = ("dataset", "encoder", "graph_builder", "regularizer", "node_model", "trainer")


@dataclass
class Component:
    """A registered component: its kind, name, factory, schema and origin."""

    kind: str
    name: str
    factory: Any
    plugin: str = ""
    distribution: str = ""
    version: str = ""
    inputs: tuple[str, ...] = ()
    params: dict[str, Param] = field(default_factory=dict)
    summary: str = ""
    overrides: str = ""  # the distribution whose component this one replaced, if any
    clash: str = ""  # set when two plugins registered this (kind, name) without override

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}".strip() or self.plugin or "?"

    def defaults(self) -> dict[str, Any]:
        """The config section with every default filled in."""
        out: dict[str, Any] = {"name": self.name}
        out.update({p.name: p.default for p in self.params.values() if not p.required})
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (for ``zoo list --json`` and ``zoo show``)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "summary": self.summary,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
            "inputs": list(self.inputs),
            "params": {
                p.name: {
                    "type": p.type_name(),
                    "default": None if p.required else p.default,
                    "required": p.required,
                    "doc": p.doc,
                }
                for p in self.params.values()
            },
        }


class Registry:
    """Components by (kind, name), with one validation and one build path for all kinds."""

    def __init__(self) -> None:
        self._components: dict[tuple[str, str], Component] = {}

    # -- registration -------------------------------------------------------------
    def add_component(self, comp: Component, *, override: bool = False) -> None:
        """Add ``comp``; a clash with another distribution's component is recorded."""
        if comp.kind not in KINDS:
            raise PluginError(f"plugin '{comp.plugin}' registered unknown kind '{comp.kind}'"
                              f"{suggest(comp.kind, KINDS)}; kinds are {', '.join(KINDS)}")
        key = (comp.kind, comp.name)
        old = self._components.get(key)
        if old is not None and not override:
            comp.clash = f"{old.clash or old.origin} and {comp.origin}"
            self._components[key] = comp
            raise PluginError(
                f"{comp.kind} '{comp.name}' is registered by both {comp.clash}; uninstall "
                f"one, select plugins with ZOO_PLUGINS, or register one with override=True")
        if old is not None:
            comp.overrides = old.origin
        self._components[key] = comp

    # -- lookup -------------------------------------------------------------------
    def get(self, kind: str, name: str, path: str = "") -> Component:
        """The component ``name`` of ``kind``, or a ConfigError with suggestions."""
        where = f"{path}: " if path else ""
        if kind not in KINDS:
            raise ConfigError(f"{where}unknown kind '{kind}'{suggest(kind, KINDS)}")
        comp = self._components.get((kind, name))
        if comp is None:
            known = sorted(n for k, n in self._components if k == kind)
            others = [c for (k, n), c in self._components.items() if n == name]
            hint = f"; '{name}' is a {others[0].kind}" if others else suggest(name, known)
            raise ConfigError(f"{where}unknown {kind} '{name}'{hint}; known {kind}s: "
                              f"{', '.join(known) or 'none'}")
        if comp.clash:
            raise PluginError(
                f"{where}{kind} '{name}' is registered by both {comp.clash}; uninstall one, "
                f"select plugins with ZOO_PLUGINS, or register one with override=True")
        return comp

    def list(self, pattern: str = "*", kind: str | None = None) -> list[Component]:
        """Components whose name matches the wildcard ``pattern`` (and ``kind``)."""
        if kind is not None and kind not in KINDS:
            raise ConfigError(f"unknown kind '{kind}'{suggest(kind, KINDS)}; kinds are "
                              f"{', '.join(KINDS)}")
        return sorted(
            (c for (k, n), c in self._components.items()
             if (kind is None or k == kind) and fnmatch.fnmatchcase(n, pattern)),
            key=lambda c: (KINDS.index(c.kind), c.name),
        )

    def find(self, name: str) -> list[Component]:
        """Every component called ``name``, of any kind."""
        return [c for (k, n), c in self._components.items() if n == name]

    # -- config -------------------------------------------------------------------
    def validate(self, kind: str, section: Any, path: str) -> dict[str, Any]:
        """Check a config section against its component's schema; return it with
        defaults filled in. Errors name the full dotted ``path`` of the culprit."""
        if isinstance(section, str):
            section = {"name": section}
        if not isinstance(section, Mapping):
            raise ConfigError(f"{path}: expected a mapping with 'name' naming a {kind}")
        if "name" not in section:
            known = ", ".join(c.name for c in self.list(kind=kind))
            raise ConfigError(f"{path}.name is missing: name the {kind} to use ({known})")
        comp = self.get(kind, str(section["name"]), f"{path}.name")
        out: dict[str, Any] = {"name": comp.name}
        for key, value in section.items():
            if key == "name":
                continue
            if key not in comp.params:
                hint = suggest(str(key), comp.params) or (
                    f"; {kind} '{comp.name}' takes {', '.join(comp.params) or 'no parameters'}")
                raise ConfigError(f"{path}.{key}: unknown key for {kind} '{comp.name}'{hint}")
            out[key] = coerce(value, comp.params[key].type, f"{path}.{key}", self.validate)
        for p in comp.params.values():
            if p.name not in out:
                if p.required:
                    raise ConfigError(f"{path}.{p.name} is required by {kind} '{comp.name}' "
                                      f"({p.type_name()}){': ' + p.doc if p.doc else ''}")
                out[p.name] = p.default
        return out

    def build(self, kind: str, section: Any, *inputs: Any, path: str | None = None) -> Any:
        """Build a component from its config section: ``name`` picks the component, the
        other keys are its keyword arguments, ``inputs`` its positional inputs."""
        cfg = self.validate(kind, section, path or kind)
        comp = self.get(kind, cfg.pop("name"))
        if len(inputs) != len(comp.inputs):
            raise TypeError(f"{kind} '{comp.name}' takes inputs ({', '.join(comp.inputs)}), "
                            f"got {len(inputs)}")
        return comp.factory(*inputs, **cfg)


class PluginRegistrar:
    """What a plugin's ``zoo_register`` hook receives: ``add`` buffers registrations so
    that a plugin whose hook raises leaves nothing half-registered."""

    def __init__(self, plugin: str, distribution: str, version: str) -> None:
        self.plugin, self.distribution, self.version = plugin, distribution, version
        self.pending: list[tuple[Component, bool]] = []

    def add(self, kind: str, name: str, factory: Any, *, override: bool = False) -> None:
        """Register ``factory`` as the ``kind`` component called ``name``.

        Pass ``override=True`` to knowingly replace a component of the same kind and
        name registered by another plugin (otherwise that is a clash).
        """
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin '{self.plugin}' registered a {kind} with no name")
        if kind not in KINDS:
            raise PluginError(f"plugin '{self.plugin}' registered '{name}' as unknown kind "
                              f"'{kind}'{suggest(kind, KINDS)}; kinds are {', '.join(KINDS)}")
        inputs, params = derive_params(factory)
        for p in params.values():
            if not p.required and p.default is not None:
                try:
                    coerce(p.default, p.type, f"{name}.{p.name}")
                except ConfigError as e:
                    raise PluginError(f"plugin '{self.plugin}': default of {kind} "
                                      f"'{name}' does not match its type: {e}") from None
        comp = Component(kind, name, factory, self.plugin, self.distribution, self.version,
                         inputs, params, summary_line(factory))
        self.pending.append((comp, override))

    def commit(self, registry: Registry) -> tuple[list[Component], list[str]]:
        """Move the buffered components into ``registry``; returns them and any clashes."""
        added, clashes = [], []
        for comp, override in self.pending:
            try:
                registry.add_component(comp, override=override)
            except PluginError as e:
                clashes.append(str(e))
            added.append(comp)
        return added, clashes

