"""zoo: a plugin-based model zoo for graph neural networks and neural structured learning.

Three ways in: ``zoo run configs/gcn_cora.yaml`` on the command line, plugin packages
registering components through the ``zoo.plugins`` entry points, and from Python::

    import zoo
    exp = zoo.build("gcn_cora", trainer={"epochs": 50})
    summary = exp.fit()
"""

from zoo.hookspec import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "build", "list", "show", "default_registry", "__version__"]


def __getattr__(name: str):
    # Lazy: `import zoo` in a plugin must not pull in torch, DGL or the plugins.
    if name in ("build", "list", "show", "default_registry"):
        from zoo import api

        return getattr(api, name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
