"""Registration catches a plugin author's mistakes when the plugin registers, through real
entry points of throw-away distributions (in process and through the ``zoo`` CLI).

Pinned, for each mistake (a parameter type YAML cannot express, positional inputs that do
not match the kind's contract, no docstring of its own, a misspelled or unmarked hook, a
hook that registers nothing, a class missing its kind's method, a default that does not
match its type):

- one warning line per faulty component, ``zoo: warning: plugin 'NAME' (DIST VERSION)
  ...``, naming the component and the fix;
- the faulty component is not offered (``registry.list()``, ``zoo list``) while the
  plugin's correct components are, and ``zoo plugins --json`` records it in
  ``refused``/``error``;
- under ``ZOO_STRICT_PLUGINS=1`` the mistake is an error: a ``PluginError`` in process,
  exit 1 with one ``zoo: error:`` line and no traceback on the CLI.

Also pinned: a third-party plugin registering a built-in's name without ``override=True``
leaves the name to the built-in (with a warning; its component stays reachable as
``plugin:name`` and ``zoo show`` lists both), with ``override=True`` it replaces the
built-in and ``zoo show`` says what it replaced; ``ZOO_PLUGINS`` naming no installed
plugin warns (an error under ``ZOO_STRICT_PLUGINS=1``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import yaml

import zoo
from zoo.errors import ConfigError, PluginError
from zoo.plugins import PluginManager

sys.path.insert(0, str(Path(__file__).parent))
from plugin_dists import (  # noqa: E402
    FORGOTTEN_STAR,
    MISSING_METHOD,
    MISSPELLED_HOOK,
    NO_DOCSTRING,
    OVERRIDES_BUILTIN,
    REGISTERS_NOTHING,
    TAKES_BUILTIN_NAME,
    UNEXPRESSIBLE_PARAM,
    UNMARKED_HOOK,
    WRONG_DEFAULT,
    WRONG_INPUTS,
    good,
    write_dist,
)

BUILTIN = f"zoo {zoo.__version__}"  # the origin of the built-in components
TORCH_MODULE_DOC = "Base class for all neural network modules."


@dataclass(frozen=True)
class Mistake:
    """A plugin with a mistake: its entry point, source, the components it gets refused
    and, per warning (one per faulty component, in order), the fragments that name the
    fault and the fix."""

    entry: str
    source: str
    faulty: tuple[str, ...]
    fixes: tuple[tuple[str, ...], ...]

    def says(self, i: int, text: str) -> bool:
        """Whether ``text`` holds every fragment expected of warning ``i``."""
        return all(fragment in text for fragment in self.fixes[i])

    @property
    def dist(self) -> str:
        return "zoo-" + self.entry.replace("_", "-")

    @property
    def module(self) -> str:
        return f"zp_reg_{self.entry}"

    @property
    def fine(self) -> list[str]:
        """The correct components the plugin registers beside the faulty ones."""
        return [f"fine_{self.entry}"] if self.faulty else []

    @property
    def prefix(self) -> str:
        return f"plugin '{self.entry}' ({self.dist} 1.0) "


MISTAKES = [
    Mistake("unexpressible", UNEXPRESSIBLE_PARAM, ("module_param",), (
        ("node_model 'module_param': parameter 'act'",
         "Module cannot be written in a YAML config",
         "take a str choice (Literal[...]) or numbers and build the object inside the "
         "component"),)),
    Mistake("forgotten_star", FORGOTTEN_STAR, ("no_star",), (
        ("node_model 'no_star': parameter 'hidden' is positional; config parameters must be "
         "keyword-only, after `*` (e.g. `def __init__(self, in_dim, out_dim, *, "
         "hidden=...)`)",),)),
    Mistake("wrong_inputs", WRONG_INPUTS, ("graph_reg", "one_input"), (
        ("regularizer 'graph_reg' takes positional inputs (graph) but a regularizer receives "
         "(none); put config parameters after `*`",),
        ("node_model 'one_input' takes positional inputs (in_dim) but a node_model receives "
         "(in_dim, out_dim)",))),
    Mistake("no_docstring", NO_DOCSTRING, ("undocumented",), (
        ("encoder 'undocumented' has no docstring of its own",
         "add one that says what it is"),)),
    Mistake("missing_method", MISSING_METHOD, ("no_fit", "no_epoch", "no_forward"), (
        ("trainer 'no_fit': it has no fit() method",),
        ("batch_source 'no_epoch': it has no epoch() method",),
        ("node_model 'no_forward': it has no forward() method",))),
    Mistake("wrong_default", WRONG_DEFAULT, ("many_hidden",), (
        ("encoder 'many_hidden': the default of 'hidden' does not match its type "
         "(many_hidden.hidden: expected int, got the string 'many')",),)),
    Mistake("misspelled_hook", MISSPELLED_HOOK, (), (
        ("defines hook 'zoo_registr', which is not a zoo hook (did you mean "
         "'zoo_register'?)",),)),
    Mistake("unmarked_hook", UNMARKED_HOOK, (), (
        ("defines zoo_register without @zoo.hookimpl, so the zoo never calls it; "
         "decorate it",),)),
    Mistake("registers_nothing", REGISTERS_NOTHING, (), (
        ("registers no components; its zoo_register hook (decorated with @zoo.hookimpl) "
         "must call registry.add(kind, name, factory)",),)),
]
IDS = [m.entry for m in MISTAKES]


def entry_points(root: Path) -> list[metadata.EntryPoint]:
    return [ep for d in metadata.distributions(path=[str(root)])
            for ep in d.entry_points if ep.group == "zoo.plugins"]


@pytest.fixture
def plugin_root(tmp_path, monkeypatch):
    """A folder on sys.path for throw-away distributions; their modules are forgotten
    afterwards, so each test imports its own."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("ZOO_PLUGINS", raising=False)
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("zp_reg_"):
            del sys.modules[name]


