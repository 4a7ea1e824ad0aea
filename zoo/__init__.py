"""zoo: a plugin-based model zoo for graph neural networks and neural structured learning.

Three ways in: ``zoo run configs/gcn_cora.yaml`` on the command line, plugin packages
registering components through the ``zoo.plugins`` entry points, and from Python::

    import zoo
    exp = zoo.build("gcn_cora", trainer={"epochs": 50})
    summary = exp.fit()
    exp = zoo.load("runs/gcn_cora-...")   # a finished run, with its trained model

The contracts components follow, and the values that flow between them, are in
:mod:`zoo.contracts` and exported here: ``zoo.GraphData``, ``zoo.ModelOutput``,
``zoo.Batch``, ``zoo.RegularizerInput``, ``zoo.TrainContext``, ``zoo.Runtime``, the
protocols (``zoo.Task``, ``zoo.BatchSource``, ...), the schema markers (``zoo.Kind``,
``zoo.Ge``, ...) and the errors (``zoo.ConfigError``, ...).
"""

from typing import TYPE_CHECKING

from zoo.errors import ConfigError, ContractError, DataError, PluginError, UsageError, ZooError
from zoo.hookspec import hookimpl

__version__ = "0.2.0"

# Loaded on first use: `import zoo` in a plugin must not pull in torch, DGL or the plugins.
_LAZY = {
    "zoo.api": ("build", "list", "show", "default_registry", "Experiment"),
    "zoo.contracts": ("GraphData", "ModelOutput", "Batch", "RegularizerInput", "Metrics",
                      "Dataset", "GraphBuilder", "Encoder", "NodeModel", "Regularizer",
                      "UsesAgreementModel", "Task", "ClassifiesNodes", "BatchSource",
                      "Trainer", "Logger", "RunInfo", "KINDS"),
    "zoo.engine": ("TrainContext", "Engine", "FitResult", "training_step", "seed_everything"),
    "zoo.model": ("Classifier",),
    "zoo.retrieval": ("load",),
    "zoo.runtime": ("Runtime",),
    "zoo.schema": ("Kind", "ComponentSpec", "Ge", "Gt", "Le", "Lt"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = ["hookimpl", "__version__", "ZooError", "ConfigError", "UsageError", "DataError",
           "PluginError", "ContractError", *_WHERE]


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the lazy names, imported eagerly
    from zoo.api import Experiment, build, default_registry, list, show  # noqa: F401
    from zoo.contracts import (  # noqa: F401
        KINDS,
        Batch,
        BatchSource,
        ClassifiesNodes,
        Dataset,
        Encoder,
        GraphBuilder,
        GraphData,
        Logger,
        Metrics,
        ModelOutput,
        NodeModel,
        Regularizer,
        RegularizerInput,
        RunInfo,
        Task,
        Trainer,
        UsesAgreementModel,
    )
    from zoo.engine import Engine, FitResult, TrainContext, seed_everything, training_step  # noqa: F401
    from zoo.model import Classifier  # noqa: F401
    from zoo.retrieval import load  # noqa: F401
    from zoo.runtime import Runtime  # noqa: F401
    from zoo.schema import ComponentSpec, Ge, Gt, Kind, Le, Lt  # noqa: F401
