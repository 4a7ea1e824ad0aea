"""`zoo new-plugin`: the package it writes installs (pip, for real), is listed, runs its
shipped config and passes its own tests as generated; bad names and folders are refused."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import zoo
from zoo.cli import main
from zoo.plugins import PluginManager
from zoo.testing import check_plugin

ALL_KINDS = list(zoo.KINDS)


def run(*args: str, cwd: Path | None = None, timeout: float = 180,
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=dict(os.environ))


def test_default_package_is_one_conforming_node_model(tmp_path, capsys, monkeypatch):
    out = tmp_path / "zoo-my-gnn"
    assert main(["new-plugin", "my-gnn", "--out", str(out)]) == 0
    assert f"wrote {out}/" in capsys.readouterr().out
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["README.md", "my_gnn/__init__.py", "my_gnn/configs/my_gnn.yaml",
                     "pyproject.toml", "tests/test_my_gnn.py"]
    project = tomllib.loads((out / "pyproject.toml").read_text())
    assert project["project"]["name"] == "zoo-my-gnn"
    assert project["project"]["entry-points"]["zoo.plugins"] == {"my_gnn": "my_gnn"}
    assert project["tool"]["setuptools"]["package-data"] == {"my_gnn": ["configs/*.yaml"]}
    config = yaml.safe_load((out / "my_gnn/configs/my_gnn.yaml").read_text())
    assert config["model"] == {"name": "my_gnn"} and config["dataset"]["name"] == "sbm"
    # Loaded as a plugin beside the built-ins, it passes every conformance rule.
    monkeypatch.syspath_prepend(str(out))
    manager = PluginManager(warn=False)
    manager.load_entry_points(allow=set())
    try:
        manager.load_module(importlib.import_module("my_gnn"), "my_gnn")
        reports = check_plugin("my_gnn", manager.registry)
    finally:
        sys.modules.pop("my_gnn", None)
    assert list(reports) == ["node_model:my_gnn"]
    assert {"forward and backward", "gradients", "sparse features"} <= set(
        reports["node_model:my_gnn"].passed)


@pytest.mark.parametrize(("args", "message"), [
    (["Bad-Name"], "'Bad-Name' is not a valid plugin name; use 1-30 lowercase letters"),
    (["9lives"], "'9lives' is not a valid plugin name"),
    (["class"], "'class' is a Python keyword"),
    (["torch"], "a module 'torch' can already be imported here"),
    (["gcn"], "node_model 'gcn' is already provided by zoo"),
    (["fine", "--kind", "trainers"], "argument --kind: invalid choice: 'trainers'"),
])
def test_bad_requests_are_refused_with_exit_code_2(tmp_path, capsys, args, message):
    out = tmp_path / "pkg"
    try:
        code = main(["new-plugin", *args, "--out", str(out)])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert "zoo: error: " in err and message in err and "Traceback" not in err
    assert not out.exists()


def test_an_existing_folder_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["new-plugin", "fresh", "--out", str(out)]) == 2
    assert f"--out {out} already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no staging folder left


def test_an_unwritable_folder_is_a_clear_error(capsys):
    assert main(["new-plugin", "fine", "--out", "/proc/zoo-fine"]) == 2
    assert "cannot write the package to /proc/zoo-fine" in capsys.readouterr().err


def test_generated_package_installs_and_passes_its_own_tests(tmp_path):
    name = f"scaffold_{os.getpid()}"  # unique: other test runs may share the venv
    pkg = tmp_path / f"zoo-{name}"
    kinds = [arg for kind in ALL_KINDS for arg in ("--kind", kind)]
    made = run("-m", "zoo.cli", "new-plugin", name, *kinds, "--out", str(pkg))
    assert made.returncode == 0, made.stderr
    installed = run("-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "-e", str(pkg), cwd=tmp_path)
    try:
        assert installed.returncode == 0, installed.stderr
        tests = run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=pkg, timeout=300)
        assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
        assert "8 passed" in tests.stdout
        listed = run("-m", "zoo.cli", "list", "--json", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        mine = {(c["kind"], c["name"]): c for c in json.loads(listed.stdout)
                if c["plugin"] == name}
        assert set(mine) == {(kind, f"{name}_{kind}") for kind in ALL_KINDS}
        assert mine[("node_model", f"{name}_node_model")]["summary"].startswith(
            "Two-layer graph convolutional network")
        found = run("-m", "zoo.cli", "validate", name, cwd=tmp_path)  # its zoo_configs hook
        assert found.returncode == 0, found.stderr
        assert f"name: {name}_dataset" in found.stdout  # the resolved config
        config = pkg / name / "configs" / f"{name}.yaml"
        ran = run("-m", "zoo.cli", "run", str(config), "trainer.epochs=5", "--quiet",
                  "--out", str(tmp_path / "run"), cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["config"]["trainer"]["name"] == f"{name}_trainer"
        assert (tmp_path / "run" / "metrics.csv").is_file()  # the plugin's logger
    finally:
        removed = run("-m", "pip", "uninstall", "--yes", "--quiet", f"zoo-{name}")
        assert removed.returncode == 0, removed.stderr
    after = run("-m", "pip", "show", f"zoo-{name}")
    assert after.returncode != 0  # the venv is left as it was
