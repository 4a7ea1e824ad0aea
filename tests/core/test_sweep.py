"""``zoo sweep``: how overrides split into a grid, that every point is validated before
anything runs, a real two-point sweep through the CLI, and failed points."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import pytest
from zoo_plugins.datasets.fetch import mirror_file

from zoo.cli import main
from zoo.errors import UsageError
from zoo.sweep import (Point, Row, grid, plan, results_csv, results_markdown, run_commands,
                       split_values)

needs_cora = pytest.mark.skipif(mirror_file("ind.cora.x", "planetoid") is None,
                                reason="needs the local Cora mirror")


# -- the grid ----------------------------------------------------------------------

def test_top_level_commas_split_and_the_grid_is_the_product_in_order():
    assert grid(["model.hidden=16,64", "trainer.optimizer.lr=0.01,0.005", "seeds=2"]) == [
        ["model.hidden=16", "trainer.optimizer.lr=0.01", "seeds=2"],
        ["model.hidden=16", "trainer.optimizer.lr=0.005", "seeds=2"],
        ["model.hidden=64", "trainer.optimizer.lr=0.01", "seeds=2"],
        ["model.hidden=64", "trainer.optimizer.lr=0.005", "seeds=2"],
    ]


def test_commas_inside_brackets_braces_and_quotes_do_not_split():
    fixed = ["trainer.batches.fanouts=[10,10]", "regularizers.0.multiplier=[0.1,0.2]",
             "trainer.optimizer={name: adam, lr: 0.01}", 'description="a, b"',
             "description='c,d'"]
    assert grid(fixed) == [fixed]
    assert split_values("[1,2],{a: 1, b: 2},'x,y',\"u\\\",v\"") == [
        "[1,2]", "{a: 1, b: 2}", "'x,y'", '"u\\",v"']


def test_a_single_value_and_a_key_without_equals_are_fixed():
    assert grid(["model.hidden=16"]) == [["model.hidden=16"]]
    assert grid(["~regularizers.0", "model.hidden", "a=1,2"]) == [
        ["~regularizers.0", "model.hidden", "a=1"], ["~regularizers.0", "model.hidden", "a=2"]]
    assert grid([]) == [[]]


def test_plan_names_points_by_their_swept_values_safely():
    keys, points = plan(["trainer.batches.fanouts=[5,5],[10,10]", "trainer.epochs=3",
                         "model.hidden= 8 ,16"])
    assert keys == ["trainer.batches.fanouts", "model.hidden"]
    assert [p.overrides for p in points][1] == [
        "trainer.batches.fanouts=[5,5]", "trainer.epochs=3", "model.hidden=16"]
    assert points[0].values() == {"trainer.batches.fanouts": [5, 5], "model.hidden": 8}
    assert points[3].label == "trainer.batches.fanouts=[10,10] model.hidden=16"
    assert points[3].folder_name() == "003-trainer.batches.fanouts=_10,10_,model.hidden=16"
    assert "/" not in Point(0, [], {"dataset.path": "../a b/c"}).folder_name()


def test_a_key_swept_twice_or_an_empty_value_is_a_usage_error():
    with pytest.raises(UsageError, match="swept twice"):
        plan(["model.hidden=8,16", "model.hidden=32,64"])
    with pytest.raises(UsageError, match="empty value"):
        plan(["model.hidden=8,,16"])


# -- validation before anything runs -----------------------------------------------

def test_an_invalid_point_stops_the_sweep_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "gcn_cora", "model.hidden=8,-3", "trainer.epochs=2", "--out",
                 str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "sweep point 2 of 2 (model.hidden=-3) is not valid" in err
    assert "model.hidden" in err and "Traceback" not in err
    assert not out.exists()


def test_a_sweep_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "old.txt").write_text("x")
    assert main(["sweep", "gcn_cora", "model.hidden=8,16", "--out", str(tmp_path)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err


# -- a real sweep --------------------------------------------------------------------

@needs_cora
def test_a_small_sweep_writes_a_run_per_point_and_the_tables(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "gcn_cora", "model.hidden=8,16", "trainer.epochs=5", "--seeds", "2",
                 "--jobs", "2", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    points = sorted(p for p in out.iterdir() if p.is_dir())
    assert [p.name for p in points] == ["000-model.hidden=8", "001-model.hidden=16"]
    summaries = [json.loads((p / "summary.json").read_text()) for p in points]
    assert [s["config"]["model"]["hidden"] for s in summaries] == [8, 16]
    assert [s["seeds"] for s in summaries] == [[0, 1], [0, 1]]
    assert all(s["config"]["threads"] == 1 and s["config"]["trainer"]["epochs"] == 5
               for s in summaries)
    assert all((p / "run.log").is_file() for p in points)
    # A progress line per point, on stderr.
    assert sum(line.startswith("[") and "test_accuracy" in line
               for line in captured.err.splitlines()) == 2

    rows = list(csv.DictReader((out / "results.csv").open()))
    header = list(rows[0])
    assert header[:5] == ["model.hidden", "test_accuracy_mean", "test_accuracy_std",
                          "val_accuracy_mean", "val_accuracy_std"]
    assert header[-2:] == ["wall_s", "status"]
    assert not any(h.startswith("seconds_") for h in header)
    assert [r["model.hidden"] for r in rows] == ["8", "16"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    for row, summary in zip(rows, summaries):
        for metric in ("test_accuracy", "val_accuracy", "train_accuracy"):
            assert float(row[f"{metric}_mean"]) == summary["metrics"][metric]["mean"]
            assert float(row[f"{metric}_std"]) == summary["metrics"][metric]["std"]
        assert float(row["wall_s"]) > 0

    table = (out / "results.md").read_text().splitlines()
    assert table[0].startswith("| model.hidden | test_accuracy | val_accuracy |")
    assert table[0].endswith("| seconds |")
    assert len(table) == 4
    mean, std = (summaries[1]["metrics"]["test_accuracy"][k] for k in ("mean", "std"))
    assert table[3].startswith(f"| 16 | {mean:.4f} ± {std:.4f} |")
    assert "\n".join(table) in captured.out  # the table is printed too


@needs_cora
def test_failed_points_are_tabled_with_their_log_and_exit_code_1(tmp_path, capsys,
                                                                   monkeypatch):
    # An empty data mirror and cache: every point validates, then fails to load Cora.
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(tmp_path / "empty-mirror"))
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "empty-cache"))
    (tmp_path / "empty-mirror").mkdir()
    out = tmp_path / "sweep"
    code = main(["sweep", "gcn_cora", "model.hidden=8,16", "--out", str(out), "--quiet",
                 "--jobs", "2"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == ""  # --quiet: no progress lines
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert list(rows[0]) == ["model.hidden", "wall_s", "status"]
    table = (out / "results.md").read_text()
    assert "| 8 | " in table and "| failed: zoo: error: cannot read ind.cora.x" in table


def _row(index: int, hidden: int, status: str, summary: dict | None = None,
         error: str = "") -> Row:
    point = Point(index, [f"model.hidden={hidden}"], {"model.hidden": str(hidden)})
    return Row(point, Path(point.folder_name()), status, 3.25, summary, error,
               point.values())


def test_the_table_shows_a_failed_point_beside_finished_ones():
    summary = {"task": {"report": ["test_accuracy"], "monitor": "val_accuracy"},
               "metrics": {"seconds_classifier": {"mean": 1.0, "std": 0.0},
                           "loss": {"mean": 0.5, "std": 0.1},
                           "val_accuracy": {"mean": 0.8, "std": 0.01},
                           "test_accuracy": {"mean": 0.81234, "std": 0.004}}}
    rows = [_row(0, 16, "ok", summary),
            _row(1, 64, "failed", error="RuntimeError: out of memory | try less"),
            _row(2, 128, "interrupted")]
    table = results_markdown(rows, ["model.hidden"]).splitlines()
    assert table[0] == ("| model.hidden | test_accuracy | val_accuracy | loss | seconds | "
                        "status |")
    assert table[2] == "| 16 | 0.8123 ± 0.0040 | 0.8000 ± 0.0100 | 0.5000 ± 0.1000 | 3.2 | ok |"
    assert table[3] == ("| 64 | - | - | - | 3.2 | failed: RuntimeError: out of memory \\| "
                        "try less |")
    assert table[4].endswith("| interrupted |")
    lines = results_csv(rows, ["model.hidden"]).splitlines()
    assert lines[0] == ("model.hidden,test_accuracy_mean,test_accuracy_std,val_accuracy_mean,"
                        "val_accuracy_std,loss_mean,loss_std,wall_s,status")
    assert lines[1] == "16,0.81234,0.004,0.8,0.01,0.5,0.1,3.25,ok"
    assert lines[2] == "64,,,,,,,3.25,failed"


# -- running the points ----------------------------------------------------------------

def test_commands_run_with_their_output_logged_and_exit_codes_reported(tmp_path):
    commands = [([sys.executable, "-c", "print('hello')"], tmp_path / "a.log"),
                ([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
                 tmp_path / "b.log"),
                ([sys.executable, "-c", "import sys; sys.stderr.write('err\\n')"],
                 tmp_path / "c.log")]
    done: dict[int, int] = {}
    run_commands(commands, 2, lambda i, code, s: done.update({i: code}))
    assert done == {0: 0, 1: 3, 2: 0}
    assert [(tmp_path / f"{n}.log").read_text() for n in "abc"] == ["hello\n", "boom\n",
                                                                     "err\n"]


def test_an_interrupt_terminates_the_commands_still_running(tmp_path):
    def interrupt(i: int, code: int, seconds: float) -> None:
        raise KeyboardInterrupt

    commands = [([sys.executable, "-c", "pass"], tmp_path / "a.log"),
                ([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "b.log")]
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_commands(commands, 2, interrupt)
    assert time.perf_counter() - start < 10  # the sleeper was ended, not waited for
