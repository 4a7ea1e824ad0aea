"""Signals during ``zoo run``: SIGTERM stops a run as Ctrl-C does (the same message, exit
code 143, records flushed, the folder resumable, loggers told 'interrupted'), its handler
is there only while the run trains, torchrun's ranks stop with it, and the records reach
the file as they are logged, so that even SIGKILL loses none of them."""

from __future__ import annotations

import _thread
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from zoo_plugins.datasets.fetch import mirror_file

import zoo.tracking
from zoo.cli import EXIT_TERMINATED, main

pytestmark = pytest.mark.skipif(mirror_file("ind.cora.x", "planetoid") is None,
                                reason="needs the local Cora mirror")
# Long enough that a run is always still training when the signal comes.
LONG = ["gcn_cora", "trainer.epochs=100000", "threads=1", "--quiet"]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True) if path.is_file() else []


def start_and_wait(args: list[str], metrics: Path, at_least: int,
                   timeout: float = 120) -> subprocess.Popen:
    """``zoo ARGS`` started, once ``metrics`` holds ``at_least`` records."""
    proc = subprocess.Popen([sys.executable, "-m", "zoo", *args], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while len(lines(metrics)) < at_least:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run never logged {at_least} records: {proc.communicate()[1]}")
        time.sleep(0.05)
    return proc


def test_sigterm_stops_a_run_as_ctrl_c_does_and_it_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    # Stopped early in 400 epochs (a few ms each, checkpointed every 20), finished on
    # resume.
    args = ["run", *LONG, "trainer.epochs=400", "checkpoint.epochs=20", "--out", str(out)]
    proc = start_and_wait(args, out / "metrics.jsonl", 30)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_TERMINATED == 143
    assert err.strip().splitlines()[-1] == (f"zoo: interrupted; continue it with "
                                            f"`zoo run --resume {out}`")
    assert "Traceback" not in err
    # Every record written is whole; the checkpoint is there; no result.
    kept = lines(out / "metrics.jsonl")
    assert 30 <= len(kept) < 400 and all(line.endswith("\n") for line in kept)
    assert [json.loads(line)["epoch"] for line in kept] == list(range(len(kept)))
    assert (out / "checkpoints" / "run.json").is_file() and not (out / "summary.json").exists()
    # The stopped run goes on from its checkpoint and finishes.
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["seeds"] == [0]
    epochs = [json.loads(line)["epoch"] for line in lines(out / "metrics.jsonl")]
    assert epochs == list(range(400))


def test_sigterm_in_process_tells_the_loggers_and_restores_the_handler(tmp_path, capsys,
                                                                      monkeypatch):
    statuses: list[str] = []
    real_end = zoo.tracking.RecordStream.end

    def end(self, summary, status):
        statuses.append(status)
        return real_end(self, summary, status)

    monkeypatch.setattr(zoo.tracking.RecordStream, "end", end)
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGTERM)
    during: list[object] = []

    def send_sigterm_while_training() -> None:
        deadline = time.monotonic() + 60
        while len(lines(out / "metrics.jsonl")) < 5:
            if time.monotonic() > deadline:
                _thread.interrupt_main()  # stop the run: the test fails below
                return
            time.sleep(0.02)
        during.append(signal.getsignal(signal.SIGTERM))
        if during[0] is not before:  # never SIGTERM pytest itself
            os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=send_sigterm_while_training)
    sender.start()
    code = main(["run", *LONG, "--out", str(out)])
    sender.join()
    assert during and during[0] is not before  # installed while the run trained
    assert code == 143 and statuses == ["interrupted"]
    assert signal.getsignal(signal.SIGTERM) is before  # and restored after
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"zoo: interrupted; continue it with `zoo run --resume {out}`")
    # A run that finishes leaves the handler as it found it too.
    assert main(["run", "gcn_cora", "trainer.epochs=2", "threads=1", "--quiet",
                 "--out", str(tmp_path / "short")]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_records_reach_the_file_each_epoch_so_sigkill_loses_none(tmp_path):
    out = tmp_path / "run"
    metrics = out / "metrics.jsonl"
    # Ten records are ~2 KB: a block-buffered file would still be empty (8 KB buffer).
    proc = start_and_wait(["run", *LONG, "--out", str(out)], metrics, 10)
    assert metrics.stat().st_size < 8192
    seen = len(lines(metrics))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    kept = lines(metrics)
    assert len(kept) >= seen and all(line.endswith("\n") for line in kept)
    assert [json.loads(line)["epoch"] for line in kept] == list(range(len(kept)))


def test_sigterm_stops_every_rank_of_a_torchrun_run(tmp_path):
    out = tmp_path / "run"
    proc = start_and_wait(["run", "gcn_cora", "trainer.epochs=100000", "--nproc", "2",
                           "--quiet", "--out", str(out)], out / "metrics.jsonl", 5,
                          timeout=180)
    proc.send_signal(signal.SIGTERM)  # to `zoo run`, which passes it on to torchrun
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_TERMINATED, err
    assert "zoo: interrupted" in err  # the main rank said so
    # No rank goes on training after it: none is left, and the records stop growing.
    deadline = time.monotonic() + 30
    while processes_naming(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes_naming(out)
    count = len(lines(out / "metrics.jsonl"))
    time.sleep(0.5)
    assert len(lines(out / "metrics.jsonl")) == count
    assert all(json.loads(line) for line in lines(out / "metrics.jsonl"))


def processes_naming(path: Path) -> list[int]:
    """Processes whose command line names ``path`` (a run's ranks name its --out)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(path).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:  # it ended meanwhile
            continue
    return found
