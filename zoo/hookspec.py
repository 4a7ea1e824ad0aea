"""Every hook a zoo plugin may implement — this module is their documentation.

A plugin is a module (or package) named by an entry point in the ``zoo.plugins``
group. It implements hooks by decorating functions with :data:`zoo.hookimpl`::

    import zoo

    @zoo.hookimpl
    def zoo_register(registry):
        registry.add("encoder", "my_mlp", MyMLP)

The built-in components under ``plugins/`` are registered through the very same
entry points, so anything they can do, a third-party package can do too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from zoo.registry import PluginRegistrar

PROJECT = "zoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zoo_register(registry: PluginRegistrar) -> None:
    """Register this plugin's components.

    Call ``registry.add(kind, name, factory, override=False)`` once per component.
    ``kind`` is one of ``dataset``, ``encoder``, ``graph_builder``, ``regularizer``,
    ``node_model``, ``trainer``. ``factory`` is a class or function whose
    keyword-only parameters (after ``*``), with type hints and defaults, are the
    component's config schema; its positional parameters are inputs the zoo supplies
    when it assembles a model (for example ``in_dim`` and ``out_dim``). The first line
    of its docstring is the summary ``zoo list`` shows; an ``Args:`` section documents
    each parameter for ``zoo show``.

    Registering a ``(kind, name)`` that another plugin already registered is an
    error naming both distributions, unless ``override=True`` is passed.

    If this hook raises, none of this plugin's registrations are kept, the plugin
    is reported as failed, and the rest of the zoo keeps working.
    """
