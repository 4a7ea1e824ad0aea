"""DistDGL on one host: two partitions, a server each, two trainers (real processes,
DGL's RPC and key-value store, torch.distributed gloo). About 20 s on two cores."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

import zoo
from zoo_plugins.distributed.launch import LaunchError, launch


def processes_mentioning(text: str) -> list[int]:
    """Ids of the live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline and int(entry.name) != os.getpid():
                found.append(int(entry.name))
    return found


def shared_memory_with(tag: str) -> list[str]:
    shm = Path("/dev/shm")
    return [p.name for p in shm.iterdir() if tag in p.name] if shm.is_dir() else []


def test_two_trainers_on_two_partitions(cora_parts: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    start = time.monotonic()
    metrics = launch(cora_parts, num_trainers=2, out=out, epochs=60, timeout=150)
    elapsed = time.monotonic() - start
    print(f"DistDGL run: {elapsed:.1f} s, test accuracy {metrics['test_accuracy']:.3f}")

    trainers = metrics["trainers"]
    assert [t["rank"] for t in trainers] == [0, 1]
    assert sorted(t["machine"] for t in trainers) == [0, 1]  # one trainer per partition
    assert len({t["pid"] for t in trainers}) == 2
    assert all(t["steps"] == 60 * 3 for t in trainers)  # 70 training nodes each, batches of 32
    assert sum(t["train_nodes"] for t in trainers) == 140
    assert sum(t["val_nodes"] for t in trainers) == 500
    assert sum(t["test_nodes"] for t in trainers) == 1000
    assert metrics["world_size"] == 2 and metrics["num_parts"] == 2
    # Random guessing gets 0.14 and the largest class 0.32; 60 epochs reach about 0.8.
    assert metrics["test_accuracy"] > 0.6

    # Only rank 0 wrote, and what it wrote is what launch returned.
    assert metrics["written_by_rank"] == 0
    assert {p.name for p in out.iterdir()} == {"metrics.json", "model.pt", "launch"}
    assert json.loads((out / "metrics.json").read_text()) == metrics
    logs = out / "launch" / "logs"
    assert {p.name for p in logs.iterdir()} == {"server-0.log", "server-1.log",
                                                "trainer-0.log", "trainer-1.log"}
    assert "test_accuracy" in (logs / "trainer-0.log").read_text()
    assert "test_accuracy" not in (logs / "trainer-1.log").read_text()

    # Nothing is left running or in shared memory.
    tag = json.loads((out / "launch" / "machine-0.json").read_text())["graph_name"]
    tag = tag.rpartition("_")[2][:-2]  # sage_cora_sampled_<tag>m0
    assert processes_mentioning(str(out)) == []
    assert shared_memory_with(tag) == []


BREAK_RANK_1 = """#!/bin/sh
# Rank 1 runs the real trainer with its evaluation broken: it fails after its first
# epoch, while rank 0 waits for it in an all-reduce and the servers serve them both.
if [ "$RANK" = 1 ]; then
    shift 2  # -m zoo_plugins.distributed.train
    exec {python} -c '
import sys
import zoo_plugins.distributed.train as trainer
def broken(*args, **kwargs):
    raise RuntimeError("rank 1 broke mid-run")
trainer.evaluate = broken
sys.exit(trainer.main(sys.argv[1:]))' "$@"
fi
exec {python} "$@"
"""


def test_a_trainer_failing_mid_run_stops_every_process(cora_parts: Path,
                                                       tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text(BREAK_RANK_1.format(python=sys.executable))
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "run"
    start = time.monotonic()
    with pytest.raises(LaunchError, match=r"trainer 1 exited with code 1(.|\n)*rank 1 broke"):
        launch(cora_parts, num_trainers=2, out=out, epochs=3, timeout=90, python=str(python))
    assert time.monotonic() - start < 60
    rank_0_log = (out / "launch" / "logs" / "trainer-0.log").read_text()
    assert "steps per epoch" in rank_0_log and "epoch 1" not in rank_0_log  # it was waiting
    assert processes_mentioning(str(out)) == []
    tag = json.loads((out / "launch" / "machine-0.json").read_text())["graph_name"]
    assert shared_memory_with(tag.rpartition("_")[2][:-2]) == []


def test_settings_that_cannot_run_are_refused_before_anything_starts(
        cora_parts: Path, tmp_path: Path) -> None:
    with pytest.raises(zoo.ConfigError, match="multiple of the 2 partition"):
        launch(cora_parts, num_trainers=3, out=tmp_path / "a")
    with pytest.raises(zoo.ConfigError, match="one fanout per layer"):
        launch(cora_parts, num_trainers=2, fanouts=[5], out=tmp_path / "b")
    with pytest.raises(zoo.ConfigError, match="servers per partition"):
        launch(cora_parts, num_trainers=2, num_servers=2, out=tmp_path / "c")
    with pytest.raises(zoo.ConfigError, match="does not exist"):
        launch(tmp_path / "missing.json", num_trainers=2)
    assert list(tmp_path.iterdir()) == []
