"""The loggers (kind ``logger``) and the record stream that feeds them.

Each logger is built through the registry, fed a start/log.../end stream by hand (no
training), and what it wrote is read back with the tool's own reader: TensorBoard's
``EventAccumulator``, an ``MlflowClient``, strict ``json.loads``. Also pinned: a logger
that raises is switched off with one warning while the others go on, and the
``loggers:`` section validates (the bare-name form, suggestions for a misspelled name).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

import zoo
from zoo.contracts import KINDS, RunInfo
from zoo.errors import ConfigError
from zoo.registry import PluginRegistrar, Registry
from zoo.tracking import RecordStream, build_loggers

NAN = float("nan")
CONFIG = {
    "dataset": {"name": "planetoid", "subset": "cora"},
    "model": {"name": "gcn", "hidden": 16, "dropout": 0.5, "note": "x" * 7000},
    "regularizers": [{"name": "distance", "multiplier": 0.1}],
    "trainer": {"name": "supervised", "epochs": 200, "fanouts": [10, 10]},
    "loggers": [],
    "seeds": 2,
}
# Records as metrics.jsonl holds them: epochs, a GAM classifier phase (an epoch and an
# iteration), a gam record (an iteration alone), records with neither, NaN and inf.
RECORDS = [
    {"seed": 0, "phase": "train", "epoch": 0, "loss": 1.9, "val_accuracy": 0.25},
    {"seed": 0, "phase": "train", "epoch": 1, "loss": 1.5, "val_accuracy": NAN},
    {"seed": 1, "phase": "train", "epoch": 0, "loss": 1.75},
    {"seed": 0, "phase": "iter 1 classifier", "iteration": 1, "epoch": 3, "loss": 0.75},
    {"seed": 0, "phase": "gam", "iteration": 1, "self_labeled": 100, "seconds": 0.5},
    {"seed": 0, "phase": "eval", "test_accuracy": 0.8, "diverged": float("inf")},
    {"seed": 0, "phase": "eval", "test_accuracy": 0.8125},
]
# What those records become: (seed, phase, metric) -> [(step, value)].
CURVES = {
    ("seed0", "train", "loss"): [(0, 1.9), (1, 1.5)],
    ("seed0", "train", "val_accuracy"): [(0, 0.25), (1, NAN)],
    ("seed1", "train", "loss"): [(0, 1.75)],
    ("seed0", "iter_1_classifier", "loss"): [(3, 0.75)],
    ("seed0", "gam", "self_labeled"): [(1, 100.0)],
    ("seed0", "gam", "seconds"): [(1, 0.5)],
    ("seed0", "eval", "test_accuracy"): [(0, 0.8), (1, 0.8125)],
    ("seed0", "eval", "diverged"): [(0, math.inf)],
}
SUMMARY = {"seeds": [0, 1], "metrics": {
    "test_accuracy": {"mean": 0.8125, "std": 0.0125, "values": [0.8, 0.825]},
    "best_epoch": {"mean": 144.5, "std": 20.5, "values": [124.0, 165.0]}},
    "timing": {"epoch_ms_median": 2.0, "wall_s": 2.5}}


def same(pairs, expected) -> bool:
    """Whether (step, value) pairs equal the expected ones (float32-close, NaN = NaN)."""
    return len(pairs) == len(expected) and all(
        s == es and (math.isnan(v) and math.isnan(ev) or v == pytest.approx(ev, rel=1e-6))
        for (s, v), (es, ev) in zip(pairs, expected))


@pytest.fixture(scope="module")
def registry() -> Registry:
    return zoo.default_registry()


def run_stream(registry, sections, run_dir: Path, *, status="finished", resumed=False,
               records=RECORDS, summary=SUMMARY, name="gcn_cora") -> list:
    """Build the loggers of ``sections`` and feed them one run's stream."""
    loggers = build_loggers(sections, registry)
    stream = RecordStream(loggers)
    stream.start(RunInfo(run_dir, name, CONFIG, resumed))
    for record in records:
        stream.log(record)
    stream.end(summary, status)
    assert stream.dropped == []
    return loggers


