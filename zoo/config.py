"""Experiment configs: OmegaConf YAML, command-line overrides, and validation of every
section against its component's schema before anything runs.

A config has these top-level keys (each section names its component with ``name``)::

    dataset:      {name: planetoid, subset: cora}     # required
    graph:        {name: knn, k: 10}                  # optional: a graph builder
    encoder:      {name: mlp, hidden: 64}             # optional: features -> embedding
    model:        {name: gcn, hidden: 16}             # optional: a node model
    task:         {name: node_classification}         # optional (this is the default)
    regularizers: [{name: distance, multiplier: 0.1}] # optional list
    loggers:      [tensorboard, {name: mlflow}]       # optional list: experiment tracking
    trainer:      {name: supervised, epochs: 200}     # required
    seeds: 1                                          # how many seeds (0..N-1)
    device: auto                                      # auto | cpu | cuda | cuda:N
    threads: auto                                     # auto | N (see zoo.threads)
    checkpoint: {epochs: null, seconds: 60}           # resumable saves (zoo.checkpoint)

Overrides are ``dotted.key=value`` (the value is YAML: ``model.hidden=64``,
``trainer.batches={name: neighbor_sampler, fanouts: [10, 10], batch_size: 64}``);
list items are addressed by index (``regularizers.0.multiplier=0.1``),
``KEY+=VALUE`` appends to a list (``regularizers+={name: distance}``) and ``~KEY``
removes a key or a list item (``~regularizers.0``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from zoo.errors import ConfigError, UsageError
from zoo.registry import Registry
from zoo.runtime import resolve_device
from zoo.safe_yaml import MAX_BYTES, YamlLimitError, check_interpolations, excerpt, load_yaml
from zoo.schema import suggest
from zoo.threads import parse_threads

SECTIONS = {"dataset": "dataset", "graph": "graph_builder", "encoder": "encoder",
            "model": "node_model", "task": "task", "trainer": "trainer"}
TOP_LEVEL = (*SECTIONS, "regularizers", "loggers", "seeds", "device", "threads", "checkpoint",
             "description")
DEFAULT_TASK = "node_classification"
MAX_SEEDS = 10_000  # each seed is a whole training run
# Keys as overrides name them: names and list indices, dotted (a[0] is a.0 too).
_DOTTED_KEY = re.compile(r"[\w\-]+(\[\d+\])*(\.[\w\-]+(\[\d+\])*)*")


@dataclass
class LoadedConfig:
    """A config as read from YAML plus overrides, before validation."""

    name: str
    source: str
    raw: dict[str, Any]


def bundled_configs() -> dict[str, Path]:
    """Configs shipped with the package, by name (``gcn_cora`` -> its YAML file)."""
    found: dict[str, Path] = {}
    try:
        root = resources.files("zoo.configs")
        for entry in root.iterdir():
            if entry.name.endswith(".yaml"):
                found[entry.name[:-5]] = Path(str(entry))
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        pass
    # An editable install or a checkout keeps them in the repo's configs/ folder.
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if checkout.is_dir():
        for entry in checkout.glob("*.yaml"):
            found.setdefault(entry.stem, entry)
    return found


@dataclass(frozen=True)
class NamedConfig:
    """A config ``zoo run NAME`` finds by name: bundled with the zoo, or shipped by a
    plugin (its ``zoo_configs`` hook, :mod:`zoo.hookspec`)."""

    name: str  # what `zoo run` takes: the plain name, or plugin:name where that is taken
    path: Path
    origin: str  # "bundled", or the name of the plugin that ships it
    distribution: str = ""

    @property
    def description(self) -> str:
        """The first line of the config's header comment ('' without one)."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                head = f.read(4096)
        except OSError:
            return ""
        for line in head.splitlines():
            if line.strip():
                return line.strip().lstrip("#").strip() if line.lstrip().startswith("#") else ""
        return ""

    def to_dict(self) -> dict[str, str]:
        """A JSON-able description (for ``zoo configs --json``)."""
        return {"name": self.name, "origin": self.origin, "distribution": self.distribution,
                "path": str(self.path), "description": self.description}


def _shipped_configs() -> list[Any]:
    """The configs installed plugins ship (zoo.plugins.ShippedConfig), loading plugins."""
    from zoo.plugins import default_manager

    return default_manager().configs


