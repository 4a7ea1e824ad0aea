"""Lifecycle hooks, plugin commands and safe plugin loading, through real entry points of
throw-away distributions (the CLI in process via ``zoo.cli.main``, and in a subprocess
where what matters is the real stdout).

Pinned:
- ``zoo_run_start``, ``zoo_record`` and ``zoo_run_end`` are called in that order with
  the run's RunInfo, every record ``metrics.jsonl`` gets, and the summary, during a real
  ``zoo run``; a hook that raises is one warning line, is switched off, and the run and
  the other plugins go on; what a hook prints goes to stderr;
- ``zoo_register_commands`` adds a command that ``zoo`` dispatches, shows in its help and
  suggests; a built-in's name is refused with a warning naming the plugin; ``zoo
  partition`` is the distributed plugin's command and the core imports none of it;
- an unknown ``zoo_*`` hook (``zoo_reocrd``) is reported at load with a suggestion;
- a plugin printing to stdout at import leaves ``zoo list --json`` and ``zoo plugins
  --json`` valid JSON; KeyboardInterrupt at a plugin's import fails that plugin only; an
  entry point named like a built-in (``gcn``) is reported, not dropped; ``override=True``
  on a built-in is in ``zoo plugins``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import zoo.cli
from zoo.contracts import RunInfo
from zoo.plugins import PluginManager, default_manager

sys.path.insert(0, str(Path(__file__).parent))
from plugin_dists import OVERRIDES_BUILTIN, good, plugin_site, write_dist  # noqa: E402

ZOO = Path(zoo.cli.__file__).parent

HOOKS_PLUGIN = '''
import zoo

CALLS = []


@zoo.hookimpl
def zoo_run_start(run):
    print("HOOK-PRINT from zoo_run_start")
    CALLS.append(("start", run))


@zoo.hookimpl
def zoo_record(record):
    record["epoch"] = -1  # its own copy: neither metrics.jsonl nor others see this
    CALLS.append(("record", record))


@zoo.hookimpl
def zoo_run_end(run, summary, status):
    CALLS.append(("end", run, summary, status))
'''

RAISING_PLUGIN = '''
import zoo

CALLS = []


@zoo.hookimpl
def zoo_run_start(run):
    CALLS.append("start")


@zoo.hookimpl
def zoo_record(record):
    CALLS.append("record")
    raise RuntimeError("the tracking server is down")


@zoo.hookimpl
def zoo_run_end(status):  # a hook may take only the arguments it needs
    CALLS.append("end")
'''

COMMAND_PLUGIN = '''
import zoo
from zoo.cli import Parser


def hello(args):
    if args.fail:
        raise zoo.ConfigError("hello: --fail asks for this error")
    print(f"hello {args.who} {' '.join(args.overrides)}")
    return 0


def hello_parser():
    p = Parser(prog="zoo hello", description="Say hello.")
    p.add_argument("who")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--fail", action="store_true")
    p.set_defaults(func=hello)
    return p


@zoo.hookimpl
def zoo_register_commands(commands):
    commands.add("hello", hello_parser, "say hello (a test command)")
    commands.add("run", hello_parser, "tries to replace zoo run")
'''

MISSPELLED = '''
import zoo


@zoo.hookimpl
def zoo_reocrd(record):
    pass


def zoo_run_ned(run, summary, status):
    pass


@zoo.hookimpl
def zoo_run_start(run):
    pass
'''

PRINTS = '''
import zoo

print("PRINTED AT IMPORT")
''' + good("printing_enc").replace('def zoo_register(registry):\n', (
    'def zoo_register(registry):\n    print("PRINTED IN zoo_register")\n'))

INTERRUPTED = "raise KeyboardInterrupt\n"


@pytest.fixture
def plugin_root(tmp_path, monkeypatch):
    """A folder on sys.path for throw-away distributions (see plugin_dists.plugin_site)."""
    yield from plugin_site(tmp_path, monkeypatch, "zp_hook_")


def install(root: Path, entry: str, source: str) -> None:
    write_dist(root, f"zoo-{entry}", "1.0", entry, f"zp_hook_{entry}", source)


def warnings_of(err: str, prefix: str = "zoo: warning: ") -> list[str]:
    return [line for line in err.splitlines() if line.startswith(prefix)]


# -- run hooks ---------------------------------------------------------------------------
def test_run_hooks_see_the_run_in_order_and_a_raising_one_is_switched_off(
        plugin_root, tmp_path, capsys):
    install(plugin_root, "hooky", HOOKS_PLUGIN)
    install(plugin_root, "raisy", RAISING_PLUGIN)
    out = tmp_path / "run"
    code = zoo.cli.main(["run", "gcn_cora", "trainer.epochs=3", "--quiet", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert [r["epoch"] for r in records] == [0, 1, 2]  # no hook altered what was written

    calls = sys.modules["zp_hook_hooky"].CALLS
    assert [c[0] for c in calls] == ["start", "record", "record", "record", "end"]
    run = calls[0][1]
    assert isinstance(run, RunInfo)
    assert (run.dir, run.name, run.resumed) == (out, "gcn_cora", False)
    assert run.config["trainer"]["epochs"] == 3 and run.config["model"]["name"] == "gcn"
    for (_, got), written in zip(calls[1:4], records):
        assert got == {**written, "epoch": -1}  # every record, each the hook's own copy
    _, end_run, end_summary, status = calls[4]
    assert end_run is run and status == "finished"
    assert json.loads(json.dumps(end_summary)) == summary

    # The raising hook: called once, one warning, then off (no more records, no end).
    assert sys.modules["zp_hook_raisy"].CALLS == ["start", "record"]
    assert warnings_of(captured.err, "zoo: warning: plugin 'raisy'") == [
        "zoo: warning: plugin 'raisy' failed in zoo_record(): RuntimeError: the tracking "
        "server is down; its run hooks are switched off for this run"]
    # What a hook prints goes to stderr; stdout holds only the run's own lines.
    assert "HOOK-PRINT" in captured.err and "HOOK-PRINT" not in captured.out
    assert captured.out.splitlines()[-1].endswith(f"run saved to {out}")
    assert "Traceback" not in captured.err


# -- commands ----------------------------------------------------------------------------
def test_a_plugin_command_is_dispatched_listed_and_cannot_replace_a_builtin(
        plugin_root, capsys):
    install(plugin_root, "cmdy", COMMAND_PLUGIN)
    assert zoo.cli.main(["hello", "world", "x=1", "y=2"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "hello world x=1 y=2\n"
    (warning,) = warnings_of(captured.err, "zoo: warning: plugin 'cmdy'")
    assert warning == ("zoo: warning: plugin 'cmdy' (zoo-cmdy 1.0) adds the command 'run', "
                       "which is a built-in zoo command; it cannot be replaced, so this one "
                       "is not offered (choose another name)")

    # A ZooError from the handler is one line with its exit code, like a built-in's.
    assert zoo.cli.main(["hello", "world", "--fail", "x=1"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "zoo: error: hello: --fail asks for this error"
    # A malformed command line gets the command's usage.
    with pytest.raises(SystemExit) as exit_:
        zoo.cli.main(["hello", "--bogus"])
    assert exit_.value.code == 2
    assert "usage: zoo hello" in capsys.readouterr().err

    assert zoo.cli.main(["--help"]) == 0
    help_ = capsys.readouterr().out
    assert "  hello      say hello (a test command) (plugin 'cmdy')" in help_
    assert "  partition  split a graph into DistDGL partitions (plugin 'distributed')" in help_
    assert zoo.cli.main(["helo"]) == 2
    assert "unknown command 'helo' (did you mean 'hello'?)" in capsys.readouterr().err

    plugins = {p.name: p for p in default_manager().plugins}
    assert plugins["cmdy"].commands == ["hello"] and "'run'" in plugins["cmdy"].error
    assert default_manager().commands["hello"].plugin == "cmdy"


def test_partition_is_the_distributed_plugins_command(plugin_root, capsys):
    assert "partition" not in zoo.cli.COMMANDS
    command = default_manager().commands["partition"]
    assert (command.plugin, command.distribution) == ("distributed", "zoo")
    # Its checks and messages are as they were in the core.
    assert zoo.cli.main(["partition", "sage_cora_sampled", "--parts", "0", "--out", "x"]) == 2
    assert "zoo: error: --parts must be a whole number >= 1, got 0" in capsys.readouterr().err
    assert zoo.cli.main(["partition", "--parts", "2", "--out", "x"]) == 2
    assert "give a config" in capsys.readouterr().err
    # The core imports nothing of the distributed plugin.
    for source in ZOO.rglob("*.py"):
        assert "zoo_plugins.distributed" not in source.read_text(), source


# -- loading -----------------------------------------------------------------------------
def own_entry_points(root: Path) -> list[metadata.EntryPoint]:
    return [ep for d in metadata.distributions(path=[str(root)])
            for ep in d.entry_points if ep.group == "zoo.plugins"]


def test_unknown_zoo_hooks_are_reported_at_load_with_a_suggestion(plugin_root, capsys):
    install(plugin_root, "misspelled", MISSPELLED)
    manager = PluginManager()
    (info,) = manager.load_entry_points(own_entry_points(plugin_root))
    warnings = warnings_of(capsys.readouterr().err)
    assert len(warnings) == 2, warnings
    prefix = "zoo: warning: plugin 'misspelled' (zoo-misspelled 1.0) defines "
    assert warnings[0].startswith(prefix + "hook 'zoo_reocrd', which is not a zoo hook (did "
                                  "you mean 'zoo_record'?); zoo hooks are ")
    assert warnings[1].startswith(prefix + "'zoo_run_ned', which is not a zoo hook (did you "
                                  "mean 'zoo_run_end'?)")
    assert warnings[1].endswith("(the zoo_ prefix is for hooks)")
    # The correctly named hook still counts: the plugin is loaded, and reported.
    assert info.status == "loaded" and "zoo_reocrd" in info.error
    assert [h.plugin for h in manager.registry.run_hooks] == ["misspelled"]


def test_keyboard_interrupt_at_import_fails_that_plugin_only(plugin_root, capsys):
    install(plugin_root, "interrupted", INTERRUPTED)
    install(plugin_root, "fine", good("fine_after_interrupt"))
    manager = PluginManager()
    manager.load_entry_points(own_entry_points(plugin_root))
    status = {p.name: (p.status, p.error) for p in manager.plugins}
    assert status["interrupted"] == ("failed", "failed to import: KeyboardInterrupt")
    assert status["fine"] == ("loaded", None)
    assert manager.registry.get("encoder", "fine_after_interrupt").plugin == "fine"
    (warning,) = warnings_of(capsys.readouterr().err)
    assert warning.startswith("zoo: warning: plugin 'interrupted' (zoo-interrupted 1.0) "
                              "failed to import: KeyboardInterrupt; skipped")


def test_override_of_a_builtin_is_reported_in_zoo_plugins(plugin_root, capsys):
    install(plugin_root, "overrider", OVERRIDES_BUILTIN)
    assert zoo.cli.main(["plugins", "--json"]) == 0
    plugins = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert plugins["overrider"]["replaces"] == [f"node_model:gcn of zoo {zoo.__version__}"]
    assert plugins["gcn"]["replaces"] == []
    assert zoo.cli.main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("overrider "))
    assert lines[at + 1].split() == ["replaces:", "node_model:gcn", "of", "zoo",
                                     zoo.__version__, "(override=True)"]


def zoo_cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("ZOO_PLUGINS", "ZOO_STRICT_PLUGINS")}
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True,
                          text=True, env={**clean, "PYTHONPATH": str(root)}, timeout=300)


def test_hostile_plugins_leave_json_output_valid_and_are_reported(plugin_root):
    install(plugin_root, "printing", PRINTS)
    install(plugin_root, "interrupted", INTERRUPTED)
    # A third-party entry point named like a built-in plugin.
    write_dist(plugin_root, "zoo-shadow", "2.0", "gcn", "zp_hook_shadow", good("shadow_enc"))
    listed = zoo_cli("list", "encoder", "--json", root=plugin_root)
    assert listed.returncode == 0, listed.stderr
    names = [c["name"] for c in json.loads(listed.stdout)]  # valid JSON, nothing else
    assert "printing_enc" in names and "mlp" in names and "shadow_enc" not in names
    assert "PRINTED AT IMPORT" in listed.stderr and "PRINTED IN zoo_register" in listed.stderr
    assert "Traceback" not in listed.stderr
    (shadow,) = warnings_of(listed.stderr, "zoo: warning: plugin 'gcn' (zoo-shadow 2.0)")
    assert ("is not loaded: its entry-point name 'gcn' is taken by the built-in plugin 'gcn' "
            f"(zoo {zoo.__version__}); rename the entry point") in shadow

    report = zoo_cli("plugins", "--json", root=plugin_root)
    assert report.returncode == 0, report.stderr
    plugins = json.loads(report.stdout)
    gcns = {p["distribution"]: p for p in plugins if p["name"] == "gcn"}
    assert gcns["zoo"]["status"] == "loaded" and gcns["zoo"]["components"] == ["node_model:gcn"]
    assert gcns["zoo-shadow"]["status"] == "skipped"
    assert "entry-point name 'gcn' is taken" in gcns["zoo-shadow"]["error"]
    by_name = {p["name"]: p for p in plugins}
    assert by_name["interrupted"]["status"] == "failed"
    assert by_name["printing"]["status"] == "loaded"