def install(root: Path, m: Mistake) -> None:
    write_dist(root, m.dist, "1.0", m.entry, m.module, m.source)


def load(root: Path, **kw) -> PluginManager:
    """A manager that loaded only the distributions in ``root``."""
    manager = PluginManager()
    manager.load_entry_points(entry_points(root), **kw)
    return manager


def warnings_of(err: str, prefix: str = "zoo: warning: ") -> list[str]:
    return [line for line in err.splitlines() if line.startswith(prefix)]


def zoo_cli(*args: str, root: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("ZOO_PLUGINS", "ZOO_STRICT_PLUGINS")}
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True,
                          text=True, env={**clean, "PYTHONPATH": str(root), **env},
                          timeout=300)


def one_error_line(out: subprocess.CompletedProcess, code: int = 1) -> str:
    """The single ``zoo: error:`` line of a clean failure (warnings aside)."""
    assert out.returncode == code, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines()
             if line.strip() and not line.startswith("zoo: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), lines
    return lines[0]


# -- each mistake, in process ------------------------------------------------------------
@pytest.mark.parametrize("m", MISTAKES, ids=IDS)
def test_mistake_warns_once_per_fault_naming_plugin_and_fix(plugin_root, capsys, m):
    install(plugin_root, m)
    load(plugin_root)
    warnings = warnings_of(capsys.readouterr().err)
    assert len(warnings) == len(m.fixes), warnings
    for i, line in enumerate(warnings):
        assert line.startswith("zoo: warning: " + m.prefix), line
        assert m.says(i, line), line


@pytest.mark.parametrize("m", MISTAKES, ids=IDS)
def test_faulty_component_is_not_offered_but_correct_ones_are(plugin_root, m):
    install(plugin_root, m)
    manager = load(plugin_root)
    assert [c.name for c in manager.registry.list()] == m.fine
    for name in m.faulty:
        assert manager.registry.find(name) == []
    (info,) = manager.plugins
    assert info.components == [f"encoder:{name}" for name in m.fine]
    assert len(info.refused) == len(m.faulty)
    for name, refused in zip(m.faulty, info.refused):
        assert f"'{name}'" in refused
    assert info.error and all(m.says(i, info.error) for i in range(len(m.fixes)))


@pytest.mark.parametrize("m", MISTAKES, ids=IDS)
def test_strict_mode_makes_the_mistake_an_error(plugin_root, monkeypatch, m):
    install(plugin_root, m)
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError) as err:
        load(plugin_root)
    message = str(err.value)
    assert message.startswith(m.prefix) and m.says(0, message)
    assert message.endswith("(ZOO_STRICT_PLUGINS is set)")