def named_configs() -> list[NamedConfig]:
    """Every config reachable by name, sorted: the bundled ones under their plain names,
    and each plugin's under its plain name where neither a bundled config nor another
    plugin's has it, else as ``plugin:name``."""
    bundled = bundled_configs()
    found = [NamedConfig(name, path, "bundled") for name, path in bundled.items()]
    shipped = _shipped_configs()
    for c in shipped:
        plain = c.name not in bundled and sum(o.name == c.name for o in shipped) == 1
        found.append(NamedConfig(c.name if plain else f"{c.plugin}:{c.name}", c.path,
                                 c.plugin, c.distribution))
    return sorted(found, key=lambda c: (c.name.rpartition(":")[2], c.name))


def _plugin_config(name: str, bundled: dict[str, Path]) -> Path | None:
    """The plugin config ``name`` (``plugin:name`` or a plain name no bundled config
    has) names, None if no plugin ships it; ambiguous or misqualified names raise."""
    qualifier, _, base = name.rpartition(":")
    shipped = [c for c in _shipped_configs() if c.name == base]
    if qualifier:
        chosen = [c for c in shipped if qualifier in (c.plugin, c.distribution)]
        if chosen:
            return chosen[0].path
        if shipped or base in bundled:
            options = [f"{c.plugin}:{base}" for c in shipped] + (
                [base] if base in bundled else [])
            raise ConfigError(f"no plugin '{qualifier}' ships config '{base}'; run it as "
                              f"{' or '.join(repr(o) for o in options)}")
        return None
    if len(shipped) > 1:
        options = " or ".join(f"'{c.plugin}:{base}'" for c in shipped)
        raise ConfigError(f"config '{base}' is shipped by several plugins "
                          f"({', '.join(c.plugin for c in shipped)}); run it as {options}")
    return shipped[0].path if shipped else None


def resolve_config_path(source: str | Path) -> Path:
    """A config path as given, or the config of that name: bundled, or shipped by a
    plugin (``name`` or ``plugin:name``; see :func:`named_configs`)."""
    path = Path(source)
    if path.is_file():
        return path
    bundled = bundled_configs()
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    by_name = path.suffix in ("", ".yaml") and len(path.parts) == 1
    if by_name and name in bundled:  # the bundled one keeps its name: no plugins needed
        return bundled[name]
    found = _plugin_config(name, bundled) if by_name and not path.exists() else None
    if found is not None:
        return found
    if path.exists():
        raise ConfigError(f"config '{source}' is not a file; give a YAML file")
    known = [c.name for c in named_configs()] if by_name else sorted(bundled)
    raise ConfigError(
        f"config file '{source}' not found{suggest(name, known)}; give a path to a YAML "
        f"file or the name of a config ({', '.join(known) or 'none'}; `zoo configs` "
        "lists them)")


def load_config(source: str | Path | dict[str, Any], overrides: list[str] | None = None,
                ) -> LoadedConfig:
    """Read a config (path, bundled name, or dict) and apply ``KEY=VALUE`` overrides;
    YAML and interpolations stay within the limits of :mod:`zoo.safe_yaml`."""
    if isinstance(source, (dict, DictConfig)):
        data, name, where = source, "config", "<dict>"
    else:
        path = resolve_config_path(source)
        name, where = path.stem, str(path)
        data = _read_yaml_file(path)
        data = {} if data is None else data  # an empty file: "dataset is missing"
        if not isinstance(data, dict):  # a text file reads as one string: do not echo it
            kind = f"a {type(data).__name__}"
            raise ConfigError(f"config '{where}' must be a YAML mapping of sections "
                              f"({', '.join(TOP_LEVEL)}), not {kind}; give a config file")
    try:
        cfg = OmegaConf.create(data)
    except OmegaConfBaseException as e:
        raise ConfigError(f"config '{where}' is not valid: {_first_line(e)}") from None
    check_interpolations(OmegaConf.to_container(cfg, resolve=False), f"config '{where}'")
    # Switching a section's component (`encoder.name=other`) starts that section afresh:
    # the old component's parameters would not fit the new one.
    items = list(overrides or [])
    renames = [i for i in items if i.partition("=")[0].strip().endswith(".name")
               and _DOTTED_KEY.fullmatch(i.partition("=")[0].strip())]
    for item in renames:
        section = item.partition("=")[0].strip()[: -len(".name")]
        try:
            current = OmegaConf.select(cfg, section)
        except OmegaConfBaseException:
            current = None
        new_name = item.partition("=")[2].strip()
        if isinstance(current, DictConfig) and current.get("name") not in (None, new_name):
            OmegaConf.update(cfg, section, {}, merge=False)
    for item in renames + [i for i in items if i not in renames]:
        apply_override(cfg, item)
        check_interpolations(OmegaConf.to_container(cfg, resolve=False),
                             f"override '{excerpt(item)}'")
    try:
        raw = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"config '{where}': {_first_line(e)}") from None
    return LoadedConfig(name, where, raw)  # type: ignore[arg-type]


