"""The component registry: every component, registered by plugins, checked against its
kind's contract when it registers, and built from a config section by name."""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zoo.contracts import KINDS, a, class_problems
from zoo.errors import ConfigError, ContractError, PluginError
from zoo.introspect import Param, derive_params, own_doc, summary_line
from zoo.schema import (
    ComponentSpec,
    coerce,
    coerce_fields,
    materialize,
    suggest,
    unexpressible,
)

BUILTIN_DISTRIBUTION = "zoo"


@dataclass
class Component:
    """A registered component: its kind, name, factory, schema and origin.

    ``candidates`` holds the other registrations of the same kind and name: the
    component a knowing override replaced, or plugins that clashed with it; each stays
    reachable under its qualified name ``plugin:name``.
    """

    kind: str
    name: str
    factory: Any
    plugin: str = ""
    distribution: str = ""
    version: str = ""
    inputs: tuple[str, ...] = ()
    params: dict[str, Param] = field(default_factory=dict)
    summary: str = ""
    overrides: str = ""  # the origin of the component this one replaced, if any
    clash: str = ""  # set when two third-party plugins registered this name without override
    candidates: list[Component] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"{self.distribution} {self.version}".strip() or self.plugin or "?"

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}:{self.name}"

    @property
    def renamed(self) -> Mapping[str, str]:
        """Config keys the component has moved: old key -> new dotted key."""
        return getattr(self.factory, "renamed_params", {}) or {}

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
                    "default": None if p.required else plain(p.default),
                    "required": p.required,
                    "doc": p.doc,
                }
                for p in self.params.values()
            },
            "candidates": [c.qualified_name + f" ({c.origin})" for c in self.candidates],
        }


