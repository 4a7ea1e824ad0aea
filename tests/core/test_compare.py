"""``zoo compare``: only the config keys that differ, every run's metrics, sweep folders
expanded to their points, and a clear error for a folder that is not a run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from zoo_plugins.datasets.fetch import mirror_file

import zoo.api
from zoo.cli import main
from zoo.compare import Run, config_differences, flatten, load_runs, metric_names, render

needs_cora = pytest.mark.skipif(mirror_file("ind.cora.x", "planetoid") is None,
                                reason="needs the local Cora mirror")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two real runs that differ in model.hidden and trainer.epochs."""
    root = tmp_path_factory.mktemp("compare")
    runs = []
    for name, overrides in (("small", ["model.hidden=8", "trainer.epochs=3"]),
                            ("wide", ["model.hidden=32", "trainer.epochs=4"])):
        zoo.api.build("gcn_cora", [*overrides, "threads=1"]).fit(seeds=2, out=root / name)
        runs.append(root / name)
    return runs


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@needs_cora
def test_compare_shows_only_differing_keys_and_both_runs_metrics(two_runs, capsys):
    assert main(["compare", *map(str, two_runs)]) == 0
    out = capsys.readouterr().out
    tables = out.strip().split("\n\n")
    config = tables[0].splitlines()
    assert config[0].split() == ["config", "small", "wide"]
    assert [line.split() for line in config[1:]] == [["model.hidden", "8", "32"],
                                                     ["trainer.epochs", "3", "4"]]
    metrics = tables[1].splitlines()
    assert metrics[0].split() == ["metric", "small", "wide"]
    assert metrics[1].startswith("test_accuracy") and metrics[2].startswith("val_accuracy")
    stats = [_summary(r)["metrics"]["test_accuracy"] for r in two_runs]
    assert metrics[1].split()[1:] == [f"{stats[0]['mean']:.4f}", "±", f"{stats[0]['std']:.4f}",
                                      f"{stats[1]['mean']:.4f}", "±", f"{stats[1]['std']:.4f}"]
    run_table = tables[2].splitlines()
    assert run_table[1].split() == ["seeds", "2", "(0,", "1)", "2", "(0,", "1)"]
    assert run_table[2].startswith("epoch ms (median)") and run_table[3].startswith("wall s")


@needs_cora
def test_compare_json_and_markdown(two_runs, capsys):
    assert main(["compare", *map(str, two_runs), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["runs"] == [str(r) for r in two_runs]
    assert data["config"] == {"model.hidden": [8, 32], "trainer.epochs": [3, 4]}
    assert list(data["metrics"])[:2] == ["test_accuracy", "val_accuracy"]
    assert data["metrics"]["val_accuracy"] == [
        {k: _summary(r)["metrics"]["val_accuracy"][k] for k in ("mean", "std")}
        for r in two_runs]
    assert data["seeds"] == [[0, 1], [0, 1]]
    assert set(data["timing"]) == {"epoch_ms_median", "wall_s"}
    assert main(["compare", *map(str, two_runs), "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["| config | small | wide |", "| --- | --- | --- |",
                         "| model.hidden | 8 | 32 |"]


@needs_cora
def test_a_sweep_folder_stands_for_its_finished_points(two_runs, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for point, run in (("000-model.hidden=8", two_runs[0]), ("001-model.hidden=32", two_runs[1]),
                       ("002-model.hidden=64", None)):
        (sweep / point).mkdir(parents=True)
        (sweep / point / "run.log").write_text("zoo: error: it broke\n")
        if run is not None:
            shutil.copy(run / "summary.json", sweep / point)
    runs = load_runs([sweep])
    assert [r.label for r in runs] == ["000-model.hidden=8", "001-model.hidden=32"]
    assert "skipping" in capsys.readouterr().err  # the failed point is named
    # Alongside another run: the same folder names become paths, to tell them apart.
    (tmp_path / "other" / "000-model.hidden=8").mkdir(parents=True)
    shutil.copy(two_runs[0] / "summary.json", tmp_path / "other" / "000-model.hidden=8")
    labels = [r.label for r in load_runs([sweep, tmp_path / "other" / "000-model.hidden=8"])]
    assert labels[0] == str(sweep / "000-model.hidden=8") and len(set(labels)) == 3


def test_a_folder_without_a_summary_is_refused(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    assert main(["compare", str(tmp_path / "notes"), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"zoo: error: '{tmp_path / 'notes'}' is not a run folder: it has no "
                   "summary.json; give folders `zoo run` wrote")
    assert main(["compare", str(tmp_path / "missing"), str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_one_run_is_not_a_comparison(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"metrics": {}, "seeds": [0]}))
    assert main(["compare", str(tmp_path / "run")]) == 2
    assert "give two or more run folders" in capsys.readouterr().err


def test_flatten_and_differences_mark_absent_keys():
    config = {"model": {"hidden": 16, "fanouts": [10, 10]}, "regularizers": [
        {"name": "distance", "multiplier": 0.1}], "graph": {}}
    assert flatten(config) == {"model.hidden": 16, "model.fanouts": [10, 10],
                               "regularizers.0.name": "distance",
                               "regularizers.0.multiplier": 0.1, "graph": {}}
    runs = [Run(Path("a"), {"config": config, "metrics": {}}, "a"),
            Run(Path("b"), {"config": {**config, "regularizers": [], "seeds": 1},
                            "metrics": {}}, "b")]
    assert set(config_differences(runs)) == {"regularizers.0.name", "regularizers.0.multiplier",
                                             "regularizers", "seeds"}
    lines = render(runs).splitlines()
    assert lines[1].split() == ["regularizers.0.name", "distance", "-"]
    assert [line.split() for line in lines if line.startswith("regularizers ")] == [
        ["regularizers", "-", "[]"]]


def test_metric_order_puts_the_tasks_metrics_first_and_timings_apart():
    summaries = [{"task": {"report": ["test_accuracy"], "monitor": "val_loss"},
                  "metrics": {"loss": {}, "seconds_x": {}, "val_loss": {}, "test_accuracy": {}}},
                 {"metrics": {"agreement_accuracy": {}, "loss": {}}}]
    assert metric_names(summaries) == ["test_accuracy", "val_loss", "loss",
                                       "agreement_accuracy"]
    assert metric_names(summaries, timing=True)[-2:] == ["seconds_x", "agreement_accuracy"]