def is_override(arg: str) -> bool:
    """Whether a command-line word is an override (``KEY=VALUE``, ``KEY+=VALUE``, ``~KEY``)."""
    return "=" in arg or (arg.startswith("~") and len(arg) > 1)


def _read_yaml_file(path: Path) -> Any:
    """A config file's YAML document, within the limits of :mod:`zoo.safe_yaml`."""
    where = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
        text = raw.decode("utf-8")
        if len(raw) > MAX_BYTES:
            raise YamlLimitError(f"is longer than {MAX_BYTES // 1024} KiB")
        return load_yaml(text)
    except OSError as e:
        raise ConfigError(f"cannot read config '{where}': {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config '{where}' is not UTF-8 text; give a YAML file") from None
    except YamlLimitError as e:
        raise ConfigError(f"config '{where}' {e}, more than any config needs; give a "
                          "config file") from None
    except yaml.YAMLError as e:
        mark, problem = _yaml_problem(e)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config '{where}' has a YAML syntax error{at}: {problem}; "
                          "fix the file") from None


def _yaml_problem(e: BaseException) -> tuple[Any, str]:
    """Where a YAML error is (its mark, or None) and what it is (a short excerpt)."""
    return (getattr(e, "problem_mark", None),
            excerpt(getattr(e, "problem", None) or _first_line(e), 120))


def parse_value(item: str, value: str) -> Any:
    """An override's value, read as YAML (``64``, ``[10, 10]``, ``{name: adam}``)."""
    try:
        return load_yaml(value) if value.strip() else None
    except YamlLimitError as e:
        raise UsageError(f"override '{excerpt(item)}': the value {e}; write it out "
                         "plainly") from None
    except yaml.YAMLError as e:
        mark, problem = _yaml_problem(e)
        where = f" at column {mark.column + 1}" if mark else ""
        raise UsageError(f"override '{excerpt(item)}': the value is not valid YAML{where} "
                         f"({problem}); quote it or fix the brackets") from None


def apply_override(cfg: DictConfig, item: str) -> None:
    """Apply one override: ``dotted.key=value`` (value parsed as YAML; list items by
    index), ``dotted.key+=value`` (append to a list) or ``~dotted.key`` (remove)."""
    if item.startswith("~") and "=" not in item:
        _remove(cfg, item, _dotted_key(item, item[1:].strip()))
        return
    key, sep, value = item.partition("=")
    key = key.strip()
    append = key.endswith("+")
    key = key.rstrip("+").strip()
    if not sep or not key:
        raise UsageError(f"override '{excerpt(item)}' must look like KEY=VALUE, e.g. "
                         "model.hidden=64 (KEY+=VALUE appends to a list, ~KEY removes)")
    key = _dotted_key(item, key)
    parsed = parse_value(item, value)
    try:
        if append:
            current = OmegaConf.select(cfg, key)
            if current is not None and not isinstance(current, ListConfig):
                raise ConfigError(f"override '{excerpt(item)}': '{excerpt(key)}' is not a "
                                  f"list, so nothing can be appended; write "
                                  f"{excerpt(key)}=VALUE")
            items = list(current or []) + (parsed if isinstance(parsed, list) else [parsed])
            OmegaConf.update(cfg, key, items, merge=False)
        else:
            OmegaConf.update(cfg, key, parsed, merge=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"override '{excerpt(item)}' cannot be applied: {_list_hint(cfg, key, e)}"
                          ) from None


def _dotted_key(item: str, key: str) -> str:
    """``key`` if it is a dotted key (``model.hidden``, ``regularizers.0.multiplier``)."""
    if not _DOTTED_KEY.fullmatch(key):
        raise UsageError(f"override '{excerpt(item)}': '{excerpt(key)}' is not a dotted key "
                         "such as model.hidden or regularizers.0.multiplier")
    return key


def _list_hint(cfg: DictConfig, key: str, e: BaseException) -> str:
    """An index past a list's end: say how long it is and how to add an item."""
    parts = key.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            parent = ".".join(parts[:i])
            current = OmegaConf.select(cfg, parent, default=None)
            if isinstance(current, ListConfig) and int(part) >= len(current):
                return (f"'{parent}' has {len(current)} item(s); add one with "
                        f"{parent}+={{name: ...}}")
    return _first_line(e)


