"""The command line as users type it (``zoo`` in a subprocess): validation before anything
is built or written, and overrides.

Pinned:

- out-of-range values (``trainer.epochs=0``, ``trainer.optimizer.lr=-1`` or ``.nan``,
  ``model.dropout=1.5``, ``model.hidden=0``, ``model.layers=0``, a negative weight decay or
  patience, ``--seeds 0``, a batch source's ``batch_size: 0``) and a batch source that
  cannot feed the model are exit 2 with one line naming the dotted key and the allowed
  range, and write nothing (no ``--out`` folder, no ``runs/``); the same ``--out`` then
  works for a good run;
- ``device=cuda`` without CUDA is exit 2 with one line; ``device=cpu`` works;
- overrides may stand anywhere on the line, and land in the resolved ``config.yaml``;
- a malformed command line prints the subcommand's usage, then one error line (exit 2);
  an unknown command suggests the closest one;
- list sections: ``regularizers.0.multiplier=``, ``regularizers+=``, ``~regularizers.0``,
  and an index past the end says how many items there are and how to append;
- moved keys name their new place;
- run outputs get the user's normal file mode (0o666 less the umask);
- ``zoo show`` prints ranges and nested sections' fields.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from zoo_plugins.datasets.fetch import mirror_file

# The folder holding the Cora files, in either mirror layout ("" when offline data is absent).
CORA_FILE = mirror_file("ind.cora.x", "planetoid")
MIRROR = str(CORA_FILE.parent) if CORA_FILE else ""
needs_cora = pytest.mark.skipif(not (Path(MIRROR) / "ind.cora.x").is_file(),
                                reason="needs the local Cora mirror")
RUN_FILES = ("config.yaml", "summary.json", "metrics.jsonl")


def zoo(*args: str, cwd: Path | None = None, umask: int | None = None
        ) -> subprocess.CompletedProcess:
    """``zoo ARGS`` in a subprocess (under ``umask`` when given)."""
    preexec = None if umask is None else (lambda: os.umask(umask))
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=dict(os.environ), timeout=300,
                          preexec_fn=preexec)


def user_error(out: subprocess.CompletedProcess, code: int = 2, usage: str | None = None
               ) -> str:
    """Assert a clean user error — the exit code, no traceback, one error line (after the
    usage of the command ``usage``, e.g. ``"zoo run"``, when given) — and return it."""
    assert out.returncode == code, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines()
             if line.strip() and not line.startswith("zoo: warning")]
    if usage is not None:
        assert lines and lines[0].startswith(f"usage: {usage} "), lines
        lines = [line for line in lines[1:] if not line.startswith(" ")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("zoo: error: "), lines
    return lines[0]


def resolved(out: subprocess.CompletedProcess) -> dict:
    """The resolved config ``zoo validate`` printed."""
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


# -- validation before anything is built or written ------------------------------------
@pytest.mark.parametrize("args, expected, usage", [
    (["mlp_cora", "trainer.epochs=0"], ["trainer.epochs: must be >= 1, got 0"], None),
    (["mlp_cora", "trainer.optimizer.lr=-1"], ["trainer.optimizer.lr: must be > 0"], None),
    (["mlp_cora", "trainer.optimizer.lr=.nan"],
     ["trainer.optimizer.lr: must be a finite number > 0, got nan"], None),
    (["gcn_cora", "model.dropout=1.5"], ["model.dropout: must be in [0, 1), got 1.5"], None),
    (["gcn_cora", "model.hidden=0"], ["model.hidden: must be >= 1, got 0"], None),
    (["gcn_cora", "model.layers=0"], ["model.layers: must be >= 1, got 0"], None),
    (["mlp_cora", "trainer.optimizer.weight_decay=-1"],
     ["trainer.optimizer.weight_decay: must be >= 0"], None),
    (["mlp_cora", "trainer.patience=-1"], ["trainer.patience: must be >= 1 or null, got -1"],
     None),
    (["mlp_cora", "--seeds", "0"], ["--seeds must be a whole number >= 1, got 0"], "zoo run"),
    (["mlp_cora", "trainer.batches={name: packed_neighbors, batch_size: 0}"],
     ["trainer.batches.batch_size: must be >= 1, got 0"], None),
    (["gcn_cora", "trainer.batches.name=packed_neighbors"],
     ["trainer.batches: batch source 'packed_neighbors' gives the model no graph",
      "node_model 'gcn' needs one"], None),
], ids=["epochs", "lr_negative", "lr_nan", "dropout", "hidden", "layers", "weight_decay",
        "patience", "seeds", "batch_size", "batches_without_graph"])
def test_bad_value_is_exit_2_with_one_line_and_writes_nothing(tmp_path, args, expected, usage):
    work = tmp_path / "work"
    work.mkdir()
    out_dir = tmp_path / "out"
    line = user_error(zoo("run", *args, "--out", str(out_dir), "--quiet", cwd=work),
                      usage=usage)
    for fragment in expected:
        assert fragment in line, line
    assert not out_dir.exists()
    assert list(work.iterdir()) == []  # no runs/ either


@needs_cora
def test_the_same_out_works_for_a_good_run_after_failed_ones(tmp_path):
    out_dir = tmp_path / "run"
    user_error(zoo("run", "mlp_cora", "trainer.epochs=0", "--out", str(out_dir), cwd=tmp_path))
    user_error(zoo("run", "mlp_cora", "trainer.epochs=2", "--seeds", "0", cwd=tmp_path),
               usage="zoo run")  # no --out: the default folder under runs/ is not made
    assert list(tmp_path.iterdir()) == []
    good = zoo("run", "mlp_cora", "trainer.epochs=2", "--seeds", "1", "--out", str(out_dir),
               "--quiet", cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["seeds"] == [0] and summary["config"]["trainer"]["epochs"] == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_exit_2_with_one_line():
    line = user_error(zoo("validate", "gcn_cora", "device=cuda"))
    assert line.startswith("zoo: error: device: 'cuda'") and "use device: auto or cpu" in line


def test_cpu_device_validates():
    assert resolved(zoo("validate", "gcn_cora", "device=cpu"))["device"] == "cpu"


# -- the command line as users type it -------------------------------------------------
@needs_cora
def test_overrides_and_options_mix_anywhere_on_the_line(tmp_path):
    out_dir = tmp_path / "run"
    out = zoo("run", "gcn_cora", "--seeds", "1", "trainer.epochs=2", "--quiet", "--out",
              str(out_dir), "model.hidden=8", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert config["model"]["hidden"] == 8 and config["trainer"]["epochs"] == 2
    assert config["seeds"] == 1


def test_run_without_config_prints_usage_then_one_error():
    out = zoo("run")
    line = user_error(out, usage="zoo run")
    assert out.stderr.startswith("usage: zoo run ") and "config" in line


def test_run_without_config_names_only_the_missing_config():
    line = user_error(zoo("run"), usage="zoo run")
    assert "config" in line and "KEY=VALUE" not in line


@pytest.mark.parametrize("override, expected", [
    ("model.hidden", ["override 'model.hidden' must look like KEY=VALUE"]),
    ("model.hidden=[1,", ["override 'model.hidden=[1,': the value is not valid YAML",
                          "quote it or fix the brackets"]),
], ids=["no_equals", "broken_yaml"])
def test_malformed_override_prints_usage_then_one_error(override, expected):
    out = zoo("validate", "gcn_cora", override)
    line = user_error(out, usage="zoo validate")
    assert out.stderr.startswith("usage: zoo validate ")
    for fragment in expected:
        assert fragment in line, line


def test_unknown_command_lists_commands_and_suggests_the_closest():
    line = user_error(zoo("frobnicate"), usage="zoo COMMAND")
    assert line.startswith("zoo: error: unknown command 'frobnicate'")
    assert "commands are run, validate, list, show, plugins, graph" in line
    line = user_error(zoo("valdiate", "gcn_cora"), usage="zoo COMMAND")
    assert "unknown command 'valdiate' (did you mean 'validate'?)" in line


# -- list sections -----------------------------------------------------------------------
@pytest.mark.parametrize("override, expected", [
    ("regularizers.0.multiplier=0.1", [("distance", 0.1)]),
    ("regularizers+={name: message_passing, multiplier: 0.5}",
     [("distance", 3.0), ("message_passing", 0.5)]),
    ("~regularizers.0", []),
], ids=["set_item", "append", "remove"])
def test_list_items_are_set_appended_and_removed(override, expected):
    regs = resolved(zoo("validate", "graphreg_mlp_cora", override))["regularizers"]
    assert [(r["name"], r["multiplier"]) for r in regs] == expected


def test_index_past_the_end_says_how_many_items_and_how_to_append():
    line = user_error(zoo("validate", "graphreg_mlp_cora", "regularizers.3.multiplier=1"))
    assert "regularizers.3.multiplier=1" in line
    assert "'regularizers' has 1 item(s)" in line and "regularizers+={name: ...}" in line


# -- moved keys --------------------------------------------------------------------------
@pytest.mark.parametrize("config, override, expected", [
    ("gcn_cora", "trainer.lr=0.01", "trainer.lr has moved: write trainer.optimizer.lr instead"),
    ("gam_cora", "trainer.agreement_lr=0.01",
     "trainer.agreement_lr has moved: write trainer.agreement.optimizer.lr instead"),
], ids=["lr", "agreement_lr"])
def test_moved_key_names_its_new_place(config, override, expected):
    assert user_error(zoo("validate", config, override)) == f"zoo: error: {expected}"


# -- run outputs -------------------------------------------------------------------------
@needs_cora
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)],
                         ids=["umask_022", "umask_077"])
def test_run_files_get_the_users_normal_mode(tmp_path, umask, mode):
    out_dir = tmp_path / "run"
    out = zoo("run", "mlp_cora", "trainer.epochs=2", "--seeds", "1", "--quiet", "--out",
              str(out_dir), cwd=tmp_path, umask=umask)
    assert out.returncode == 0, out.stderr
    modes = {name: (out_dir / name).stat().st_mode & 0o777 for name in RUN_FILES}
    assert modes == dict.fromkeys(RUN_FILES, mode)


# -- zoo show ----------------------------------------------------------------------------
def test_show_prints_ranges():
    out = zoo("show", "mlp")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("  hidden: 64    # int >= 1") for line in lines), lines
    assert any(line.startswith("  dropout: 0.5    # float in [0, 1)") for line in lines), lines


def test_show_expands_a_nested_section():
    out = zoo("show", "gam")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  agreement:"))
    nested = [line.split(":")[0].strip() for line in lines[start + 1:]
              if line.startswith("    ")]
    assert {"encoder", "aggregation", "optimizer", "batch_size", "steps", "pairs"} <= set(
        nested)
    assert any(line.startswith("    batch_size: 128    # int >= 2") for line in lines), lines
