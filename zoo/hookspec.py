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
    ``kind`` is one of the kinds of :data:`zoo.contracts.KINDS` (``dataset``,
    ``graph_builder``, ``encoder``, ``node_model``, ``regularizer``, ``task``,
    ``batch_source``, ``optimizer``, ``trainer``), whose contracts that module documents.
    ``factory`` is a class or function whose keyword-only parameters (after ``*``),
    with type hints and defaults, are the component's config schema; its positional
    parameters are the inputs the zoo supplies for that kind (for example ``in_dim``
    and ``out_dim``). The first line of its own docstring is the summary ``zoo list``
    shows; an ``Args:`` section documents each parameter for ``zoo show``. A component
    that breaks these rules is refused with a warning naming the fix.

    Registering a ``(kind, name)`` that another third-party plugin already registered
    is a clash, an error on use naming both distributions, unless ``override=True`` is
    passed; a built-in keeps its name unless the newcomer overrides knowingly (the
    newcomer stays reachable as ``plugin:name``).

    If this hook raises, none of this plugin's registrations are kept, the plugin
    is reported as failed, and the rest of the zoo keeps working.
    """
