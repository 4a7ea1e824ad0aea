"""Every hook a zoo plugin may implement — this module is their documentation.

A plugin is a module (or package) named by an entry point in the ``zoo.plugins``
group. It implements hooks by decorating functions with :data:`zoo.hookimpl`::

    import zoo

    @zoo.hookimpl
    def zoo_register(registry):
        registry.add("encoder", "my_mlp", MyMLP)

The built-in components under ``plugins/`` are registered through the very same
entry points, so anything they can do, a third-party package can do too.

A plugin implements any of these hooks, each at most once, and names its functions
exactly as below: a ``zoo_``-prefixed function that is no hook (``zoo_reocrd``) is
reported when the plugin loads, with the hook it probably meant. A hook's parameters
are passed by name, and a hook may take only those it needs.

While the zoo imports a plugin and calls its hooks, what the plugin prints to stdout
goes to stderr, so ``zoo list --json`` and friends stay machine-readable. An import or
a load-time hook (``zoo_register``, ``zoo_configs``, ``zoo_register_commands``) that
raises, even ``SystemExit`` or ``KeyboardInterrupt``, fails that plugin alone: none of
its components, configs or commands are offered, and ``zoo plugins`` says why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from zoo.contracts import RunInfo
    from zoo.plugins import CommandRegistrar
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
    newcomer stays reachable as ``plugin:name``). An override is never silent: it is a
    warning line, and ``zoo plugins`` (``replaces``) and ``zoo show`` name what it
    replaced, which stays reachable as ``plugin:name``.

    If this hook raises, none of this plugin's registrations are kept, the plugin
    is reported as failed, and the rest of the zoo keeps working.
    """


@hookspec
def zoo_configs() -> Path | str | list[Path | str]:
    """Return the experiment configs this plugin ships, for ``zoo run NAME`` and
    ``zoo configs``.

    Return a folder (its ``*.yaml`` files, each named by its file name without
    ``.yaml``), one YAML file, or a list of either; as ``str``, ``Path`` or an
    ``importlib.resources`` path inside the installed package::

        @zoo.hookimpl
        def zoo_configs():
            return importlib.resources.files(__name__) / "configs"

    Names: a config bundled with the zoo keeps its plain name; a plugin's config takes
    the plain name (``zoo run gat_ppi``) when neither the zoo nor another plugin ships
    one of that name, and is always reachable as ``plugin:name`` (``zoo run
    my_plugin:gat_cora``, with the entry-point name or the distribution as ``plugin``).
    A plain name that two plugins ship and the zoo does not is an error naming both
    qualified names. Start each config with a header comment: its first line is the
    description ``zoo configs`` shows.

    Called once, when the plugin loads. A path that is missing or not YAML is a warning
    naming it; the plugin's other configs are offered.
    """


@hookspec
def zoo_register_commands(commands: CommandRegistrar) -> None:
    """Add subcommands to the ``zoo`` command line.

    Call ``commands.add(name, parser, help)`` once per command. ``parser`` is a function
    of no arguments returning the command's :class:`zoo.cli.Parser` (an argparse parser,
    ``Parser(prog="zoo NAME", description=...)``) that names the command's handler with
    ``parser.set_defaults(func=handler)``; ``handler(args)`` returns the exit code (0).
    ``help`` is the line ``zoo --help`` shows. The zoo calls ``parser`` only when the
    command runs: import what the command needs inside it or the handler, not at the top
    of the plugin, so that other commands stay fast::

        @zoo.hookimpl
        def zoo_register_commands(commands):
            commands.add("hello", hello_parser, "say hello")

    The command line is parsed as for built-in commands (options and ``KEY=VALUE``
    overrides in any order); a :class:`zoo.errors.ZooError` the handler raises is one
    ``zoo: error:`` line with its exit code (2 for ``ConfigError``/``UsageError``, 1
    otherwise). Names are lowercase letters, digits, ``-`` and ``_``. A name the zoo's
    own commands (or a plugin loaded earlier) already have is not replaced: the command
    is not offered, with a warning naming the plugin.
    """


# -- run hooks: a plugin observes runs as a logger does ----------------------------------


@hookspec
def zoo_run_start(run: RunInfo) -> None:
    """A run starts, or resumes: ``run`` is its :class:`zoo.contracts.RunInfo` (the run
    folder, the config's name, the resolved config, and ``resumed``).

    The run hooks (this one, :func:`zoo_record`, :func:`zoo_run_end`) are called for
    each run that writes a run folder (``zoo run``, ``Experiment.fit(out=...)``), in its
    main process, right after the run's loggers (``loggers:``) got the same call; no
    config needs to name the plugin. A run hook that raises is reported in one warning
    line, and this plugin's run hooks are switched off for the rest of the run; the run
    goes on (:class:`zoo.tracking.RecordStream`).
    """


@hookspec
def zoo_record(record: dict[str, Any]) -> None:
    """One record of the run, as its ``metrics.jsonl`` gets it (``seed``, ``phase``,
    ``epoch`` and the metrics; see :mod:`zoo.run`): every record, in order, between
    :func:`zoo_run_start` and :func:`zoo_run_end`. ``record`` is this plugin's own copy."""


@hookspec
def zoo_run_end(run: RunInfo, summary: dict[str, Any] | None, status: str) -> None:
    """The run ended: ``status`` is ``"finished"`` (``summary`` is what ``summary.json``
    holds), ``"failed"`` or ``"interrupted"`` (``summary`` is None). Called once, after
    :func:`zoo_run_start`."""
