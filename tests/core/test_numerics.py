"""Diverging training: a NaN or infinite loss stops the run at the epoch the engine reads
it, with one line naming the phase, seed and epoch (exit 1); the records written so far
stay, and no summary of garbage metrics is ever written."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from zoo_plugins.datasets.fetch import mirror_file

import zoo.engine
from zoo.cli import main
from zoo.engine import Engine
from zoo.errors import DivergedError, ZooError

needs_cora = pytest.mark.skipif(mirror_file("ind.cora.x", "planetoid") is None,
                                reason="needs the local Cora mirror")
# YAML reads `1e30` as a string; `1.0e+30` is the float.
HUGE_LR = "1.0e+30"
GAM = ["gam_cora", "trainer.max_iterations=2", "trainer.steps=20", "trainer.agreement.steps=40",
       "threads=1", "--quiet"]


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_diverged_error_is_a_runtime_error_of_the_cli():
    assert issubclass(DivergedError, ZooError) and DivergedError.exit_code == 1


def test_engine_stops_at_the_first_epoch_whose_loss_is_not_finite(monkeypatch):
    reads = []
    real = zoo.engine.to_floats
    monkeypatch.setattr(zoo.engine, "to_floats", lambda m: reads.append(1) or real(m))
    logged: list[dict] = []
    evaluated = []
    losses = [1.0, 0.5, math.inf, 0.1]
    engine = Engine(log=logged.append, context={"seed": 7})
    model = torch.nn.Linear(2, 2)

    def evaluate():
        evaluated.append(1)
        return {"val_accuracy": torch.tensor(0.5)}

    with pytest.raises(DivergedError) as caught:
        engine.fit(model, train_step=lambda e: {"loss": torch.tensor(losses[e]),
                                                "reg_x": torch.tensor(0.0)},
                   evaluate=evaluate, epochs=4, phase="warm-up",
                   optimizer_path="trainer.optimizer")
    message = str(caught.value)
    assert message.startswith("training diverged at seed 7, epoch 2 of phase 'warm-up' "
                              "(loss is inf); lower trainer.optimizer.lr")
    # Epochs 0 and 1 recorded whole; the diverged one with its losses only (its
    # evaluation of a broken model is no result); nothing after it.
    assert [r["epoch"] for r in logged] == [0, 1, 2]
    assert "val_accuracy" in logged[1] and "val_accuracy" not in logged[2]
    assert logged[2]["loss"] == math.inf and logged[2]["seed"] == 7
    # One read of the device values an epoch, as without the check (no extra syncs).
    assert len(reads) == 3 and len(evaluated) == 3


def test_a_regularizer_term_that_is_nan_stops_an_epoch_that_is_not_evaluated():
    engine = Engine()
    with pytest.raises(DivergedError, match=r"at epoch 1 of phase 'train' \(reg_x is nan\); "
                                            r"lower its optimizer's learning rate"):
        engine.fit(torch.nn.Linear(1, 1), evaluate=lambda: {"val_accuracy": 1.0},
                   train_step=lambda e: {"loss": 1.0, "reg_x": math.nan if e else 0.0},
                   epochs=10, eval_every=5)


@needs_cora
def test_a_diverging_run_exits_1_with_one_line_and_keeps_its_records(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "zoo", "run", "gcn_cora",
                           f"trainer.optimizer.lr={HUGE_LR}", "--seeds", "2", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr
    assert re.fullmatch(r"zoo: error: training diverged at seed 0, epoch \d+ of phase 'train' "
                        r"\(loss is (nan|inf)\); lower trainer\.optimizer\.lr .*", line), line
    assert "test_accuracy" not in done.stdout  # no result printed
    # The records so far stay; no summary, no weights; nothing to resume (it would
    # diverge again), so the folder is not offered as an interrupted run.
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "metrics.jsonl"]
    kept = records(out)
    assert kept and not math.isfinite(kept[-1]["loss"]) and "val_accuracy" not in kept[-1]
    assert all(math.isfinite(r["loss"]) for r in kept[:-1])
    assert {r["seed"] for r in kept} == {0}
    assert main(["run", "--resume", str(out)]) == 2


@needs_cora
@pytest.mark.parametrize("override, phase, optimizer", [
    (f"trainer.optimizer.lr={HUGE_LR}", "iter 0 classifier", "trainer.optimizer.lr"),
    (f"trainer.agreement.optimizer.lr={HUGE_LR}", "iter 1 agreement", None),
], ids=["classifier", "agreement"])
def test_gam_stops_in_the_loop_that_diverged(tmp_path, capsys, override, phase, optimizer):
    out = tmp_path / "run"
    assert main(["run", *GAM, override, "--out", str(out)]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"zoo: error: training diverged at seed 0, epoch 0 of phase "
                           f"'{phase}' ("), line
    if optimizer:
        assert f"lower {optimizer} " in line
    assert not (out / "summary.json").exists() and not (out / "checkpoints").exists()
    last = records(out)[-1]
    assert last["phase"] == phase and not all(
        math.isfinite(v) for k, v in last.items() if k.endswith("loss"))