def _remove(cfg: DictConfig, item: str, key: str) -> None:
    parent_key, _, last = key.rpartition(".")
    try:
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    except OmegaConfBaseException:
        parent = None
    if isinstance(parent, ListConfig) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    elif isinstance(parent, DictConfig) and last in parent:
        del parent[last]
    else:
        raise ConfigError(f"override '{excerpt(item)}': there is no '{excerpt(key)}' to remove")


def validate_config(loaded: LoadedConfig, registry: Registry) -> dict[str, Any]:
    """Check every section against its component schema; return the resolved config
    (all defaults filled in), or raise :class:`ConfigError` naming the dotted path."""
    try:
        return _validate(loaded.raw, registry)
    except ConfigError as e:
        # An error may quote a value of a stranger's config: keep it one short line.
        text = str(e)
        if "\n" in text or "\r" in text or len(text) > 500:
            raise type(e)(excerpt(text, 500)) from None
        raise


def _validate(raw: dict[str, Any], registry: Registry) -> dict[str, Any]:
    for key in raw:
        if key not in TOP_LEVEL:
            raise ConfigError(f"{excerpt(key)}: unknown top-level key"
                              f"{suggest(str(key), TOP_LEVEL)}; a config has "
                              f"{', '.join(TOP_LEVEL)}")
    out: dict[str, Any] = {}
    for key in ("dataset", "trainer"):
        if raw.get(key) is None:
            raise ConfigError(f"{key} is missing: every config needs a '{key}:' section "
                              "with a 'name'")
    if raw.get("encoder") is None and raw.get("model") is None:
        raise ConfigError("config needs an 'encoder:' or a 'model:' section (or both)")
    raw = {**raw, "task": raw.get("task") or DEFAULT_TASK}
    for key, kind in SECTIONS.items():
        if raw.get(key) is not None:
            out[key] = registry.validate(kind, raw[key], key)
    regs = raw.get("regularizers") or []
    if not isinstance(regs, list):
        raise ConfigError("regularizers: expected a list of sections, e.g. "
                          "[{name: distance, multiplier: 0.1}]")
    out["regularizers"] = [registry.validate("regularizer", r, f"regularizers[{i}]")
                           for i, r in enumerate(regs)]
    loggers = raw.get("loggers") or []
    loggers = [loggers] if isinstance(loggers, str) else loggers  # loggers=tensorboard
    if not isinstance(loggers, list):
        raise ConfigError("loggers: expected a list of sections, e.g. "
                          "[tensorboard, {name: mlflow, experiment: cora}]")
    out["loggers"] = [registry.validate("logger", item, f"loggers[{i}]")
                      for i, item in enumerate(loggers)]
    seeds = raw.get("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise ConfigError(f"seeds: expected a whole number >= 1 (at most {MAX_SEEDS}), "
                          f"got {excerpt(repr(seeds))}")
    out["seeds"] = seeds
    device = raw.get("device", "auto")
    if not isinstance(device, str):
        raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {device!r}")
    resolve_device(device)  # a device this machine lacks is an error now, not mid-run
    out["device"] = device
    out["threads"] = "auto" if parse_threads(raw.get("threads")) is None else raw["threads"]
    out["checkpoint"] = validate_checkpoint(raw.get("checkpoint"))
    if "description" in raw:
        out["description"] = str(raw["description"])
    return out


def validate_checkpoint(section: Any) -> dict[str, Any]:
    """The ``checkpoint:`` section: save the training loop in progress every ``epochs``
    epochs and/or every ``seconds`` seconds (null: not on that account; defaults: every
    60 s). A finished loop is always saved."""
    section = {} if section is None else section
    if not isinstance(section, dict):
        raise ConfigError("checkpoint: expected a section such as {epochs: 10, seconds: 60}")
    for key in section:
        if key not in ("epochs", "seconds"):
            hint = suggest(str(key), ["epochs", "seconds"])
            raise ConfigError(f"checkpoint.{excerpt(key)}: unknown key{hint}; checkpoint has "
                              "epochs and seconds")
    epochs, seconds = section.get("epochs"), section.get("seconds", 60.0)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)
                               or epochs < 1):
        raise ConfigError(f"checkpoint.epochs: expected a whole number >= 1 or null, got "
                          f"{epochs!r}")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))
                                or not seconds > 0 or seconds == float("inf")):
        raise ConfigError(f"checkpoint.seconds: expected a number > 0 or null, got {seconds!r}")
    return {"epochs": epochs, "seconds": None if seconds is None else float(seconds)}


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return excerpt(text[0], 200) if text else type(e).__name__