# -- each mistake, on the command line -------------------------------------------------
def test_cli_offers_only_the_correct_components_and_reports_refusals(plugin_root):
    for m in MISTAKES:
        install(plugin_root, m)
    listed = zoo_cli("list", root=plugin_root)
    assert listed.returncode == 0, listed.stderr
    shown = {line.split()[0] for line in listed.stdout.splitlines() if line.startswith("  ")}
    for m in MISTAKES:
        assert set(m.fine) <= shown and not set(m.faulty) & shown, m.entry
        warnings = warnings_of(listed.stderr, "zoo: warning: " + m.prefix)
        assert len(warnings) == len(m.fixes), (m.entry, warnings)
        assert all(m.says(i, line) for i, line in enumerate(warnings)), warnings
    # The undocumented nn.Module does not show torch's docstring as its summary.
    assert TORCH_MODULE_DOC not in listed.stdout
    assert "mlp" in shown and "Traceback" not in listed.stderr

    report = zoo_cli("plugins", "--json", root=plugin_root)
    assert report.returncode == 0, report.stderr
    plugins = {p["name"]: p for p in json.loads(report.stdout)}
    for m in MISTAKES:
        info = plugins[m.entry]
        assert info["distribution"] == m.dist and info["version"] == "1.0"
        assert info["components"] == [f"encoder:{name}" for name in m.fine]
        assert [name for name in m.faulty if any(f"'{name}'" in r for r in info["refused"])
                ] == list(m.faulty)
        assert len(info["refused"]) == len(m.faulty)
        assert all(m.says(i, info["error"]) for i in range(len(m.fixes))), info["error"]


@pytest.mark.parametrize("m", MISTAKES, ids=IDS)
def test_cli_strict_mode_exits_1_with_one_line(plugin_root, m):
    install(plugin_root, m)
    out = zoo_cli("list", root=plugin_root, ZOO_STRICT_PLUGINS="1")
    line = one_error_line(out, code=1)
    assert line.startswith("zoo: error: " + m.prefix) and m.says(0, line)
    assert line.endswith("(ZOO_STRICT_PLUGINS is set)")
    assert out.stdout == ""


# -- a third-party plugin taking a built-in's name ---------------------------------------
def install_clash(root: Path, override: bool = False) -> str:
    entry = "overrider" if override else "clashy"
    write_dist(root, f"zoo-{entry}", "1.0", entry, f"zp_reg_{entry}",
               OVERRIDES_BUILTIN if override else TAKES_BUILTIN_NAME)
    return entry


def load_with_builtins(**kw) -> PluginManager:
    """A manager that loaded every installed plugin (the built-ins and the test ones)."""
    manager = PluginManager()
    manager.load_entry_points(**kw)
    return manager


def test_builtin_keeps_its_name_and_the_plugin_gets_a_qualified_one(plugin_root, capsys):
    entry = install_clash(plugin_root)
    registry = load_with_builtins().registry
    assert registry.get("node_model", "gcn").builtin
    theirs = registry.get("node_model", f"{entry}:gcn")
    assert theirs.distribution == "zoo-clashy" and list(theirs.params) == ["depth"]
    assert [c.qualified_name for c in registry.list("gcn")] == ["gcn:gcn"]
    (warning,) = warnings_of(capsys.readouterr().err, "zoo: warning: plugin 'clashy'")
    assert warning.startswith("zoo: warning: plugin 'clashy' (zoo-clashy 1.0) registers "
                              "node_model 'gcn', which the zoo already provides")
    assert "yours is 'clashy:gcn'" in warning and "override=True" in warning
    # The bundled config still validates against (and builds) the built-in...
    exp = zoo.build("gcn_cora", registry=registry)
    assert exp.config["model"]["name"] == "gcn" and "edge_weights" in exp.config["model"]
    # ...and the plugin's is one qualified name away.
    exp = zoo.build("gcn_cora", ["model.name=clashy:gcn"], registry=registry)
    assert exp.config["model"] == {"name": "clashy:gcn", "depth": 1}


def test_builtin_name_taken_without_override_is_an_error_in_strict_mode(plugin_root,
                                                                        monkeypatch):
    install_clash(plugin_root)
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"^plugin 'clashy' \(zoo-clashy 1.0\) registers "
                                          r"node_model 'gcn', which the zoo already provides"):
        load_with_builtins()


def test_override_replaces_the_builtin_which_stays_reachable(plugin_root, capsys):
    entry = install_clash(plugin_root, override=True)
    registry = load_with_builtins().registry
    comp = registry.get("node_model", "gcn")
    assert comp.distribution == "zoo-overrider" and comp.overrides == BUILTIN
    assert registry.get("node_model", "gcn:gcn").builtin
    assert registry.get("node_model", f"{entry}:gcn") is comp
    # A knowing override is said once, with where the replaced built-in went.
    assert warnings_of(capsys.readouterr().err, "zoo: warning: plugin 'overrider'") == [
        "zoo: warning: plugin 'overrider' replaces node_model 'gcn' of zoo 0.2.0 "
        "(override=True); the replaced one stays reachable as 'gcn:gcn'"]
    # Configs naming gcn now get the plugin's, whose schema has no 'hidden'.
    with pytest.raises(ConfigError, match="model.hidden: unknown key for node_model 'gcn'"):
        zoo.build("gcn_cora", registry=registry)


