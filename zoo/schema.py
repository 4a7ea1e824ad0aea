"""Config schemas derived from a component's signature — one source of truth.

A component's keyword-only parameters (after ``*``) are its config: their type hints
give validation (ranges too: ``Annotated[int, Ge(1)]``), their defaults give defaults,
and the ``Args:`` section of the docstring gives the text ``zoo show`` prints.
Positional parameters are inputs the zoo supplies while assembling (``in_dim``,
``out_dim``, the dataset...), fixed per kind by :mod:`zoo.contracts`.

The parameters are read from the code by :mod:`zoo.introspect`. Two phases here:
:func:`coerce` checks a config value against its hint and returns the plain, JSON-able
value that goes into the resolved ``config.yaml``; :func:`materialize`
turns that value into what the factory receives (a nested component section becomes a
:class:`ComponentSpec` the component can build, a dataclass section its instance).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

from zoo.errors import ConfigError
from zoo.introspect import REQUIRED, Param, dataclass_params
from zoo.safe_yaml import excerpt

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Kind:
    """Marks a parameter as a nested component section of a kind:
    ``encoder: Annotated[dict, Kind("encoder")] = {"name": "mlp"}``. The component
    receives a :class:`ComponentSpec` it calls to build the section's component."""

    kind: str


@dataclass(frozen=True)
class Bound:
    """A range constraint on a number: ``Annotated[int, Ge(1)]``, ``Annotated[float,
    Ge(0), Lt(1)]``. Shown by ``zoo show`` and checked before anything is built."""

    op: str
    value: float

    def holds(self, x: float) -> bool:
        return {">=": x >= self.value, ">": x > self.value, "<=": x <= self.value,
                "<": x < self.value}[self.op]

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


def Ge(value: float) -> Bound:  # noqa: N802 - reads like annotated-types' markers
    """Greater than or equal to ``value``."""
    return Bound(">=", value)


def Gt(value: float) -> Bound:  # noqa: N802
    """Greater than ``value``."""
    return Bound(">", value)


def Le(value: float) -> Bound:  # noqa: N802
    """Less than or equal to ``value``."""
    return Bound("<=", value)


def Lt(value: float) -> Bound:  # noqa: N802
    """Less than ``value``."""
    return Bound("<", value)


class ComponentSpec:
    """A nested component section, bound to the experiment's registry.

    Call it with the kind's inputs to build a fresh component:
    ``self.encoder(in_dim, None)``; ``name`` and ``config`` are the section.
    """

    def __init__(self, kind: str, config: dict[str, Any],
                 build: Callable[..., Any], path: str = "") -> None:
        self.kind, self.config, self._build, self.path = kind, dict(config), build, path

    @property
    def name(self) -> str:
        return str(self.config["name"])

    def __call__(self, *inputs: Any) -> Any:
        return self._build(self.kind, self.config, *inputs, path=self.path or self.kind)

    def __repr__(self) -> str:
        return f"ComponentSpec({self.kind!r}, {self.config!r})"


def edit_distance(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) turning ``a`` into ``b``."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cost = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, prev2[j - 2] + 1)  # a typo's swapped letters
            cur.append(cost)
        prev2, prev = prev, cur
    return prev[-1]


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string. Of the
    similar choices, the fewest edits away wins (``gnc`` is one swap from ``gcn``)."""
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    best = min(close, key=lambda c: edit_distance(word, c))  # stable: difflib's order
    return f" (did you mean '{best}'?)"


def _split_annotated(tp: Any) -> tuple[Any, list[Any]]:
    if typing.get_origin(tp) is typing.Annotated:
        base, *meta = typing.get_args(tp)
        return base, meta
    return tp, []


def unexpressible(tp: Any) -> str | None:
    """Why a config cannot express values of type hint ``tp`` (None if it can)."""
    base, meta = _split_annotated(tp)
    if meta:
        problem = unexpressible(base)
        if problem:
            return problem
        kinds = [m for m in meta if isinstance(m, Kind)]
        if kinds and base not in (dict, typing.Dict) and typing.get_origin(base) is not dict:  # noqa: UP006
            return "a Kind(...) section must annotate dict"
        if any(isinstance(m, Bound) for m in meta) and base not in (int, float):
            return "range constraints (Ge, Gt, Le, Lt) apply to int and float only"
        return None
    origin = typing.get_origin(tp)
    if tp is Any or tp is inspect.Parameter.empty or tp in (int, float, bool, str, type(None)):
        return None
    if tp in (list, tuple, dict):
        return None
    if origin is Literal:
        bad = [a for a in typing.get_args(tp) if not isinstance(a, (str, int, float, bool))
               and a is not None]
        return f"Literal choices must be str, int, float, bool or None, not {bad[0]!r}" if bad \
            else None
    if origin in (Union, types.UnionType, list, tuple, typing.Sequence) or origin is dict:
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if origin is dict and args and args[0] is not str:
            return "mapping keys must be str"
        for a in args:
            problem = unexpressible(a)
            if problem:
                return problem
        return None
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        for p in dataclass_params(tp).values():
            problem = unexpressible(p.type)
            if problem:
                return f"field '{p.name}': {problem}"
        return None
    return (f"its type {type_name(tp)} cannot be written in a YAML config; take a str "
            "choice (Literal[...]) or numbers and build the object inside the component")


def type_name(tp: Any) -> str:
    """A readable name for a type hint (``int >= 1``, ``list[float]``, ``'a' | 'b'``)."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is inspect.Parameter.empty:
        return "any"
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        kinds = [m.kind for m in meta if isinstance(m, Kind)]
        if kinds:
            return f"{kinds[0]} section"
        bounds = [m for m in meta if isinstance(m, Bound)]
        return f"{type_name(base)} {range_text(bounds)}" if bounds else type_name(base)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "section"
    return getattr(tp, "__name__", str(tp))


