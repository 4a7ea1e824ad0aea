"""zoo.testing: pytest fixtures and conformance checks for plugin authors (and the zoo).

Installed with the zoo as a pytest plugin (entry point ``pytest11``), so every test in
an environment that has the zoo can ask for these fixtures without a ``conftest.py``:

- ``tiny_graph``: a small synthetic :class:`zoo.GraphData` (90 nodes in 3 communities,
  8 dense features, a DGL graph with uneven edge weights, train/val/test masks), the
  same bit for bit on every call; no download. :data:`TINY_GRAPH` is its config
  section, for ``zoo.build`` (see :func:`tiny_config`).
- ``cora``: Planetoid Cora as ``zoo.GraphData``, read through the usual settings
  (``ZOO_DATA_MIRROR``, cached in ``ZOO_DATA_DIR``); the test is skipped, with the
  reason, when neither a mirror nor the network can provide it.
- ``run_dir``: a path for a run folder under ``tmp_path`` that does not exist yet
  (``exp.fit(out=run_dir)``, ``zoo run ... --out``).
- ``zoo_registry``: the registry of every installed component (``zoo.default_registry()``).

The conformance checks (:mod:`zoo.testing.checks`) run from any test::

    from zoo.testing import check_plugin

    def test_my_plugin_conforms():
        check_plugin("my-zoo-plugin")  # a distribution or plugin (entry point) name

Importing this module is cheap (no torch, no DGL): pytest imports it in every test
session of the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from zoo.contracts import GraphData
    from zoo.registry import Registry

# The tiny graph: easy enough that any working model beats chance in a few epochs.
TINY_GRAPH: dict[str, Any] = {
    "name": "sbm", "num_nodes": 90, "avg_degree": 6.0, "num_classes": 3, "homophily": 0.8,
    "num_features": 8, "feature_signal": 3.0, "train_per_class": 5, "val_size": 30,
    "test_size": 30, "seed": 0}

_LAZY = {"check_component", "check_plugin", "tiny_graph_data", "Report"}

__all__ = ["TINY_GRAPH", "tiny_config", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    # The checks import torch; they load on first use, not when pytest starts.
    if name in _LAZY:
        from zoo.testing import checks

        return getattr(checks, name)
    raise AttributeError(f"module 'zoo.testing' has no attribute {name!r}")


def tiny_config(**sections: Any) -> dict[str, Any]:
    """A config (a dict for ``zoo.build``) on the tiny graph: ``dataset`` is
    :data:`TINY_GRAPH` and ``trainer`` trains 5 epochs with ``supervised``, unless
    ``sections`` say otherwise; add a model, e.g.
    ``tiny_config(model={"name": "gcn", "hidden": 8})``."""
    config: dict[str, Any] = {"dataset": dict(TINY_GRAPH),
                              "trainer": {"name": "supervised", "epochs": 5}}
    config.update(sections)
    return config


@pytest.fixture
def tiny_graph() -> GraphData:
    """A small deterministic synthetic graph dataset (:data:`TINY_GRAPH`): no download."""
    from zoo.testing.checks import tiny_graph_data

    return tiny_graph_data()


@pytest.fixture(scope="session")
def cora() -> GraphData:
    """Planetoid Cora through ZOO_DATA_MIRROR / ZOO_DATA_DIR (skipped if unavailable)."""
    import zoo
    from zoo.errors import DataError

    try:
        return zoo.default_registry().build("dataset", {"name": "planetoid", "subset": "cora"})
    except DataError as e:
        pytest.skip(f"Cora is not available (no ZOO_DATA_MIRROR holding it, no cached copy "
                    f"in ZOO_DATA_DIR, no network): {e}")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder path under ``tmp_path`` that does not exist yet."""
    return tmp_path / "run"


@pytest.fixture
def zoo_registry() -> Registry:
    """The registry of every installed component (built-ins and plugins)."""
    import zoo

    return zoo.default_registry()
