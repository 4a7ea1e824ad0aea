"""A real run with every built-in logger: each one's output holds the run's records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zoo.cli import main


def test_zoo_run_feeds_tensorboard_mlflow_and_jsonl(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main(["run", "gcn_cora", "trainer.epochs=6", "--seeds", "2", "--quiet",
                 "loggers=[tensorboard, mlflow, {name: jsonl, path: copy.jsonl}]",
                 "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 12
    # jsonl: the same records, strict JSON.
    copy = [json.loads(line) for line in (out / "copy.jsonl").read_text().splitlines()]
    assert [(r["seed"], r["epoch"], r["val_accuracy"]) for r in copy] == [
        (r["seed"], r["epoch"], r["val_accuracy"]) for r in records]
    # TensorBoard: one curve per seed, phase and metric, stepped by epoch.
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    curve = [(e.step, e.value) for e in events.Scalars("seed1/train/val_accuracy")]
    assert curve == [(r["epoch"], pytest.approx(r["val_accuracy"])) for r in records
                     if r["seed"] == 1]
    # MLflow: the run's metric history, its config as params, finished.
    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    runs = [run for exp in client.search_experiments() for run in
            client.search_runs([exp.experiment_id])]
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    keys = [k for k in runs[0].data.metrics if k.endswith("val_accuracy")
            and k.startswith("seed0")]
    assert keys
    history = client.get_metric_history(runs[0].info.run_id, keys[0])
    assert sorted((m.step, round(m.value, 5)) for m in history) == [
        (r["epoch"], round(r["val_accuracy"], 5)) for r in records if r["seed"] == 0]
    assert runs[0].data.params.get("model.name") == "gcn"


def test_a_logger_that_fails_does_not_stop_the_run(tmp_path: Path, capsys) -> None:
    # The jsonl logger into a path under a file (the run's config.yaml): it fails at
    # start, the run goes on.
    out = tmp_path / "run"
    assert main(["run", "gcn_cora", "trainer.epochs=3", "--quiet",
                 "loggers=[{name: jsonl, path: config.yaml/records.jsonl}]",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "zoo: warning: logger 'jsonl' failed" in err
    assert (out / "summary.json").is_file()