# -- jsonl -----------------------------------------------------------------------------
def strict_lines(path: Path) -> list[dict]:
    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def test_jsonl_writes_every_record_as_strict_json_with_nan_as_null(registry, tmp_path):
    run_stream(registry, ["jsonl"], tmp_path)
    lines = strict_lines(tmp_path / "records.jsonl")
    assert len(lines) == len(RECORDS)
    assert lines[0] == RECORDS[0] and lines[6] == RECORDS[6]
    assert lines[1]["val_accuracy"] is None and lines[1]["loss"] == 1.5
    assert lines[5]["diverged"] is None


def test_jsonl_appends_to_a_path_of_your_choosing_and_flushes_each_record(registry, tmp_path):
    shared = tmp_path / "all" / "runs.jsonl"
    logger, = build_loggers([{"name": "jsonl", "path": str(shared)}], registry)
    logger.start(RunInfo(tmp_path / "run", "gcn_cora", CONFIG, False))
    logger.log(RECORDS[0])
    assert strict_lines(shared) == [RECORDS[0]]  # on disk before the run ends
    logger.end(None, "interrupted")
    run_stream(registry, [{"name": "jsonl", "path": str(shared)}], tmp_path / "run",
               resumed=True, records=RECORDS[1:3])
    assert strict_lines(shared)[1:] == [{**RECORDS[1], "val_accuracy": None}, RECORDS[2]]
    assert not (tmp_path / "run" / "records.jsonl").exists()


# -- tensorboard -------------------------------------------------------------------------
def read_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return events


def text_of(events, tag: str) -> str:
    (event,) = events.Tensors(f"{tag}/text_summary")
    return event.tensor_proto.string_val[0].decode()


def test_tensorboard_scalars_steps_config_and_summary_read_back(registry, tmp_path):
    run_stream(registry, ["tensorboard"], tmp_path)
    events = read_events(tmp_path / "tensorboard")
    curves = {"/".join(key): steps for key, steps in CURVES.items()}
    finals = {"final/test_accuracy": [(0, 0.8125)], "final/best_epoch": [(0, 144.5)]}
    assert set(events.Tags()["scalars"]) == set(curves) | set(finals)
    for tag, expected in {**curves, **finals}.items():
        got = [(e.step, e.value) for e in events.Scalars(tag)]
        assert same(got, expected), (tag, got, expected)
    config = text_of(events, "config")
    assert "hidden: 16" in config and "multiplier: 0.1" in config
    assert text_of(events, "status") == "finished"
    # The HPARAMS tab's entry: the config's values against the summary's means.
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    content = events.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["model.hidden"].number_value == 16
    assert hparams["trainer.fanouts"].string_value == "[10, 10]"
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == set(finals)


def test_tensorboard_honours_its_folder_and_keeps_a_count_without_epochs(registry, tmp_path):
    records = [{"seed": 2, "phase": "eval", "acc": a} for a in (0.5, 0.625, 0.75)]
    run_stream(registry, [{"name": "tensorboard", "dir": "tb/here"}], tmp_path,
               records=records, summary=None, status="failed")
    events = read_events(tmp_path / "tb" / "here")
    assert same([(e.step, e.value) for e in events.Scalars("seed2/eval/acc")],
                [(0, 0.5), (1, 0.625), (2, 0.75)])
    assert not [t for t in events.Tags()["scalars"] if t.startswith("final/")]
    assert text_of(events, "status") == "failed"


def test_tensorboard_without_its_package_is_a_config_error_at_build_time(registry,
                                                                        monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError) as err:
        build_loggers(["tensorboard"], registry)
    assert str(err.value) == ("logger 'tensorboard' needs the tensorboard package; "
                              "pip install 'zoo[tracking]'")


