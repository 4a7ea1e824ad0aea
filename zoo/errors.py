"""Errors the zoo reports to users: one clear sentence with the fix, no traceback."""


class ZooError(Exception):
    """Base class of errors shown to users as one line; ``exit_code`` is the CLI's."""

    exit_code = 1


class ConfigError(ZooError):
    """The config or the command line is wrong (CLI exit code 2)."""

    exit_code = 2


class DataError(ZooError):
    """A dataset file is missing, corrupt or cannot be fetched (CLI exit code 1)."""

    exit_code = 1


class PluginError(ZooError):
    """A plugin failed to load or clashes with another plugin."""

    exit_code = 1
