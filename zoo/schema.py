"""Config schemas derived from a component's signature — one source of truth.

A component's keyword-only parameters (after ``*``) are its config: their type hints
give validation, their defaults give defaults, and the ``Args:`` section of the
docstring gives the text ``zoo show`` prints. Positional parameters are inputs the zoo
supplies while assembling a model (``in_dim``, ``out_dim``, the dataset...).
"""

from __future__ import annotations

import difflib
import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from zoo.errors import ConfigError

REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Kind:
    """Marks a parameter as a nested component section of a kind:
    ``encoder: Annotated[dict, Kind("encoder")] = {"name": "mlp"}``."""

    kind: str


@dataclass(frozen=True)
class Param:
    """One config parameter: name, type, default (``REQUIRED`` if none) and doc."""

    name: str
    type: Any
    default: Any
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def type_name(self) -> str:
        return type_name(self.type)


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_arg_docs(doc: str | None) -> dict[str, str]:
    """Parameter descriptions from a Google-style ``Args:`` section."""
    if not doc:
        return {}
    docs: dict[str, str] = {}
    lines = inspect.cleandoc(doc).splitlines()
    in_args, current, indent = False, None, None
    for line in lines:
        header = re.match(r"^(Args|Arguments|Parameters):\s*$", line.strip())
        if header and not line.startswith(" "):
            in_args, current = True, None
            continue
        if not in_args:
            continue
        if line.strip() and not line.startswith(" "):
            break  # the next section
        m = re.match(r"^(\s+)(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
        if m and (indent is None or len(m.group(1)) == indent):
            indent, current = len(m.group(1)), m.group(2)
            docs[current] = m.group(3).strip()
        elif current and line.strip():
            docs[current] = (docs[current] + " " + line.strip()).strip()
    return docs


def summary_line(obj: Any) -> str:
    """The first line of ``obj``'s docstring (what ``zoo list`` shows)."""
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def derive_params(factory: Any) -> tuple[tuple[str, ...], dict[str, Param]]:
    """Split ``factory``'s signature into (positional inputs, keyword-only config params)."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    sig = inspect.signature(target)
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable forward refs: fall back to raw annotations
        hints = {}
    docs: dict[str, str] = {}
    # A subclass inherits its bases' parameter docs and may document only what it changes.
    for source in reversed(factory.__mro__[:-1]) if inspect.isclass(factory) else [factory]:
        docs.update(parse_arg_docs(source.__doc__))
        if inspect.isclass(source) and "__init__" in vars(source):
            docs.update(parse_arg_docs(source.__init__.__doc__))
    inputs: list[str] = []
    params: dict[str, Param] = {}
    for i, (name, p) in enumerate(sig.parameters.items()):
        if inspect.isclass(factory) and i == 0:
            continue  # self
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind == p.KEYWORD_ONLY:
            tp = hints.get(name, p.annotation if p.annotation is not p.empty else Any)
            params[name] = Param(name, tp, p.default, docs.get(name, ""))
        else:
            inputs.append(name)
    return tuple(inputs), params


def type_name(tp: Any) -> str:
    """A readable name for a type hint (``int``, ``list[float]``, ``'a' | 'b'``)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return "any"
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        kinds = [m.kind for m in meta if isinstance(m, Kind)]
        return f"{kinds[0]} section" if kinds else type_name(base)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, path: str, check_section: Any = None) -> Any:
    """Check ``value`` against type hint ``tp`` and return it (ints widen to floats,
    lists to tuples where asked). Raises :class:`ConfigError` naming ``path``.

    ``check_section(kind, section, path)`` validates nested component sections.
    """
    origin = typing.get_origin(tp)
    if tp is Any or tp is inspect.Parameter.empty:
        return value
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        kinds = [m for m in meta if isinstance(m, Kind)]
        if kinds and check_section is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a {kinds[0].kind} section (a mapping with "
                                  f"'name'), got {_show(value)}")
            return check_section(kinds[0].kind, value, path)
        return coerce(value, base, path, check_section)
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
            return coerce(value, options[0], path, check_section)
        errors = []
        for arg in typing.get_args(tp):
            try:
                return coerce(value, arg, path, check_section)
            except ConfigError as e:
                errors.append(e)
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
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_show(value)}")
        args = typing.get_args(tp)
        vt = args[1] if len(args) == 2 else Any
        return {k: coerce(v, vt, f"{path}.{k}", check_section) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
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


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value!r}"
