"""Configs from strangers: YAML and OmegaConf interpolations within fixed limits.

A config is a few dozen values, so whatever would make one huge or slow is refused
before it expands: a file over :data:`MAX_BYTES`, YAML aliases that expand past
:data:`MAX_VALUES` values (a "billion laughs"), nesting deeper than :data:`MAX_DEPTH`,
and interpolations that copy sections holding copies of their own until the config
would exceed :data:`MAX_VALUES`. Interpolations may refer to other keys
(``${model.hidden}``) and read environment variables (``${oc.env:NAME}``); any other
resolver (OmegaConf's ``oc.decode`` and ``oc.create``, or one a plugin registered) is
refused, so a config never reaches code through OmegaConf. The YAML loader is a safe
one: ``!!python/object`` and other tags that would build objects are unknown to it.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import yaml

from zoo.errors import ConfigError

MAX_BYTES = 1 << 20
MAX_VALUES = 10_000
MAX_DEPTH = 64
RESOLVERS = ("oc.env",)

# Every "${" must open a reference (${a.b[0]}, ${..sibling}) or a resolver call (${name:...}).
_INTERPOLATION = re.compile(r"\$\{\s*([\w.\-\[\]]*)\s*(.)", re.S)


class YamlLimitError(ValueError):
    """A YAML document over one of the limits; the message says which."""


def excerpt(text: Any, limit: int = 60) -> str:
    """``text`` on one line, cut to ``limit`` characters: what an error may quote of a
    stranger's input."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@functools.cache
def yaml_loader() -> type:
    """OmegaConf's safe YAML loader (``1e-3`` is a float, as in config files), with
    aliases and nesting limited (:class:`YamlLimitError`)."""
    try:  # OmegaConf 2.4 keeps it in _yaml (with limits of its own, replaced here)
        from omegaconf._yaml import get_yaml_loader
        base = get_yaml_loader(max_yaml_expanded_nodes=None)
    except ImportError:
        try:
            from omegaconf._utils import get_yaml_loader
            base = get_yaml_loader()
        except ImportError:  # pragma: no cover - a future OmegaConf
            base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc, valid-type]
        def construct_document(self, node: yaml.Node) -> Any:
            _count_expanded(node)
            return super().construct_document(node)

    return Loader


def _count_expanded(root: yaml.Node) -> int:
    """Nodes of a composed document with every alias expanded, refusing early."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def count(node: yaml.Node, depth: int) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if depth > MAX_DEPTH:
            raise YamlLimitError(f"nests deeper than {MAX_DEPTH} levels")
        if id(node) in open_nodes:
            raise YamlLimitError("holds an alias to a section that contains it")
        open_nodes.add(id(node))
        total = 1
        children = (node.value if isinstance(node, yaml.SequenceNode) else
                    [n for pair in node.value for n in pair]
                    if isinstance(node, yaml.MappingNode) else [])
        for child in children:
            total += count(child, depth + 1)
            if total > MAX_VALUES:
                raise YamlLimitError(f"expands to more than {MAX_VALUES} values through its "
                                     "aliases (&name / *name)")
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    return count(root, 0)


def load_yaml(text: str) -> Any:
    """Parse a YAML document within the limits: :class:`yaml.YAMLError` for bad syntax,
    :class:`YamlLimitError` for a document too large, too deep or with a number of
    thousands of digits."""
    if len(text) > MAX_BYTES:
        raise YamlLimitError(f"is longer than {MAX_BYTES // 1024} KiB")
    try:
        return yaml.load(text, Loader=yaml_loader())
    except (yaml.YAMLError, YamlLimitError):
        raise
    except RecursionError:  # the pure-Python parser, before any limit is checked
        raise YamlLimitError(f"nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # int() of more digits than Python converts
        raise YamlLimitError(f"holds a value that cannot be read ({excerpt(e)})") from None


def check_interpolations(raw: Any, where: str) -> None:
    """Refuse resolvers other than :data:`RESOLVERS`, interpolations of an unknown form,
    references that refer to themselves, and any that would expand the config past
    :data:`MAX_VALUES` values. ``raw`` is the unresolved config as plain containers."""
    sizes: dict[tuple, int] = {}
    open_refs: set[tuple] = set()

    def size(value: Any, path: tuple, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}: interpolations at '{_dotted(path)}' nest deeper "
                              f"than {MAX_DEPTH} levels; refer to values directly")
        items = (value.items() if isinstance(value, dict) else enumerate(value)
                 if isinstance(value, list) else ())
        total = 1 + sum(size(v, (*path, k), depth + 1) for k, v in items)
        if isinstance(value, str) and "${" in value:
            total += sum(target_size(t, path, value, depth) for t in _references(
                value, path, where))
        if total > MAX_VALUES:
            raise ConfigError(f"{where}: interpolations expand the config to more than "
                              f"{MAX_VALUES} values (at '{_dotted(path)}'); refer to "
                              "fewer or smaller sections")
        return total

    def target_size(target: tuple, path: tuple, text: str, depth: int) -> int:
        if target in sizes:
            return sizes[target]
        if target in open_refs or target == path[: len(target)]:
            raise ConfigError(f"{where}: '{excerpt(text)}' at '{_dotted(path)}' refers to "
                              "itself; refer to another key")
        found, value = _lookup(raw, target)
        if not found:
            return 1  # OmegaConf reports the missing key when it resolves
        open_refs.add(target)
        sizes[target] = size(value, target, depth + 1)
        open_refs.discard(target)
        return sizes[target]

    size(raw, (), 0)


def _references(text: str, path: tuple, where: str) -> list[tuple]:
    """The absolute paths ``text``'s references point at; resolvers checked."""
    targets = []
    for match in _INTERPOLATION.finditer(text):
        token, after = match.group(1), match.group(2)
        if after == ":":
            if token not in RESOLVERS:
                raise ConfigError(
                    f"{where}: '{excerpt(text)}' at '{_dotted(path)}' calls the resolver "
                    f"'{excerpt(token, 30)}'; a config may only refer to other keys "
                    "(${model.hidden}) and read environment variables (${oc.env:NAME})")
        elif after == "}":
            # ${a.b} is absolute; ${.b} a sibling, ${..b} one level up, and so on.
            dots = len(token) - len(token.lstrip("."))
            parts = tuple(p for p in re.split(r"[.\[\]]+", token[dots:]) if p)
            targets.append((*path[: max(len(path) - dots, 0)], *parts) if dots else parts)
        else:
            raise ConfigError(
                f"{where}: '{excerpt(text)}' at '{_dotted(path)}' is an interpolation of a "
                "form configs do not use; write ${dotted.key} or ${oc.env:NAME}")
    return targets


def _lookup(raw: Any, target: tuple) -> tuple[bool, Any]:
    value = raw
    for part in target:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and str(part).isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _dotted(path: tuple) -> str:
    return excerpt(".".join(str(p) for p in path) or "<top>", 60)
