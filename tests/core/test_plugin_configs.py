"""Plugin-shipped configs (the ``zoo_configs`` hook): ``zoo run NAME`` and ``zoo configs``
find them, through real entry points of throw-away distributions.

Pinned: a bundled config keeps its plain name when a plugin ships one of the same name
(the plugin's is ``plugin:name``, or ``distribution:name``); a plugin's config with a
name of its own is found by that name; a plain name two plugins ship is a ConfigError
naming both qualified names; ``zoo configs --json`` lists each config with its origin
and the first line of its header; a path the hook returns that is missing is a warning
and the plugin's other configs are still offered; ``zoo plugins`` lists the configs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

import zoo.cli
from zoo.config import named_configs, resolve_config_path
from zoo.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parent))
from plugin_dists import plugin_site, write_dist  # noqa: E402

# A plugin whose zoo_configs returns {returns}, with HERE its configs folder.
CONFIG_PLUGIN = '''
from pathlib import Path

import zoo

HERE = Path(__file__).parent / "{folder}"


@zoo.hookimpl
def zoo_configs():
    return {returns}
'''

NARROW_GCN = """\
# GCN on Cora, narrow: the cfgplug plugin's own gcn_cora (a test config).
# Second header line, not the description.
dataset: {name: planetoid, subset: cora}
model: {name: gcn, hidden: 7}
trainer: {name: supervised, epochs: 2}
"""

TINY = """\

