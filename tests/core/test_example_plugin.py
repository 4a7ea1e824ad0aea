"""The example third-party plugin, for real: pip-installed into a fresh virtual
environment beside the zoo, then seen by `zoo list` and used by `zoo run`."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from zoo_plugins.datasets.fetch import mirror_file

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "zoo-plugin-example"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> Path:
    """A new venv that sees the zoo's environment and has the example pip-installed."""
    env_dir = tmp_path_factory.mktemp("plugin-venv")
    venv.EnvBuilder(with_pip=True, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip()
    # Beside the zoo: the new environment also reads the zoo's site-packages (where
    # torch, DGL and the zoo itself are installed), as a .pth file makes it do.
    parents = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    lines = [f"import site; site.addsitedir({p!r})" for p in dict.fromkeys(parents)]
    (Path(purelib) / "zz_zoo_parent.pth").write_text("\n".join(lines) + "\n")
    # Build the wheel with the zoo's own tools (offline), install it with the new pip.
    # A copy, so the build leaves nothing in the checkout.
    wheels = tmp_path_factory.mktemp("wheels")
    source = wheels / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "-w", str(wheels), str(source)],
                   check=True, cwd=wheels, timeout=300)
    (wheel,) = wheels.glob("zoo_plugin_example-*.whl")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    str(wheel)], check=True, cwd=wheels, timeout=300)
    return python


def zoo(python: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "zoo.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300, env=dict(os.environ))


def test_installed_plugin_is_listed(plugin_env):
    out = zoo(plugin_env, "list", "encoder")
    assert out.returncode == 0, out.stderr
    assert "residual_mlp" in out.stdout and "MLP with residual hidden blocks" in out.stdout
    plugins = {p["name"]: p for p in json.loads(zoo(plugin_env, "plugins", "--json").stdout)}
    assert plugins["example"]["distribution"] == "zoo-plugin-example"
    assert plugins["example"]["version"] == "0.1.0"
    assert plugins["example"]["components"] == ["encoder:residual_mlp"]
    assert not plugins["example"]["builtin"]
    # The zoo's own environment does not see it: the plugin lives only where installed.
    mine = json.loads(subprocess.check_output(
        [sys.executable, "-m", "zoo.cli", "plugins", "--json"], text=True))
    assert "example" not in {p["name"] for p in mine}


@pytest.mark.skipif(
    mirror_file("ind.cora.x", "planetoid") is None,
    reason="needs the local Cora mirror")
def test_installed_plugin_runs(plugin_env, tmp_path):
    config = tmp_path / "residual.yaml"
    config.write_text(
        "dataset: {name: planetoid, subset: cora}\n"
        "encoder: {name: residual_mlp, hidden: 32, blocks: 1}\n"
        "trainer: {name: supervised, epochs: 20}\n")
    out = zoo(plugin_env, "run", str(config), "--out", str(tmp_path / "run"), "--quiet",
              cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["encoder"]["name"] == "residual_mlp"
    assert summary["metrics"]["test_accuracy"]["mean"] > 0.3