def plain(value: Any) -> Any:
    """A default as it would be written in a config (dataclass sections as mappings)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value


def _clash_message(kind: str, name: str, who: str) -> str:
    return (f"{kind} '{name}' is registered by both {who}; uninstall one, select plugins "
            "with ZOO_PLUGINS, pick one as 'plugin:name', or register one with override=True")


class Registry:
    """Components by (kind, name), with one validation and one build path for all kinds."""

    def __init__(self) -> None:
        self._components: dict[tuple[str, str], Component] = {}
        # The run hooks of the plugins that registered here (zoo.tracking.PluginHooks):
        # an experiment built from this registry calls them as it runs.
        self.run_hooks: list[Any] = []

    # -- registration -------------------------------------------------------------
    def add_component(self, comp: Component, *, override: bool = False) -> None:
        """Add ``comp``. A name already taken is kept by a built-in (the newcomer stays
        a candidate, reachable as ``plugin:name``) unless the newcomer overrides
        knowingly; two third-party plugins taking one name is a clash, an error on use."""
        if comp.kind not in KINDS:
            raise PluginError(f"plugin '{comp.plugin}' registered unknown kind '{comp.kind}'"
                              f"{suggest(comp.kind, KINDS)}; kinds are {', '.join(KINDS)}")
        key = (comp.kind, comp.name)
        old = self._components.get(key)
        if old is None:
            self._components[key] = comp
            return
        if override:
            comp.overrides = old.origin
            comp.candidates = [old, *old.candidates]
            self._components[key] = comp
            return
        old.candidates.append(comp)
        if old.builtin and not old.overrides:
            raise PluginError(
                f"registers {comp.kind} '{comp.name}', which the zoo already provides; the "
                f"built-in keeps the name and yours is '{comp.qualified_name}' (register "
                "with override=True to replace the built-in knowingly)")
        old.clash = f"{old.clash or old.origin} and {comp.origin}"
        raise PluginError(_clash_message(comp.kind, comp.name, old.clash))

    # -- lookup -------------------------------------------------------------------
    def get(self, kind: str, name: str, path: str = "") -> Component:
        """The component ``name`` (or ``plugin:name``) of ``kind``, or a ConfigError with
        suggestions."""
        where = f"{path}: " if path else ""
        if kind not in KINDS:
            raise ConfigError(f"{where}unknown kind '{kind}'{suggest(kind, KINDS)}")
        qualifier, _, base = name.rpartition(":")
        comp = self._components.get((kind, base))
        if comp is not None and qualifier:
            chosen = [c for c in (comp, *comp.candidates)
                      if qualifier in (c.plugin, c.distribution)]
            if not chosen:
                options = ", ".join(c.qualified_name for c in (comp, *comp.candidates))
                raise ConfigError(f"{where}no plugin '{qualifier}' provides {kind} '{base}'; "
                                  f"candidates: {options}")
            return chosen[0]
        if comp is None:
            known = sorted(n for k, n in self._components if k == kind)
            others = [c for (k, n), c in self._components.items() if n == base]
            hint = f"; '{base}' is a {others[0].kind}" if others else suggest(base, known)
            raise ConfigError(f"{where}unknown {kind} '{base}'{hint}; known {kind}s: "
                              f"{', '.join(known) or 'none'}")
        if comp.clash:
            raise PluginError(f"{where}{_clash_message(kind, name, comp.clash)}")
        return comp

    def list(self, pattern: str = "*", kind: str | None = None) -> list[Component]:
        """Components whose name matches the wildcard ``pattern`` (and ``kind``)."""
        if kind is not None and kind not in KINDS:
            raise ConfigError(f"unknown kind '{kind}'{suggest(kind, KINDS)}; kinds are "
                              f"{', '.join(KINDS)}")
        kinds = list(KINDS)
        return sorted(
            (c for (k, n), c in self._components.items()
             if (kind is None or k == kind) and fnmatch.fnmatchcase(n, pattern)),
            key=lambda c: (kinds.index(c.kind), c.name),
        )

    def find_exact(self, kind: str, name: str) -> Component | None:
        """The component holding ``(kind, name)``, or None (no checks, no errors)."""
        return self._components.get((kind, name))

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
            raise ConfigError(f"{path}: expected a mapping with 'name' naming {a(kind)}")
        if "name" not in section:
            known = ", ".join(c.name for c in self.list(kind=kind))
            raise ConfigError(f"{path}.name is missing: name the {kind} to use ({known})")
        if not isinstance(section["name"], str):
            raise ConfigError(f"{path}.name: expected the name of {a(kind)}, got "
                              f"{section['name']!r}")
        comp = self.get(kind, section["name"], f"{path}.name")
        out = {"name": section["name"]}
        out.update(coerce_fields(section, comp.params, path, self.validate,
                                 f"{kind} '{comp.name}'", comp.renamed, skip=("name",)))
        return out

    def build(self, kind: str, section: Any, *inputs: Any, path: str | None = None) -> Any:
        """Build a component from its config section: ``name`` picks the component, the
        other keys are its keyword arguments, ``inputs`` its positional inputs. What the
        factory returns is checked against the kind's contract."""
        path = path or kind
        cfg = self.validate(kind, section, path)
        comp = self.get(kind, cfg.pop("name"))
        if len(inputs) != len(comp.inputs):
            raise TypeError(f"{kind} '{comp.name}' takes inputs ({', '.join(comp.inputs)}), "
                            f"got {len(inputs)}")

        def spec(nested_kind: str, section: dict, where: str) -> ComponentSpec:
            return ComponentSpec(nested_kind, section, self.build, where)

        kwargs = {k: materialize(v, comp.params[k].type, spec, f"{path}.{k}")
                  for k, v in cfg.items()}
        obj = comp.factory(*inputs, **kwargs)
        problem = KINDS[kind].problem(obj)
        if problem:
            raise ContractError(f"{kind} '{comp.name}' ({comp.origin}) broke its contract: "
                                f"{problem}, but it returned {a(type(obj).__name__)}")
        tag_component(obj, kind, comp.name)
        return obj


def tag_component(obj: Any, kind: str, name: str) -> None:
    """Remember which component ``obj`` is, for run-time contract errors and logs."""
    # Values that take no attributes (a tuple, a slotted object) need no label.
    with contextlib.suppress(AttributeError, TypeError):
        object.__setattr__(obj, "__zoo_component__", (kind, name))


