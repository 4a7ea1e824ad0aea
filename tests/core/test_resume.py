"""Checkpoints and resume: a real `zoo run` killed with SIGKILL mid-training and resumed
reports what an uninterrupted run of the same seeds reports, record for record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from zoo.cli import main

ZOO = [sys.executable, "-m", "zoo"]
# One thread: `threads: auto` may change the thread count mid-run, and other thread
# counts round floats otherwise.
SUPERVISED = ["gcn_cora", "trainer.epochs=300", "checkpoint.epochs=20", "threads=1",
              "--seeds", "3", "--quiet"]
GAM = ["gam_cora", "trainer.max_iterations=3", "trainer.steps=60", "trainer.agreement.steps=60",
       "trainer.patience=null", "checkpoint.epochs=3", "--seeds", "2", "--quiet"]
TIMING = ("epoch_ms", "seconds")


def records(run: Path) -> list[dict]:
    """The run's records without their timings."""
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        out.append({k: v for k, v in record.items() if k not in TIMING})
    return out


def metrics(run: Path) -> dict[str, list[float]]:
    summary = json.loads((run / "summary.json").read_text())
    return {k: v["values"] for k, v in summary["metrics"].items()
            if not k.startswith("seconds_")}


def run_and_kill(args: list[str], out: Path, until: str, timeout: float = 240) -> None:
    """Start `zoo run`, SIGKILL it once its records contain ``until``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*ZOO, "run", *args, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while True:
            path = out / "metrics.jsonl"
            if path.is_file() and until in path.read_text():
                break
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it could be killed: "
                            f"{proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the run never reached the point to kill it at")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()


@pytest.mark.parametrize("args,until", [
    (SUPERVISED, '"seed": 1, "phase": "train", "epoch": 150,'),
    (GAM, '"seed": 1, "phase": "iter 2 classifier", "iteration": 2, "epoch": 7,'),
], ids=["supervised", "gam"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path: Path, args: list[str],
                                                          until: str) -> None:
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["run", *args, "--out", str(whole)]) == 0
    run_and_kill(args, killed, until)
    assert (killed / "checkpoints" / "run.json").is_file()
    # A second plain run into the folder is refused with the way out.
    result = subprocess.run([*ZOO, "run", *args, "--out", str(killed)], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "--resume" in result.stderr
    resumed = subprocess.run([*ZOO, "run", "--resume", str(killed), "--quiet"],
                             capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resumed.returncode == 0, resumed.stderr
    assert metrics(killed) == metrics(whole)
    assert records(killed) == records(whole)
    assert not (killed / "checkpoints").exists()  # removed once the run finished
    summary = json.loads((killed / "summary.json").read_text())
    assert len(summary["provenance"]["resumed"]) == 1
    for seed in summary["seeds"]:
        a = torch.load(whole / "weights" / f"seed-{seed}.pt", weights_only=True)
        b = torch.load(killed / "weights" / f"seed-{seed}.pt", weights_only=True)
        assert a["state_dict"].keys() == b["state_dict"].keys()
        assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_resume_refuses_what_it_cannot_continue(tmp_path: Path, capsys) -> None:
    finished = tmp_path / "finished"
    assert main(["run", "gcn_cora", "trainer.epochs=3", "--quiet", "--out", str(finished)]) == 0
    assert not (finished / "checkpoints").exists()
    assert main(["run", "--resume", str(finished)]) == 2
    assert "it finished" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["run", "gcn_cora", "--resume", str(finished)]) == 2
    assert "leave out a config" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", "--resume", str(empty)]) == 2
    assert "checkpoints/run.json" in capsys.readouterr().err


def test_weights_file_carries_config_and_version_and_loads_weights_only(tmp_path: Path) -> None:
    import zoo

    out = tmp_path / "run"
    assert main(["run", "gcn_cora", "trainer.epochs=5", "--quiet", "--out", str(out)]) == 0
    saved = torch.load(out / "weights" / "seed-0.pt", weights_only=True)
    assert saved["format"] == "zoo-weights" and saved["zoo_version"] == zoo.__version__
    assert saved["config"]["model"]["name"] == "gcn"
    assert set(saved["metrics"]) >= {"test_accuracy", "val_accuracy"}
    exp = zoo.load(out)
    for k, v in exp.model.state_dict().items():
        assert torch.equal(v.cpu(), saved["state_dict"][k])


def test_checkpoint_section_is_validated() -> None:
    import zoo

    with pytest.raises(zoo.ConfigError, match="checkpoint.epochs"):
        zoo.build("gcn_cora", checkpoint={"epochs": 0})
    with pytest.raises(zoo.ConfigError, match="checkpoint.every: unknown key"):
        zoo.build("gcn_cora", checkpoint={"every": 3})
    exp = zoo.build("gcn_cora", checkpoint={"epochs": 5, "seconds": None})
    assert exp.config["checkpoint"] == {"epochs": 5, "seconds": None}
