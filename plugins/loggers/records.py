"""What the tracking loggers share: a record's metrics, the step they belong to, and the
config flattened into ``key: value`` pairs.

A record is a line of ``metrics.jsonl``: ``seed``, ``phase`` ('train', 'iter 2
classifier', 'gam'...) and ``epoch`` and/or ``iteration``, then metric values.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

# The keys that say where a record belongs rather than what was measured.
POSITION_KEYS = ("seed", "phase", "epoch", "iteration")


def metrics_of(record: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """The record's numeric values (NaN included: a diverged loss is worth seeing),
    without the keys that place it."""
    for key, value in record.items():
        if key in POSITION_KEYS or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            yield key, float(value)
        elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # tensor, numpy
            yield key, float(value.item())


class Steps:
    """The step of each record's metrics: its ``epoch``, else its ``iteration`` (the
    ``gam`` phase's records), else a count of the records seen under that tag."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def of(self, record: dict[str, Any], tag: str) -> int:
        """The step of ``record``'s metrics under the (seed, phase) ``tag``."""
        for key in ("epoch", "iteration"):
            if isinstance(record.get(key), int) and not isinstance(record[key], bool):
                return record[key]
        step = self.counts.get(tag, 0)
        self.counts[tag] = step + 1
        return step


def scope(record: dict[str, Any]) -> tuple[str, str]:
    """``("seed<k>", phase)`` of a record (``seed0``/``train`` when it does not say)."""
    return f"seed{record.get('seed', 0)}", str(record.get("phase", "train"))


def sanitize(name: str, allowed: str = r"A-Za-z0-9_\-.") -> str:
    """``name`` with each run of characters outside ``allowed`` replaced by ``_``
    ('iter 2 classifier' -> 'iter_2_classifier')."""
    return re.sub(f"[^{allowed}]+", "_", name).strip("_") or "_"


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys: ``{"model.hidden": 16, "regularizers.0.name":
    "distance"}``; an empty section or list keeps its key (``{"loggers": []}``)."""
    if isinstance(config, dict) and config:
        items = config.items()
    elif isinstance(config, (list, tuple)) and config and not all(
            isinstance(v, (str, int, float, bool)) or v is None for v in config):
        items = enumerate(config)
    else:
        return {prefix: config} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def as_text(value: Any) -> str:
    """A config value as it would be written in YAML/JSON (``null``, ``true``, ``[10, 10]``)."""
    return value if isinstance(value, str) else json.dumps(finite(value), default=str)


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity (in lists and dicts too) replaced by None,
    so that it is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def summary_means(summary: dict[str, Any] | None) -> dict[str, float]:
    """Each summary metric's mean over the seeds (``summary["metrics"][name]["mean"]``)."""
    metrics = (summary or {}).get("metrics") or {}
    out = {}
    for name, stats in metrics.items():
        mean = stats.get("mean") if isinstance(stats, dict) else stats
        if isinstance(mean, (int, float)) and not isinstance(mean, bool):
            out[name] = float(mean)
    return out