def component_name(obj: Any) -> str:
    """The registered name of a built component (its class name otherwise)."""
    tag = getattr(obj, "__zoo_component__", None)
    return tag[1] if tag else type(obj).__name__


def component_label(obj: Any) -> str:
    """``"node_model 'gcn'"`` for a built component (its class name otherwise)."""
    tag = getattr(obj, "__zoo_component__", None)
    return f"{tag[0]} '{tag[1]}'" if tag else type(obj).__name__


def registration_problems(kind: str, name: str, factory: Any) -> tuple[list[str], tuple, dict]:
    """Every way ``factory`` breaks the rules for a ``kind`` component, from its
    definition alone; with its (inputs, params) when they could be derived."""
    if not callable(factory):
        return [f"{kind} '{name}' is not a class or function"], (), {}
    problems: list[str] = []
    if not own_doc(factory):
        problems.append(f"{kind} '{name}' has no docstring of its own (`zoo list` shows its "
                        "first line); add one that says what it is")
    try:
        inputs, defaulted, params = derive_params(factory)
    except (TypeError, ValueError) as e:
        return [*problems, f"{kind} '{name}': its signature cannot be read ({e})"], (), {}
    expected = KINDS[kind].inputs
    if defaulted:
        problems.append(f"{kind} '{name}': parameter '{defaulted[0]}' is positional; config "
                        "parameters must be keyword-only, after `*` (e.g. "
                        f"`def __init__(self, {', '.join([*expected, '*', defaulted[0]])}=...)`)")
    elif len(inputs) != len(expected):
        problems.append(f"{kind} '{name}' takes positional inputs ({', '.join(inputs)}) but "
                        f"{a(kind)} receives ({', '.join(expected) or 'none'}); put config "
                        "parameters after `*`")
    for p in params.values():
        why = unexpressible(p.type)
        if why:
            problems.append(f"{kind} '{name}': parameter '{p.name}': {why}")
        elif not p.required and p.default is not None:
            try:
                coerce(p.default, p.type, f"{name}.{p.name}")
            except ConfigError as e:
                problems.append(f"{kind} '{name}': the default of '{p.name}' does not match "
                                f"its type ({e})")
    problems += [f"{kind} '{name}': {why}" for why in class_problems(kind, factory)]
    return problems, inputs, params


class PluginRegistrar:
    """What a plugin's ``zoo_register`` hook receives. ``add`` checks each component
    against its kind's contract and buffers it, so that a plugin whose hook raises
    leaves nothing half-registered; components that break a rule are refused (see
    ``refused``) and never offered."""

    def __init__(self, plugin: str, distribution: str, version: str) -> None:
        self.plugin, self.distribution, self.version = plugin, distribution, version
        self.pending: list[tuple[Component, bool]] = []
        self.refused: list[str] = []

    def add(self, kind: str, name: str, factory: Any, *, override: bool = False) -> None:
        """Register ``factory`` as the ``kind`` component called ``name``.

        Pass ``override=True`` to knowingly replace a component of the same kind and
        name registered by another plugin (a built-in included).
        """
        if not isinstance(name, str) or not name or ":" in name:
            self.refused.append(f"registered {a(kind)} with the name {name!r}; give a "
                                "non-empty name without ':'")
            return
        if kind not in KINDS:
            self.refused.append(f"registered '{name}' as unknown kind '{kind}'"
                                f"{suggest(kind, KINDS)}; kinds are {', '.join(KINDS)}")
            return
        problems, inputs, params = registration_problems(kind, name, factory)
        if problems:
            self.refused.extend(problems)
            return
        comp = Component(kind, name, factory, self.plugin, self.distribution, self.version,
                         inputs, params, summary_line(factory))
        self.pending.append((comp, override))

    def commit(self, registry: Registry) -> tuple[list[Component], list[str]]:
        """Move the buffered components into ``registry``; returns the ones that took
        their name and the messages of those that clashed."""
        added, clashes = [], []
        for comp, override in self.pending:
            try:
                registry.add_component(comp, override=override)
                added.append(comp)
            except PluginError as e:
                clashes.append(str(e))
                added.append(comp)  # a candidate: reachable as plugin:name, or a clash
        return added, clashes