def merge_section(value: Any, default: Any) -> Any:
    """A nested component section given in part: keys it leaves out come from the
    parameter's default section when both name the same component (or the value names
    none), so ``trainer.optimizer.lr=0.005`` keeps the default optimizer."""
    if isinstance(value, str):
        value = {"name": value}
    if not (isinstance(value, Mapping) and isinstance(default, Mapping)):
        return value
    if value.get("name") in (None, default.get("name")):
        return {**default, **value}
    return value


def range_text(bounds: list[Bound], nullable: bool = False) -> str:
    """``in [0, 1)``, ``>= 1`` or ``>= 1 or null``: the allowed values, as ``zoo show``
    and the errors write them."""
    if len(bounds) == 2 and bounds[0].op.startswith(">") and bounds[1].op.startswith("<"):
        lo, hi = bounds
        text = (f"in {'[' if lo.op == '>=' else '('}{lo.value:g}, "
                f"{hi.value:g}{']' if hi.op == '<=' else ')'}")
    else:
        text = " and ".join(str(b) for b in bounds)
    return text + (" or null" if nullable else "")


def coerce(value: Any, tp: Any, path: str, check_section: Any = None,
           default: Any = REQUIRED, nullable: bool = False) -> Any:
    """Check ``value`` against type hint ``tp`` and return its plain form (ints widen to
    floats, lists to tuples where asked). Raises :class:`ConfigError` naming ``path``.

    ``check_section(kind, section, path)`` validates nested component sections;
    ``default`` (the parameter's) fills what a partial nested section leaves out.
    """
    origin = typing.get_origin(tp)
    if tp is Any or tp is inspect.Parameter.empty:
        return value
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        kinds = [m for m in meta if isinstance(m, Kind)]
        if kinds and check_section is not None:
            value = merge_section(value, default)
            if not isinstance(value, Mapping):
                raise ConfigError(f"{path}: expected a {kinds[0].kind} section (a mapping with "
                                  f"'name'), got {_show(value)}")
            return check_section(kinds[0].kind, dict(value), path)
        bounds = [m for m in meta if isinstance(m, Bound)]
        if bounds and isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{path}: must be a finite number "
                              f"{range_text(bounds, nullable)}, got {value}")
        out = coerce(value, base, path, check_section, default)
        if not all(bound.holds(out) for bound in bounds):
            raise ConfigError(f"{path}: must be {range_text(bounds, nullable)}, got {out!r}")
        return out
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices and not (isinstance(value, bool) and True not in choices):
            return value
        hint = suggest(str(value), [str(c) for c in choices])
        raise ConfigError(f"{path}: {_show(value)} is not one of "
                          f"{', '.join(repr(c) for c in choices)}{hint}")
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(tp)):
            return None
        if len(options) == 1:  # `X | None` with a value: X's own, more precise, errors
            return coerce(value, options[0], path, check_section, default,
                          nullable=len(options) < len(typing.get_args(tp)))
        for arg in typing.get_args(tp):
            try:
                return coerce(value, arg, path, check_section, default)
            except ConfigError:
                pass
        raise ConfigError(f"{path}: expected {type_name(tp)}, got {_show(value)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{path}: expected null, got {_show(value)}")
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected {type_name(tp)}, got {_show(value)}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
            return tuple(coerce(v, a, f"{path}[{i}]", check_section)
                         for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [coerce(v, item, f"{path}[{i}]", check_section) for i, v in enumerate(value)]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {_show(value)}")
        args = typing.get_args(tp)
        vt = args[1] if len(args) == 2 else Any
        return {k: coerce(v, vt, f"{path}.{k}", check_section) for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return coerce_fields(value, dataclass_params(tp), path, check_section, "section")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not INT64_MIN <= value <= INT64_MAX:  # torch, numpy and DGL take int64
                raise ConfigError(f"{path}: {_show(value)} is out of range; a whole number "
                                  "here must fit in 64 bits")
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
                value = math.copysign(math.inf, value)  # float() would overflow
            if not math.isfinite(value):
                raise ConfigError(f"{path}: expected a finite number, got {value}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type):
        if isinstance(value, tp):
            return value
    else:
        return value
    raise ConfigError(f"{path}: expected {type_name(tp)}, got {_show(value)}")


def coerce_fields(value: Any, params: Mapping[str, Param], path: str, check_section: Any,
                  what: str, renamed: Mapping[str, str] | None = None,
                  skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Validate a mapping of named parameters (a component's or a dataclass section's):
    unknown keys with did-you-mean, renamed keys with their new place, defaults filled;
    keys in ``skip`` are left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {_show(value)}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in skip:
            continue
        if key not in params:
            if renamed and key in renamed:
                new = renamed[key]  # "/key": a top-level key
                target = f"{new[1:]} (top level)" if new.startswith("/") else f"{path}.{new}"
                raise ConfigError(f"{path}.{key} has moved: write {target} instead")
            hint = suggest(str(key), params) or (
                f"; {what} takes {', '.join(params) or 'no parameters'}")
            # A stranger's key, on one line and short.
            raise ConfigError(f"{path}.{excerpt(key, 40)}: unknown key for {what}{hint}")
        p = params[key]
        out[key] = coerce(item, p.type, f"{path}.{key}", check_section, p.default)
    for p in params.values():
        if p.name not in out:
            if p.required:
                raise ConfigError(f"{path}.{p.name} is required by {what} "
                                  f"({p.type_name()}){': ' + p.doc if p.doc else ''}")
            # Defaults go through the same checks (and nested sections get theirs filled).
            out[p.name] = coerce(p.default, p.type, f"{path}.{p.name}", check_section,
                                 p.default)
    return out


def _is_section(tp: Any) -> bool:
    """Whether ``tp`` (maybe ``X | None``) holds a nested component or dataclass section."""
    base, meta = _split_annotated(tp)
    if any(isinstance(m, Kind) for m in meta):
        return True
    if typing.get_origin(tp) in (Union, types.UnionType):
        return any(_is_section(a) for a in typing.get_args(tp))
    return dataclasses.is_dataclass(base) and isinstance(base, type)


def materialize(value: Any, tp: Any, make_spec: Callable[[str, dict, str], Any],
                path: str) -> Any:
    """What the factory receives for a validated ``value``: nested component sections
    become :class:`ComponentSpec` objects, dataclass sections their instances."""
    if value is None:
        return None
    base, meta = _split_annotated(tp)
    kinds = [m for m in meta if isinstance(m, Kind)]
    if kinds and isinstance(value, Mapping):
        return make_spec(kinds[0].kind, dict(value), path)
    if typing.get_origin(base) in (Union, types.UnionType):
        for arg in typing.get_args(base):
            if arg is not type(None) and _is_section(arg):
                return materialize(value, arg, make_spec, path)
        return value
    if dataclasses.is_dataclass(base) and isinstance(base, type) and isinstance(value, Mapping):
        params = dataclass_params(base)
        return base(**{k: materialize(v, params[k].type, make_spec, f"{path}.{k}")
                       for k, v in value.items()})
    if typing.get_origin(base) in (list, tuple, typing.Sequence) and isinstance(
            value, (list, tuple)):
        args = typing.get_args(base)
        items = [materialize(v, args[0] if args else Any, make_spec, f"{path}[{i}]")
                 for i, v in enumerate(value)]
        return type(value)(items)
    return value


def _show(value: Any) -> str:
    """A value for an error message: its kind and at most a short excerpt of it."""
    if isinstance(value, str):
        return f"the string {excerpt(repr(value))}"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return f"an integer of {value.bit_length()} bits"
    return f"{type(value).__name__} {excerpt(repr(value))}"
