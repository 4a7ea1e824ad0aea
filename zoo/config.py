"""Experiment configs: OmegaConf YAML, command-line overrides, and validation of every
section against its component's schema before anything runs.

A config has these top-level keys (each section names its component with ``name``)::

    dataset:      {name: planetoid, subset: cora}     # required
    graph:        {name: knn, k: 10}                  # optional: a graph builder
    encoder:      {name: mlp, hidden: 64}             # optional: features -> embedding
    model:        {name: gcn, hidden: 16}             # optional: a node model
    regularizers: [{name: distance, multiplier: 0.1}] # optional list
    trainer:      {name: supervised, lr: 0.01}        # required
    seeds: 1                                          # how many seeds (0..N-1)
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from zoo.errors import ConfigError
from zoo.registry import Registry
from zoo.schema import suggest

SECTIONS = {"dataset": "dataset", "graph": "graph_builder", "encoder": "encoder",
            "model": "node_model", "trainer": "trainer"}
TOP_LEVEL = (*SECTIONS, "regularizers", "seeds", "description")


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
        current = OmegaConf.select(cfg, section)
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


def apply_override(cfg: DictConfig, item: str) -> None:
    """Apply one ``dotted.key=value`` override (value parsed as YAML, lists allowed)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}' must look like KEY=VALUE, e.g. model.hidden=64")
    try:
        parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={value}"]))["v"]
        OmegaConf.update(cfg, key.strip(), parsed, merge=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"override '{item}' cannot be applied: {_first_line(e)}") from None


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
    for key, kind in SECTIONS.items():
        if raw.get(key) is not None:
            out[key] = registry.validate(kind, raw[key], key)
    regs = raw.get("regularizers") or []
    if not isinstance(regs, list):
        raise ConfigError("regularizers: expected a list of sections, e.g. "
                          "[{name: distance, multiplier: 0.1}]")
    out["regularizers"] = [registry.validate("regularizer", r, f"regularizers[{i}]")
                           for i, r in enumerate(regs)]
    seeds = raw.get("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds: expected a whole number >= 1, got {seeds!r}")
    out["seeds"] = seeds
    if "description" in raw:
        out["description"] = str(raw["description"])
    return out


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