def test_cli_clash_warns_keeps_the_builtin_and_shows_both(plugin_root):
    install_clash(plugin_root)
    shown = zoo_cli("show", "gcn", root=plugin_root)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("node_model 'gcn' — Graph convolutional network")
    assert lines[1] == f"from plugin 'gcn' ({BUILTIN})"
    assert ("also registered: clashy:gcn from plugin 'clashy' (zoo-clashy 1.0) — "
            "A third-party node model that is also called gcn.") in lines

    valid = zoo_cli("validate", "gcn_cora", root=plugin_root)
    assert valid.returncode == 0, valid.stderr
    assert yaml.safe_load(valid.stdout)["model"]["edge_weights"] is False  # the built-in's
    (warning,) = warnings_of(valid.stderr, "zoo: warning: plugin 'clashy'")
    assert "yours is 'clashy:gcn'" in warning and "override=True" in warning

    qualified = zoo_cli("validate", "gcn_cora", "model.name=clashy:gcn", root=plugin_root)
    assert qualified.returncode == 0, qualified.stderr
    assert yaml.safe_load(qualified.stdout)["model"] == {"name": "clashy:gcn", "depth": 1}

    strict = zoo_cli("validate", "gcn_cora", root=plugin_root, ZOO_STRICT_PLUGINS="1")
    line = one_error_line(strict, code=1)
    assert line.startswith("zoo: error: plugin 'clashy' (zoo-clashy 1.0) registers node_model "
                           "'gcn', which the zoo already provides")


def test_cli_show_says_what_an_override_replaced(plugin_root):
    install_clash(plugin_root, override=True)
    shown = zoo_cli("show", "gcn", root=plugin_root)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == ("node_model 'gcn' — A third-party node model that is also called gcn.")
    assert lines[1] == f"from plugin 'overrider' (zoo-overrider 1.0), replacing {BUILTIN}"
    assert any(line.startswith(f"also registered: gcn:gcn from plugin 'gcn' ({BUILTIN}) — "
                               "Graph convolutional network") for line in lines), lines


# -- ZOO_PLUGINS naming no installed plugin ----------------------------------------------
def test_allowlist_naming_no_installed_plugin_warns(plugin_root, monkeypatch, capsys):
    write_dist(plugin_root, "zoo-pgood", "1.0", "pgood", "zp_reg_pgood", good("enc_pgood"))
    monkeypatch.setenv("ZOO_PLUGINS", "a_name_no_plugin_has")
    manager = load(plugin_root)
    assert manager.registry.list() == []  # the one installed plugin was not asked for
    (warning,) = warnings_of(capsys.readouterr().err)
    assert warning == ("zoo: warning: ZOO_PLUGINS names 'a_name_no_plugin_has', which no "
                       "installed plugin provides; installed plugins: pgood")
    monkeypatch.setenv("ZOO_PLUGINS", "pgod")
    load(plugin_root)
    (warning,) = warnings_of(capsys.readouterr().err)
    assert "ZOO_PLUGINS names 'pgod'" in warning and "(did you mean 'pgood'?)" in warning


def test_allowlist_naming_no_installed_plugin_is_an_error_in_strict_mode(plugin_root,
                                                                         monkeypatch):
    write_dist(plugin_root, "zoo-pgood", "1.0", "pgood", "zp_reg_pgood2", good("enc_pgood2"))
    monkeypatch.setenv("ZOO_PLUGINS", "a_name_no_plugin_has")
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError) as err:
        load(plugin_root)
    assert str(err.value) == ("ZOO_PLUGINS names 'a_name_no_plugin_has', which no installed "
                              "plugin provides; installed plugins: pgood (ZOO_STRICT_PLUGINS "
                              "is set)")


def test_cli_allowlist_naming_no_installed_plugin_warns_or_fails_when_strict(plugin_root):
    out = zoo_cli("list", "encoder", root=plugin_root, ZOO_PLUGINS="a_name_no_plugin_has")
    assert out.returncode == 0, out.stderr
    assert "mlp" in out.stdout
    (warning,) = warnings_of(out.stderr, "zoo: warning: ZOO_PLUGINS")
    assert "ZOO_PLUGINS names 'a_name_no_plugin_has', which no installed plugin provides" in (
        warning)
    strict = zoo_cli("list", "encoder", root=plugin_root, ZOO_PLUGINS="a_name_no_plugin_has",
                     ZOO_STRICT_PLUGINS="1")
    line = one_error_line(strict, code=1)
    assert line.startswith("zoo: error: ZOO_PLUGINS names 'a_name_no_plugin_has'")
    assert line.endswith("(ZOO_STRICT_PLUGINS is set)")