# A tiny MLP on Cora (a test config shipped by cfgplug).
dataset: {name: planetoid, subset: cora}
encoder: {name: mlp, hidden: 5}
trainer: {name: supervised, epochs: 2}
"""

SHARED = """\
# Shipped by {plugin}.
dataset: {name: planetoid, subset: cora}
model: {name: gcn, hidden: 3}
trainer: {name: supervised, epochs: 1}
"""


def plugin(root: Path, entry: str, configs: dict[str, str], returns: str = "HERE") -> None:
    """Install the distribution ``zoo-<entry>`` whose plugin ships ``configs``."""
    folder = root / f"{entry}_configs"
    folder.mkdir()
    for name, text in configs.items():
        (folder / f"{name}.yaml").write_text(text)
    write_dist(root, f"zoo-{entry}", "1.0", entry, f"zp_cfg_{entry}",
               CONFIG_PLUGIN.replace("{folder}", folder.name).replace("{returns}", returns))


@pytest.fixture
def plugin_root(tmp_path, monkeypatch):
    """A folder on sys.path for throw-away distributions (see plugin_dists.plugin_site)."""
    yield from plugin_site(tmp_path, monkeypatch, "zp_cfg_")


@pytest.fixture
def shipped(plugin_root):
    """cfgplug ships gcn_cora (a bundled name) and tiny_cfg; cfgone and cfgtwo both ship
    shared; cfgbad returns one folder and one missing file."""
    plugin(plugin_root, "cfgplug", {"gcn_cora": NARROW_GCN, "tiny_cfg": TINY})
    plugin(plugin_root, "cfgone", {"shared": SHARED.replace("{plugin}", "cfgone")})
    plugin(plugin_root, "cfgtwo", {"shared": SHARED.replace("{plugin}", "cfgtwo")})
    plugin(plugin_root, "cfgbad", {"bad_ok": TINY},
           returns='[HERE, HERE.parent / "no_such_config.yaml"]')
    return plugin_root


def test_bundled_keeps_its_name_and_the_plugins_is_qualified(shipped):
    bundled = resolve_config_path("gcn_cora")
    assert bundled.parent.name == "configs" and "hidden: 16" in bundled.read_text()
    theirs = shipped / "cfgplug_configs" / "gcn_cora.yaml"
    assert resolve_config_path("cfgplug:gcn_cora") == theirs
    assert resolve_config_path("zoo-cfgplug:gcn_cora") == theirs  # the distribution works too
    assert resolve_config_path("gcn_cora.yaml") == bundled


def test_a_plugin_config_with_its_own_name_is_found_by_it(shipped):
    path = shipped / "cfgplug_configs" / "tiny_cfg.yaml"
    assert resolve_config_path("tiny_cfg") == path
    assert resolve_config_path("cfgplug:tiny_cfg") == path


def test_a_name_two_plugins_ship_is_an_error_naming_both(shipped):
    with pytest.raises(ConfigError) as err:
        resolve_config_path("shared")
    message = str(err.value)
    assert "'cfgone:shared'" in message and "'cfgtwo:shared'" in message
    assert resolve_config_path("cfgtwo:shared") == shipped / "cfgtwo_configs" / "shared.yaml"
    with pytest.raises(ConfigError, match="no plugin 'cfgplug' ships config 'shared'; run it "
                                          "as 'cfgone:shared' or 'cfgtwo:shared'"):
        resolve_config_path("cfgplug:shared")
    with pytest.raises(ConfigError, match=r"config file 'tiny_cgf' not found \(did you mean "
                                          r"'tiny_cfg'\?\)"):
        resolve_config_path("tiny_cgf")


def test_zoo_configs_lists_every_config_with_origin_and_description(shipped, capsys):
    assert zoo.cli.main(["configs", "--json"]) == 0
    out = capsys.readouterr().out
    listed = {c["name"]: c for c in json.loads(out)}
    assert listed["gcn_cora"]["origin"] == "bundled"
    assert listed["gcn_cora"]["description"].startswith("GCN on Cora — reproduces Kipf")
    assert listed["cfgplug:gcn_cora"] == {
        "name": "cfgplug:gcn_cora", "origin": "cfgplug", "distribution": "zoo-cfgplug",
        "path": str(shipped / "cfgplug_configs" / "gcn_cora.yaml"),
        "description": "GCN on Cora, narrow: the cfgplug plugin's own gcn_cora (a test "
                       "config)."}
    # The header comment may follow a blank line.
    assert listed["tiny_cfg"]["description"] == "A tiny MLP on Cora (a test config shipped " \
                                                "by cfgplug)."
    assert listed["cfgone:shared"]["origin"] == "cfgone"
    assert listed["cfgtwo:shared"]["description"] == "Shipped by cfgtwo."
    assert "shared" not in listed and "tiny_cfg" in listed and "bad_ok" in listed
    # Every config named by zoo configs resolves to the file it lists.
    for name, entry in listed.items():
        assert str(resolve_config_path(name)) == entry["path"], name
    assert {c.name for c in named_configs()} == set(listed)

    assert zoo.cli.main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("cfgplug:gcn_cora "))
    assert row.split()[1] == "cfgplug" and row.endswith("(a test config).")


def test_a_missing_path_is_a_warning_and_the_other_configs_are_offered(shipped, capsys):
    assert zoo.cli.main(["plugins", "--json"]) == 0
    captured = capsys.readouterr()
    plugins = {p["name"]: p for p in json.loads(captured.out)}
    assert plugins["cfgbad"]["configs"] == ["bad_ok"]
    assert "no_such_config.yaml', which is missing" in plugins["cfgbad"]["error"]
    assert plugins["cfgplug"]["configs"] == ["gcn_cora", "tiny_cfg"]
    assert plugins["cfgplug"]["status"] == "loaded" and plugins["cfgplug"]["error"] is None
    assert resolve_config_path("bad_ok") == shipped / "cfgbad_configs" / "bad_ok.yaml"


def test_zoo_run_runs_a_plugin_config_by_its_qualified_name(shipped, tmp_path, capsys):
    out = tmp_path / "run"
    code = zoo.cli.main(["run", "cfgplug:gcn_cora", "trainer.epochs=1", "--quiet",
                         "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["hidden"] == 7  # the plugin's gcn_cora, not the bundled one
    assert json.loads((out / "summary.json").read_text())["seeds"] == [0]
    code = zoo.cli.main(["validate", "shared"])
    err = capsys.readouterr().err
    assert code == 2 and "zoo: error: config 'shared' is shipped by several plugins" in err
    assert "Traceback" not in err
