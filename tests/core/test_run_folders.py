"""Run folders: the default folder is made atomically (runs started in the same second, in
several processes, each get their own), and an ``--out`` the run cannot or must not write
(a folder of the user's own files, a path under a file, one in /proc or read-only) is one
line and exit code 2, with nothing touched."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from zoo_plugins.datasets.fetch import mirror_file

import zoo.api
import zoo.run
from zoo.cli import main
from zoo.errors import ConfigError, DataError
from zoo.run import RunWriter, check_new_run_dir, default_run_dir

needs_cora = pytest.mark.skipif(mirror_file("ind.cora.x", "planetoid") is None,
                                reason="needs the local Cora mirror")
STAMP = "20240101-000000"
# `zoo run` in a fresh process whose clock stands still: every run starts "in the same
# second".
FROZEN = ("import sys, time; time.strftime = lambda *a: " + repr(STAMP) + "; "
          "from zoo.cli import main; sys.exit(main(sys.argv[1:]))")
RUN = ["run", "gcn_cora", "trainer.epochs=2", "threads=1", "--quiet"]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("zoo: error: "), err
    return err[0]


# -- default folders ------------------------------------------------------------------
def test_default_folders_in_the_same_second_are_distinct_and_made_at_once(tmp_path,
                                                                          monkeypatch):
    monkeypatch.setattr(time, "strftime", lambda *a: STAMP)
    root = tmp_path / "runs"
    first, second = default_run_dir("gcn_cora", root), default_run_dir("gcn_cora", root)
    assert (first.name, second.name) == (f"gcn_cora-{STAMP}", f"gcn_cora-{STAMP}-2")
    assert first.is_dir() and second.is_dir()  # reserved, not merely named
    # Many at once, from threads: each mkdir is exclusive, so no two share a folder.
    made: list[Path] = []
    threads = [threading.Thread(target=lambda: made.append(default_run_dir("gcn_cora", root)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 8 and all(p.is_dir() for p in made)
    assert len(list(root.iterdir())) == 10
    # A process that only names the folder (a torchrun rank other than 0) makes none.
    assert not default_run_dir("other", root, create=False).exists()


@needs_cora
def test_two_runs_started_in_the_same_second_both_succeed(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", FROZEN, *RUN], cwd=tmp_path, env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=180) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    runs = sorted((tmp_path / "runs").iterdir())
    assert [r.name for r in runs] == [f"gcn_cora-{STAMP}", f"gcn_cora-{STAMP}-2"]
    for run in runs:
        assert json.loads((run / "summary.json").read_text())["seeds"] == [0]
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 2  # its own only
    said = sorted(out.strip().splitlines()[-1].rpartition(" ")[2] for out, _ in outputs)
    assert said == [str(Path("runs") / r.name) for r in runs]


def test_a_run_that_fails_early_leaves_no_default_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    def fail(self, **kwargs):
        raise DataError("the dataset is not there")

    monkeypatch.setattr(zoo.api.Experiment, "fit", fail)
    assert main(RUN) == 1
    assert one_error_line(capsys) == "zoo: error: the dataset is not there"
    assert list((tmp_path / "runs").iterdir()) == []


# -- --out the run must not or cannot write -----------------------------------------
def test_a_folder_of_the_users_files_is_refused_untouched(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "data").mkdir(parents=True)
    (out / "config.yaml").write_text("my: own config\n")
    (out / "data" / "notes.txt").write_text("keep me\n")
    before = snapshot(out)
    assert main([*RUN, "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert line == (f"zoo: error: output folder '{out}' is not empty and holds no zoo run "
                    "(it has config.yaml, data); choose a new or empty folder for --out")
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == [
        "config.yaml", "data"]


@needs_cora
def test_a_user_folder_is_refused_by_the_real_cli_but_its_own_log_is_not(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my: own config\n")
    refused = subprocess.run([sys.executable, "-m", "zoo", *RUN, "--out", str(mine)],
                             capture_output=True, text=True, env=env(), timeout=120)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"zoo: error: output folder '{mine}' is not empty and holds no zoo run (it has "
        "config.yaml); choose a new or empty folder for --out"]
    assert (mine / "config.yaml").read_text() == "my: own config\n"
    # `zoo run ... --out run > run/run.log`: the shell made the log first; the folder
    # holds nothing but this command's own output, so the run goes ahead.
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "run.log", "w") as log:
        done = subprocess.run([sys.executable, "-m", "zoo", *RUN, "--out", str(run)],
                              stdout=log, stderr=subprocess.STDOUT, env=env(), timeout=120)
    assert done.returncode == 0, (run / "run.log").read_text()
    assert (run / "summary.json").is_file() and "run saved to" in (run / "run.log").read_text()


@pytest.mark.parametrize("where, expected", [
    ("file", "output path '{out}' is a file; choose a folder for --out"),
    ("under_file", "output path '{out}' is under '{tmp}/file', which is not a folder; "
                   "choose a folder for --out"),
], ids=["file", "under_a_file"])
def test_an_out_that_is_or_is_under_a_file_is_refused_at_once(tmp_path, capsys, where,
                                                              expected):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" if where == "file" else tmp_path / "file" / "run" / "x"
    assert main([*RUN, "--out", str(out)]) == 2
    assert one_error_line(capsys) == "zoo: error: " + expected.format(out=out, tmp=tmp_path)
    assert (tmp_path / "file").read_text() == "x"


@needs_cora
def test_out_in_proc_is_one_line(tmp_path, capsys):
    assert main([*RUN, "--out", "/proc/zoo-run-test"]) == 2
    assert one_error_line(capsys).startswith(
        "zoo: error: cannot write the run folder '/proc/zoo-run-test' (")


@needs_cora
def test_a_read_only_folder_is_one_line_and_left_as_it_was(tmp_path, capsys, monkeypatch):
    # As root, permissions do not stop writes: the file system's refusal is simulated
    # where the run writes its first file.
    out = tmp_path / "ro"
    out.mkdir()

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(zoo.run, "open", read_only, raising=False)
    assert main([*RUN, "--out", str(out)]) == 2
    assert one_error_line(capsys) == (
        f"zoo: error: cannot write the run folder '{out}' (Read-only file system); choose "
        "a folder you can write for --out")
    assert out.is_dir() and list(out.iterdir()) == []
    # A folder the run would have had to make is removed again.
    with pytest.raises(ConfigError, match="Read-only file system"):
        RunWriter(tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="cannot write the run folder"):
            RunWriter(parent / "run")
    finally:
        parent.chmod(0o755)


def test_an_earlier_run_is_still_refused_with_the_way_out(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(ConfigError, match="already holds a run; choose another --out"):
        check_new_run_dir(tmp_path)
    check_new_run_dir(tmp_path / "absent")  # an absent folder is fine, and not made
    assert not (tmp_path / "absent").exists()
