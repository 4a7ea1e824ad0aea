"""Reading a component from its code: the signature gives the config parameters (the
keyword-only ones, after ``*``) and the inputs (the positional ones), the docstring gives
the summary ``zoo list`` shows and, in its ``Args:`` section, each parameter's doc."""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from dataclasses import dataclass
from typing import Any

REQUIRED = inspect.Parameter.empty


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
        from zoo.schema import type_name

        return type_name(self.type)


def parse_arg_docs(doc: str | None) -> dict[str, str]:
    """Parameter descriptions from a Google-style ``Args:`` section."""
    if not doc:
        return {}
    docs: dict[str, str] = {}
    lines = inspect.cleandoc(doc).splitlines()
    in_args, current, indent = False, None, None
    for line in lines:
        header = re.match(r"^(Args|Arguments|Parameters|Attributes|Fields):\s*$", line.strip())
        if header and not line.startswith(" "):
            in_args, current, indent = True, None, None
            continue
        if not in_args:
            continue
        if line.strip() and not line.startswith(" "):
            in_args = False  # the next section
            continue
        m = re.match(r"^(\s+)(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
        if m and (indent is None or len(m.group(1)) == indent):
            indent, current = len(m.group(1)), m.group(2)
            docs[current] = m.group(3).strip()
        elif current and line.strip():
            docs[current] = (docs[current] + " " + line.strip()).strip()
    return docs


def own_doc(obj: Any) -> str:
    """``obj``'s own docstring: not one inherited from a base class (``nn.Module``'s)."""
    if inspect.isclass(obj):
        doc = vars(obj).get("__doc__")
    else:
        doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def summary_line(obj: Any) -> str:
    """The first line of ``obj``'s own docstring (what ``zoo list`` shows)."""
    doc = own_doc(obj).strip()
    return doc.splitlines()[0] if doc else ""


def _hints(target: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable forward refs: fall back to raw annotations
        return {}


def derive_params(factory: Any) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, Param]]:
    """Split ``factory``'s signature into (required positional inputs, positional
    parameters with a default — a forgotten ``*``, keyword-only config params)."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    sig = inspect.signature(target)
    hints = _hints(target)
    docs: dict[str, str] = {}
    # A subclass inherits its bases' parameter docs and may document only what it changes.
    for source in reversed(factory.__mro__[:-1]) if inspect.isclass(factory) else [factory]:
        docs.update(parse_arg_docs(source.__doc__))
        if inspect.isclass(source) and "__init__" in vars(source):
            docs.update(parse_arg_docs(source.__init__.__doc__))
    inputs: list[str] = []
    defaulted: list[str] = []
    params: dict[str, Param] = {}
    for i, (name, p) in enumerate(sig.parameters.items()):
        if inspect.isclass(factory) and i == 0:
            continue  # self
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind == p.KEYWORD_ONLY:
            tp = hints.get(name, p.annotation if p.annotation is not p.empty else Any)
            params[name] = Param(name, tp, p.default, docs.get(name, ""))
        elif p.default is not p.empty:
            defaulted.append(name)
        else:
            inputs.append(name)
    return tuple(inputs), tuple(defaulted), params


def dataclass_params(cls: type) -> dict[str, Param]:
    """The fields of a dataclass section as parameters (docs from its ``Args:``)."""
    hints = _hints(cls)
    docs = parse_arg_docs(cls.__doc__)
    out: dict[str, Param] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = REQUIRED
        out[f.name] = Param(f.name, hints.get(f.name, f.type), default, docs.get(f.name, ""))
    return out