# -- mlflow ------------------------------------------------------------------------------
@pytest.fixture
def mlflow_env(monkeypatch):
    """No MLflow settings from outside; what the logger sets is undone afterwards."""
    for var in ("MLFLOW_ALLOW_FILE_STORE", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.setenv(var, "")  # so that teardown restores the variable's absence too
        monkeypatch.delenv(var)
    from mlflow.tracking import MlflowClient

    return MlflowClient


def mlflow_runs(client_class, run_dir: Path, experiment: str = "gcn_cora"):
    client = client_class((run_dir / "mlruns").resolve().as_uri())
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    return client, client.search_runs([found.experiment_id])


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_mlflow_params_metrics_summary_and_status_read_back(registry, tmp_path, mlflow_env):
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    run_dir = tmp_path / "gcn_cora-1"
    run_stream(registry, ["mlflow"], run_dir)
    client, (run,) = mlflow_runs(mlflow_env, run_dir)
    assert run.info.status == "FINISHED" and run.info.run_name == "gcn_cora-1"
    params = run.data.params
    assert params["model.hidden"] == "16" and params["dataset.subset"] == "cora"
    assert params["regularizers.0.multiplier"] == "0.1" and params["loggers"] == "[]"
    assert params["trainer.fanouts"] == "[10, 10]"
    assert params["model.note"] == "x" * MAX_PARAM_VAL_LENGTH  # cut to MLflow's limit
    for (seed, phase, metric), expected in CURVES.items():
        got = history(client, run.info.run_id, f"{seed}.{phase}.{metric}")
        assert same(got, expected), (seed, phase, metric, got)
    assert history(client, run.info.run_id, "final.test_accuracy") == [(0, 0.8125)]
    assert history(client, run.info.run_id, "final.best_epoch") == [(0, 144.5)]
    assert "seed0.train.epoch" not in run.data.metrics  # positions are steps, not metrics


@pytest.mark.parametrize(("status", "expected"), [("failed", "FAILED"),
                                                  ("interrupted", "KILLED")])
def test_mlflow_run_ends_with_the_zoo_runs_status(registry, tmp_path, mlflow_env, status,
                                                  expected):
    run_stream(registry, [{"name": "mlflow", "experiment": "mine", "run_name": "try"}],
               tmp_path, records=RECORDS[:1], summary=None, status=status)
    client, (run,) = mlflow_runs(mlflow_env, tmp_path, "mine")
    assert run.info.status == expected and run.info.run_name == "try"
    assert not [k for k in run.data.metrics if k.startswith("final.")]


def test_mlflow_two_runs_in_one_process_keep_apart_and_a_resumed_run_continues(
        registry, tmp_path, mlflow_env):
    uri = (tmp_path / "store").resolve().as_uri()
    section = {"name": "mlflow", "tracking_uri": uri, "experiment": "shared"}
    first, second = (RecordStream(build_loggers([section], registry)) for _ in range(2))
    first.start(RunInfo(tmp_path / "a", "gcn_cora", CONFIG, False))
    second.start(RunInfo(tmp_path / "b", "gcn_cora", CONFIG, False))
    first.log({"seed": 0, "phase": "train", "epoch": 0, "loss": 1.0})
    second.log({"seed": 0, "phase": "train", "epoch": 0, "loss": 2.0})
    first.end(None, "interrupted")
    second.end(SUMMARY, "finished")
    # The first run resumes: the same MLflow run goes on from where it stopped.
    run_stream(registry, [section], tmp_path / "a", resumed=True,
               records=[{"seed": 0, "phase": "train", "epoch": 1, "loss": 0.5}])
    client = mlflow_env(uri)
    runs = {r.info.run_name: r for r in client.search_runs(
        [client.get_experiment_by_name("shared").experiment_id])}
    assert sorted(runs) == ["a", "b"]
    assert history(client, runs["a"].info.run_id, "seed0.train.loss") == [(0, 1.0), (1, 0.5)]
    assert history(client, runs["b"].info.run_id, "seed0.train.loss") == [(0, 2.0)]
    assert runs["a"].info.status == runs["b"].info.status == "FINISHED"
    assert "final.test_accuracy" in runs["a"].data.metrics  # from the resumed run's end


def test_mlflow_without_its_package_is_a_config_error_at_build_time(registry, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(ConfigError, match=r"^logger 'mlflow' needs the mlflow package; "
                                          r"pip install 'zoo\[tracking\]'$"):
        build_loggers(["mlflow"], registry)


# -- the record stream -----------------------------------------------------------------
class Recording:
    """A logger that remembers what it was told."""

    def __init__(self, *, fail_in: str = "") -> None:
        self.fail_in = fail_in
        self.calls: list[tuple] = []

    def start(self, run):
        self._call("start", run.name)

    def log(self, record):
        self._call("log", dict(record))
        record["loss"] = "tampered"  # must not reach the other loggers

    def end(self, summary, status):
        self._call("end", status)

    def _call(self, method, arg):
        self.calls.append((method, arg))
        if method == self.fail_in:
            raise RuntimeError("disk full\nsecond line")


class NoEnd:
    """A logger without end()."""

    def start(self, run): ...

    def log(self, record): ...


@pytest.fixture
def test_registry() -> Registry:
    registrar = PluginRegistrar("test", "zoo-test", "1.0")
    registrar.add("logger", "recording", Recording)
    registrar.add("logger", "flaky", Recording)
    registrar.add("logger", "no_end", NoEnd)
    assert registrar.refused == ["logger 'no_end': it has no end() method"]
    reg = Registry()
    registrar.commit(reg)
    return reg


@pytest.mark.parametrize("method", ["start", "log", "end"])
def test_a_failing_logger_is_switched_off_with_one_warning_and_the_run_goes_on(
        test_registry, tmp_path, capsys, method):
    flaky, steady = build_loggers([{"name": "flaky", "fail_in": method}, "recording"],
                                  test_registry)
    stream = RecordStream([flaky, steady])
    stream.start(RunInfo(tmp_path, "cfg", {}, False))
    for record in RECORDS[:3]:
        stream.log(record)
    stream.end(SUMMARY, "finished")
    stream.end(SUMMARY, "failed")  # a second end (a finally after the first) does nothing

    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [f"zoo: warning: logger 'flaky' failed in {method}(): RuntimeError: "
                        "disk full; it is switched off for this run"]
    assert stream.dropped == ["flaky"]
    assert steady.calls == [("start", "cfg"), *(("log", r) for r in RECORDS[:3]),
                            ("end", "finished")]
    # Called up to the failure, never after it.
    methods = [m for m, _ in flaky.calls]
    assert methods == {"start": ["start"], "log": ["start", "log"],
                       "end": ["start", "log", "log", "log", "end"]}[method]


def test_the_stream_checks_the_status(tmp_path):
    with pytest.raises(ValueError, match="finished, failed, interrupted"):
        RecordStream([]).end(None, "done")


def test_the_logger_kind_refuses_an_object_without_the_methods():
    assert KINDS["logger"].problem(Recording()) is None
    assert KINDS["logger"].problem(NoEnd()) == (
        "a logger must return an object with start(run), log(record) and end(summary, status)")


# -- the config's loggers: section -------------------------------------------------------
def test_loggers_default_to_none_and_take_bare_names(registry):
    assert zoo.build("gcn_cora", registry=registry).config["loggers"] == []
    exp = zoo.build("gcn_cora", ["loggers=[tensorboard, {name: jsonl, path: r.jsonl}]"],
                    registry=registry)
    assert exp.config["loggers"] == [{"name": "tensorboard", "dir": "tensorboard",
                                      "flush_secs": 30},
                                     {"name": "jsonl", "path": "r.jsonl"}]
    single = zoo.build("gcn_cora", ["loggers=mlflow"], registry=registry)
    assert [s["name"] for s in single.config["loggers"]] == ["mlflow"]


@pytest.mark.parametrize(("override", "message"), [
    ("loggers=[jsonl, tensorbord]",
     "loggers[1].name: unknown logger 'tensorbord' (did you mean 'tensorboard'?); known "
     "loggers: jsonl, mlflow, tensorboard"),
    ("loggers=[{name: tensorboard, dri: x}]",
     "loggers[0].dri: unknown key for logger 'tensorboard' (did you mean 'dir'?)"),
    ("loggers={name: jsonl}", "loggers: expected a list of sections"),
])
def test_a_wrong_loggers_section_is_a_config_error_naming_the_item(registry, override,
                                                                   message):
    with pytest.raises(ConfigError) as err:
        zoo.build("gcn_cora", [override], registry=registry)
    assert str(err.value).startswith(message), str(err.value)
