"""The command line, in a subprocess as users run it: outputs, exit codes, and that bad
input gives one clear line and writes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from zoo_plugins.datasets.fetch import mirror_file

REPO = Path(__file__).resolve().parents[2]
# The folder holding the Cora files, in either mirror layout ("" when offline data is absent).
CORA_FILE = mirror_file("ind.cora.x", "planetoid")
MIRROR = str(CORA_FILE.parent) if CORA_FILE else ""
needs_cora = pytest.mark.skipif(not (Path(MIRROR) / "ind.cora.x").is_file(),
                                reason="needs the local Cora mirror")


def zoo(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, **env}, timeout=300)


def user_error(out: subprocess.CompletedProcess, code: int = 2, usage: bool = False) -> str:
    """Assert a clean user error: the exit code, no traceback, one error line (after the
    command's usage when ``usage``)."""
    assert out.returncode == code, (out.returncode, out.stderr)
    lines = [line for line in out.stderr.splitlines() if not line.startswith("zoo: warning")]
    assert "Traceback" not in out.stderr
    if usage:
        assert lines and lines[0].startswith("usage: zoo "), lines
        lines = [line for line in lines[1:] if not line.startswith(" ")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("zoo: error: ")
    return lines[0]


@needs_cora
def test_run_writes_config_metrics_and_summary(tmp_path):
    out_dir = tmp_path / "run"
    res = zoo("run", "gcn_cora", "trainer.epochs=4", "model.hidden=8", "--seeds", "2",
              "--out", str(out_dir), "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "test_accuracy:" in res.stdout
    config = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert config["model"] == {"name": "gcn", "hidden": 8, "layers": 2, "dropout": 0.5,
                               "self_loops": True, "norm": "both", "activation": "relu",
                               "edge_weights": False}
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["seed"], r["epoch"]) for r in records] == [(s, e) for s in (0, 1) for e in range(4)]
    summary = json.loads((out_dir / "summary.json").read_text())
    assert set(summary) == {"config", "seeds", "task", "metrics", "timing", "provenance",
                            "curves"}
    assert summary["curves"] == ["curves.png"] and (out_dir / "curves.png").is_file()
    origin = summary["provenance"]
    assert origin["zoo"] and origin["packages"]["torch"] and origin["packages"]["dgl"]
    assert origin["python"].count(".") == 2 and origin["host"]["cores"] >= 1
    assert origin["command"].startswith("zoo run gcn_cora trainer.epochs=4")
    assert origin["source"] is None or len(origin["source"]["commit"]) == 40
    assert summary["task"] == {"name": "node_classification", "monitor": "val_accuracy",
                               "mode": "max", "report": ["test_accuracy", "val_accuracy"]}
    assert summary["seeds"] == [0, 1]
    for key in ("test_accuracy", "val_accuracy"):
        m = summary["metrics"][key]
        assert set(m) == {"mean", "std", "values"} and len(m["values"]) == 2
        assert all(0.0 <= v <= 1.0 for v in m["values"])
    assert set(summary["timing"]) == {"epoch_ms_median", "wall_s", "seed_wall_s"}
    assert len(summary["timing"]["seed_wall_s"]) == 2
    assert summary["timing"]["epoch_ms_median"] > 0
    assert not list(out_dir.glob(".*.tmp"))


@needs_cora
def test_default_run_folder_is_under_the_working_directory(tmp_path):
    res = zoo("run", str(REPO / "configs" / "gcn_cora.yaml"), "trainer.epochs=2", "--quiet",
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("gcn_cora-") and (run / "summary.json").is_file()


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = (REPO / "configs" / "gcn_cora.yaml").read_text()


@pytest.mark.parametrize("change, expected", [
    (("name: gcn", "name: gnc"), "model.name: unknown node_model 'gnc' (did you mean 'gcn'?)"),
    (("hidden: 16", "hiden: 16"), "model.hiden: unknown key for node_model 'gcn' (did you mean "
                                  "'hidden'?)"),
    (("lr: 0.01", "lr: fast"), "trainer.optimizer.lr: expected float, got the string 'fast'"),
    (("epochs: 200", "epochs: [200"), "has a YAML syntax error at line"),
    (("seeds: 1", "seeds: 0"), "seeds: expected a whole number >= 1"),
    (("trainer:", "trainr:"), "trainr: unknown top-level key (did you mean 'trainer'?)"),
])
def test_config_errors_exit_2_and_write_nothing(tmp_path, change, expected):
    cfg = write(tmp_path, GOOD.replace(*change))
    out_dir = tmp_path / "out"
    for command in (["validate", str(cfg)], ["run", str(cfg), "--out", str(out_dir)]):
        assert expected in user_error(zoo(*command, cwd=tmp_path))
    assert not out_dir.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, expected", [
    (["validate", "no/such/config.yaml"], "config file 'no/such/config.yaml' not found"),
    (["validate", "gcn_cora", "model.hidden=lots"], "model.hidden: expected int"),
    (["validate", "gcn_cor"], "(did you mean 'gcn_cora'?)"),
    (["show", "gcnn"], "no component called 'gcnn' (did you mean 'gcn'?)"),
    (["list", "encodr", "m*"], "unknown kind 'encodr' (did you mean 'encoder'?)"),
])
def test_usage_errors_exit_2(args, expected):
    assert expected in user_error(zoo(*args))


def test_argparse_usage_error_exits_2():
    assert zoo("run").returncode == 2
    assert zoo("frobnicate").returncode == 2


def test_a_run_never_overwrites_an_earlier_run(tmp_path):
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "summary.json").write_text('{"precious": true}')
    line = user_error(zoo("run", "gcn_cora", "--out", str(out_dir), "--quiet"))
    assert "already holds a run" in line
    assert json.loads((out_dir / "summary.json").read_text()) == {"precious": True}


@needs_cora
def test_corrupt_dataset_file_is_a_runtime_error_leaving_no_file(tmp_path):
    mirror = tmp_path / "mirror"
    shutil.copytree(MIRROR, mirror)
    data = (mirror / "ind.cora.graph").read_bytes()
    (mirror / "ind.cora.graph").write_bytes(data[: len(data) // 2])  # truncated
    cache = tmp_path / "cache"
    out = zoo("run", "gcn_cora", "--out", str(tmp_path / "run"), "--quiet",
              ZOO_DATA_MIRROR=str(mirror), ZOO_DATA_DIR=str(cache))
    line = user_error(out, code=1)
    assert "ind.cora.graph" in line and "checksum" in line
    assert not [p for p in cache.rglob("*") if p.is_file() and "graph" in p.name]
    assert not (tmp_path / "run" / "summary.json").exists()


def test_list_show_and_json():
    listed = zoo("list", "gc*")
    assert listed.returncode == 0 and "gcn" in listed.stdout and "mlp" not in listed.stdout
    comps = json.loads(zoo("list", "--json").stdout)
    kinds = {c["kind"] for c in comps}
    assert {"dataset", "encoder", "node_model", "trainer"} <= kinds
    shown = zoo("show", "gcn")
    assert shown.returncode == 0
    assert "hidden: 16" in shown.stdout and "units in each hidden layer" in shown.stdout
    schema = json.loads(zoo("show", "mlp", "--json").stdout)
    assert schema["params"]["hidden"]["type"] == "int >= 1" and schema["inputs"] == [
        "in_dim", "out_dim"]
