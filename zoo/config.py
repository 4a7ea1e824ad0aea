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
from zoo.schema import suggest
from zoo.threads import parse_threads

SECTIONS = {"dataset": "dataset", "graph": "graph_builder", "encoder": "encoder",
            "model": "node_model", "task": "task", "trainer": "trainer"}
TOP_LEVEL = (*SECTIONS, "regularizers", "loggers", "seeds", "device", "threads", "checkpoint",
             "description")
DEFAULT_TASK = "node_classification"

try:  # OmegaConf's YAML loader reads 1e-3 as a float, as the config files do
    from omegaconf._utils import get_yaml_loader
except ImportError:  # pragma: no cover - a future OmegaConf
    get_yaml_loader = lambda: yaml.SafeLoader  # noqa: E731


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


def resolve_config_path(source: str | Path) -> Path:
    """A config path as given, or the bundled config of that name."""
    path = Path(source)
    if path.is_file():
        return path
    bundled = bundled_configs()
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if path.suffix in ("", ".yaml") and name in bundled and len(path.parts) == 1:
        return bundled[name]
    if path.exists():
        raise ConfigError(f"config '{source}' is not a file; give a YAML file")
    raise ConfigError(
        f"config file '{source}' not found{suggest(name, bundled)}; give a path to a YAML "
        f"file or the name of a bundled config ({', '.join(sorted(bundled)) or 'none'})")


def load_config(source: str | Path | dict[str, Any], overrides: list[str] | None = None,
                ) -> LoadedConfig:
    """Read a config (path, bundled name, or dict) and apply ``KEY=VALUE`` overrides."""
    if isinstance(source, (dict, DictConfig)):
        cfg, name, where = OmegaConf.create(source), "config", "<dict>"
    else:
        path = resolve_config_path(source)
        name, where = path.stem, str(path)
        try:
            cfg = OmegaConf.load(path)
        except OmegaConfBaseException as e:
            raise ConfigError(f"config '{where}' is not valid: {_first_line(e)}") from None
        except Exception as e:  # yaml.YAMLError and friends: report the position
            mark = getattr(e, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or _first_line(e)
            raise ConfigError(f"config '{where}' has a YAML syntax error{at}: {problem}; "
                              "fix the file") from None
        if cfg is None or isinstance(cfg, ListConfig):
            raise ConfigError(f"config '{where}' must be a YAML mapping of sections "
                              f"({', '.join(TOP_LEVEL)})")
    # Switching a section's component (`encoder.name=other`) starts that section afresh:
    # the old component's parameters would not fit the new one.
    items = list(overrides or [])
    renames = [i for i in items if i.partition("=")[0].strip().endswith(".name")]
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
    try:
        raw = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"config '{where}': {_first_line(e)}") from None
    return LoadedConfig(name, where, raw)  # type: ignore[arg-type]


def is_override(arg: str) -> bool:
    """Whether a command-line word is an override (``KEY=VALUE``, ``KEY+=VALUE``, ``~KEY``)."""
    return "=" in arg or (arg.startswith("~") and len(arg) > 1)


def parse_value(item: str, value: str) -> Any:
    """An override's value, read as YAML (``64``, ``[10, 10]``, ``{name: adam}``)."""
    try:
        return yaml.load(value, Loader=get_yaml_loader()) if value.strip() else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or _first_line(e)
        raise UsageError(f"override '{item}': the value is not valid YAML{where} ({problem}); "
                         "quote it or fix the brackets") from None


def apply_override(cfg: DictConfig, item: str) -> None:
    """Apply one override: ``dotted.key=value`` (value parsed as YAML; list items by
    index), ``dotted.key+=value`` (append to a list) or ``~dotted.key`` (remove)."""
    if item.startswith("~") and "=" not in item:
        _remove(cfg, item, item[1:].strip())
        return
    key, sep, value = item.partition("=")
    key = key.strip()
    append = key.endswith("+")
    key = key.rstrip("+").strip()
    if not sep or not key:
        raise UsageError(f"override '{item}' must look like KEY=VALUE, e.g. model.hidden=64 "
                         "(KEY+=VALUE appends to a list, ~KEY removes)")
    parsed = parse_value(item, value)
    try:
        if append:
            current = OmegaConf.select(cfg, key)
            if current is not None and not isinstance(current, ListConfig):
                raise ConfigError(f"override '{item}': '{key}' is not a list, so nothing can "
                                  f"be appended; write {key}=VALUE")
            items = list(current or []) + (parsed if isinstance(parsed, list) else [parsed])
            OmegaConf.update(cfg, key, items, merge=False)
        else:
            OmegaConf.update(cfg, key, parsed, merge=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"override '{item}' cannot be applied: {_list_hint(cfg, key, e)}"
                          ) from None


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
        raise ConfigError(f"override '{item}': there is no '{key}' to remove")


def validate_config(loaded: LoadedConfig, registry: Registry) -> dict[str, Any]:
    """Check every section against its component schema; return the resolved config
    (all defaults filled in), or raise :class:`ConfigError` naming the dotted path."""
    raw = loaded.raw
    for key in raw:
        if key not in TOP_LEVEL:
            raise ConfigError(f"{key}: unknown top-level key{suggest(str(key), TOP_LEVEL)}; "
                              f"a config has {', '.join(TOP_LEVEL)}")
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
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds: expected a whole number >= 1, got {seeds!r}")
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
            raise ConfigError(f"checkpoint.{key}: unknown key{hint}; checkpoint has epochs "
                              "and seconds")
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
    return text[0] if text else type(e).__name__
