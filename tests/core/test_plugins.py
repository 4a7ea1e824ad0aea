"""Plugin discovery: broken plugins are isolated, clashes are named, strict and
allowlist modes work — all through real entry points of throw-away distributions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from zoo.errors import PluginError
from zoo.plugins import PluginManager

sys.path.insert(0, str(Path(__file__).parent))
from plugin_dists import BROKEN_IMPORT, EXITS, RAISES, good, write_dist  # noqa: E402


def entry_points(root: Path) -> list[metadata.EntryPoint]:
    return [ep for d in metadata.distributions(path=[str(root)])
            for ep in d.entry_points if ep.group == "zoo.plugins"]


@pytest.fixture
def plugin_root(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("ZOO_PLUGINS", raising=False)
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    return tmp_path


def load(root: Path, **kw) -> PluginManager:
    manager = PluginManager()
    manager.load_entry_points(entry_points(root), **kw)
    return manager


def test_broken_plugins_are_skipped_and_recorded(plugin_root, capsys):
    write_dist(plugin_root, "zoo-good", "1.0", "good", "zp_good", good("doubler"))
    write_dist(plugin_root, "zoo-broken", "0.3", "broken", "zp_broken", BROKEN_IMPORT)
    write_dist(plugin_root, "zoo-raises", "0.4", "raises", "zp_raises", RAISES)
    write_dist(plugin_root, "zoo-exits", "0.5", "exits", "zp_exits", EXITS)
    manager = load(plugin_root)
    info = {p.name: p for p in manager.plugins}
    assert info["good"].status == "loaded" and info["good"].components == ["encoder:doubler"]
    assert info["good"].distribution == "zoo-good" and info["good"].version == "1.0"
    assert info["broken"].status == "failed"
    assert "No module named 'a_module_that_does_not_exist'" in info["broken"].error
    assert info["raises"].status == "failed" and "boom in the hook" in info["raises"].error
    assert info["exits"].status == "failed" and "SystemExit" in info["exits"].error
    # Nothing of a plugin whose hook raised is kept.
    assert manager.registry.list("half_registered") == []
    assert manager.registry.get("encoder", "doubler").distribution == "zoo-good"
    warnings = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(warnings) == 3 and all(w.startswith("zoo: warning: plugin '") for w in warnings)


def test_strict_mode_turns_a_failure_into_an_error(plugin_root):
    write_dist(plugin_root, "zoo-broken", "0.3", "broken", "zp_broken2", BROKEN_IMPORT)
    with pytest.raises(PluginError, match="plugin 'broken' \\(zoo-broken 0.3\\) failed to import"):
        load(plugin_root, strict=True)


def test_clash_is_an_error_naming_both_distributions(plugin_root, capsys):
    write_dist(plugin_root, "zoo-alpha", "1.0", "alpha", "zp_alpha", good("twin"))
    write_dist(plugin_root, "zoo-beta", "2.0", "beta", "zp_beta", good("twin"))
    manager = load(plugin_root)
    with pytest.raises(PluginError, match="registered by both zoo-alpha 1.0 and zoo-beta 2.0"):
        manager.registry.get("encoder", "twin")
    assert "registered by both zoo-alpha 1.0 and zoo-beta 2.0" in capsys.readouterr().err


def test_override_flag_replaces_without_a_clash(plugin_root):
    write_dist(plugin_root, "zoo-alpha", "1.0", "alpha", "zp_alpha2", good("single"))
    write_dist(plugin_root, "zoo-gamma", "1.1", "gamma", "zp_gamma", good("single", True))
    comp = load(plugin_root).registry.get("encoder", "single")
    assert comp.distribution == "zoo-gamma" and comp.overrides == "zoo-alpha 1.0"


def test_allowlist_selects_third_party_plugins(plugin_root, monkeypatch):
    write_dist(plugin_root, "zoo-a", "1.0", "pa", "zp_a", good("enc_a"))
    write_dist(plugin_root, "zoo-b", "1.0", "pb", "zp_b", good("enc_b"))
    monkeypatch.setenv("ZOO_PLUGINS", "pb")
    manager = load(plugin_root)
    assert [c.name for c in manager.registry.list()] == ["enc_b"]
    assert {p.name: p.status for p in manager.plugins} == {"pa": "skipped", "pb": "loaded"}
    monkeypatch.setenv("ZOO_PLUGINS", "")
    assert load(plugin_root).registry.list() == []


def zoo_cli(*args: str, root: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(root), **env}
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True,
                          text=True, env=full_env, timeout=120)


def test_cli_reports_plugins_and_survives_broken_ones(plugin_root):
    write_dist(plugin_root, "zoo-broken", "0.3", "broken", "zp_broken3", BROKEN_IMPORT)
    write_dist(plugin_root, "zoo-good", "1.0", "good", "zp_good2", good("doubler2"))
    out = zoo_cli("plugins", "--json", root=plugin_root)
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert plugins["broken"]["status"] == "failed" and plugins["broken"]["error"]
    assert plugins["good"]["components"] == ["encoder:doubler2"]
    assert plugins["gcn"]["builtin"] and plugins["gcn"]["components"] == ["node_model:gcn"]
    listed = zoo_cli("list", "encoder", root=plugin_root)
    assert listed.returncode == 0 and "doubler2" in listed.stdout and "mlp" in listed.stdout
    strict = zoo_cli("list", root=plugin_root, ZOO_STRICT_PLUGINS="1")
    assert strict.returncode == 1
    last = strict.stderr.strip().splitlines()[-1]
    assert last.startswith("zoo: error: plugin '") and "ZOO_STRICT_PLUGINS is set" in last
    assert "Traceback" not in strict.stderr


def test_cli_clash_is_one_clear_error(plugin_root):
    write_dist(plugin_root, "zoo-alpha", "1.0", "alpha", "zp_alpha3", good("twin2"))
    write_dist(plugin_root, "zoo-beta", "2.0", "beta", "zp_beta3", good("twin2"))
    out = zoo_cli("validate", "gcn_cora", "encoder.name=twin2", root=plugin_root)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert "zoo-alpha 1.0 and zoo-beta 2.0" in last and "override=True" in last
    assert "Traceback" not in out.stderr
