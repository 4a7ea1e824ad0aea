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
    """A plugin failed to load, broke a registration rule, or clashes with another plugin."""

    exit_code = 1


class ContractError(ZooError):
    """A component broke its kind's contract at run time (returned the wrong thing); the
    message names the component and what it returned (CLI exit code 1)."""

    exit_code = 1


class UsageError(ConfigError):
    """The command line is malformed (an override that is not KEY=VALUE, bad YAML in a
    value); the CLI prints the command's usage with the error (exit code 2)."""


class DivergedError(ZooError):
    """Training diverged: a training loss became NaN or infinite (CLI exit code 1). The
    message names the phase, seed and epoch; the run keeps the records written before."""

    exit_code = 1
