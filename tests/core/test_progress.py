"""The progress display: a live line in a terminal, plain lines elsewhere."""

from __future__ import annotations

import io
import subprocess
import sys

import zoo
from zoo.progress import Progress, duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_at_phase_changes_and_every_interval(monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr("zoo.progress.time.monotonic", clock)
    out = io.StringIO()
    shown = Progress(enabled=True, seeds=2, stream=out, interval=10.0, live=False)
    shown.start_seed(0, 0)
    for epoch in range(1, 101):
        clock.now += 0.5  # 50 s in all
        shown.update("train", epoch, 100, {"val_accuracy": 0.5, "best_val_accuracy": 0.6})
    lines = out.getvalue().splitlines()
    # The first epoch (a new phase), then one line per 10 s.
    assert 5 <= len(lines) <= 7
    assert lines[0].startswith("seed 0 (1/2) · train · epoch 1/100 · val_accuracy 0.5000 "
                               "(best 0.6000)")
    assert "epoch 81/100" in lines[-1] and "run 40%, 40s elapsed, ETA 1m00s" in lines[-1]
    shown.update("baseline", 1, 10, {})
    assert out.getvalue().splitlines()[-1].split(" · ")[1] == "baseline"


def test_eta_counts_seeds_and_a_trainers_rounds(monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr("zoo.progress.time.monotonic", clock)
    shown = Progress(enabled=True, seeds=4, stream=io.StringIO(), live=False)

    class Engine:
        round = (1, 4)  # GAM: iteration 1 of 0..3

    shown.start_seed(2, 7, Engine())
    # Seeds 0 and 1 done, seed 2 one and a half rounds of four in: (2 + 1.5/4) / 4.
    assert shown.fraction(5, 10) == (2 + 1.5 / 4) / 4
    clock.now += 95.0
    status = shown.status("iter 1 classifier", 5, 10, {}, shown.fraction(5, 10), clock.now)
    assert status.startswith("seed 7 (3/4) · iter 1 classifier")
    assert "run 59%" in status and "ETA 1m05s" in status
    assert duration(3725) == "1h02m" and duration(5) == "5s"


def test_disabled_prints_nothing() -> None:
    out = io.StringIO()
    shown = Progress(enabled=False, stream=out, live=False)
    shown.start_seed(0, 0)
    shown.update("train", 1, 2, {"val_accuracy": 1.0})
    shown.line("text")
    assert out.getvalue() == ""


def test_live_display_in_a_terminal_is_one_redrawn_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    shown = Progress(enabled=True, seeds=1, stream=out)
    assert shown._live is not None
    shown.start_seed(0, 0)
    shown.update("train", 1, 2, {"val_accuracy": 0.5})
    shown.line("seed 0: test_accuracy 0.8")
    shown.close()
    assert "seed 0: test_accuracy 0.8" in out.getvalue()


def test_a_redirected_run_reports_its_phases(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "zoo", "run", "gcn_cora", "trainer.epochs=5",
                             "--seeds", "2", "--out", str(tmp_path / "run")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    err = result.stderr.splitlines()
    assert any(line.startswith("seed 0 (1/2) · train · epoch 1/5") for line in err)
    assert any(line.startswith("seed 1 (2/2) · train") for line in err)
    quiet = subprocess.run([sys.executable, "-m", "zoo", "run", "gcn_cora", "trainer.epochs=5",
                            "--quiet", "--out", str(tmp_path / "quiet")],
                           capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_fit_progress_from_python(capsys) -> None:
    zoo.build("gcn_cora", trainer={"epochs": 3}).fit(progress=True)
    assert "seed 0 (1/1) · train · epoch 1/3" in capsys.readouterr().err
