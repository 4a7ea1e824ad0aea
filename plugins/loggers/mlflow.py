"""Logger ``mlflow``: the run as an MLflow run (params, metric histories, status).

Everything goes through an ``MlflowClient`` with the run's id, never through mlflow's
module-level active run, so that two zoo runs in one process (a sweep, a notebook) each
keep to their own MLflow run. ``mlflow-skinny`` is enough for a server or a file store;
a ``sqlite:///`` store needs the full ``mlflow`` package.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import zoo
from zoo.errors import ConfigError
from zoo_plugins.loggers.records import (
    Steps,
    as_text,
    flatten,
    metrics_of,
    sanitize,
    scope,
    summary_means,
)

STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
RUN_DIR_TAG = "zoo.run_dir"  # finds the MLflow run again when the zoo run resumes
KEY_CHARS = r"A-Za-z0-9_\-./"  # a subset of what MLflow allows in metric and param keys


class MLflowLogger:
    """Records the run in MLflow: config as params, each record's metrics, summary and status.

    Params are the config flattened to dotted keys (``model.hidden``), values cut to
    MLflow's length limit. Each record's numeric values are metrics
    ``seed<k>.<phase>.<metric>`` at the record's step (its ``epoch``, else its
    ``iteration``, else its rank among its seed and phase's records); the summary's
    means are metrics ``final.<metric>``; the run ends FINISHED, FAILED or KILLED
    (interrupted). A resumed zoo run continues its MLflow run.

    Args:
        tracking_uri: where the run goes, as MLflow reads it: a server
            (http://host:5000), a database (sqlite:///mlflow.db, which needs the full
            mlflow package) or a folder (file:///data/mlruns); null: the file store
            mlruns/ in the run folder (see it with mlflow ui --backend-store-uri
            RUN/mlruns; MLflow 3.7 and later need MLFLOW_ALLOW_FILE_STORE=true for it).
        experiment: the MLflow experiment, created if missing; null: the config's name.
        run_name: the MLflow run's name; null: the run folder's name.
    """

    def __init__(self, *, tracking_uri: str | None = None, experiment: str | None = None,
                 run_name: str | None = None) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError("logger 'mlflow' needs the mlflow package; pip install "
                              "'zoo[tracking]'") from None
        self.client_class = MlflowClient
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.client: Any = None
        self.run_id: str | None = None
        self.steps = Steps()

    def start(self, run: zoo.RunInfo) -> None:
        """Open (or, resuming, reopen) the MLflow run and log the config as params."""
        uri = self.tracking_uri or default_tracking_uri(run.dir)
        if urlparse(uri).scheme in ("", "file"):
            # MLflow 3.7+ refuses file stores unless opted in; the zoo picks one by
            # default because it opens instantly where a new sqlite store migrates for
            # seconds. setdefault leaves a user's own choice alone.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = self.client_class(uri)
        experiment_id = self._experiment_id(self.experiment or run.name)
        run_dir = str(run.dir.resolve())
        self.run_id = self._previous_run(experiment_id, run_dir) if run.resumed else None
        if self.run_id is not None:
            self.client.update_run(self.run_id, status="RUNNING")
            return
        created = self.client.create_run(
            experiment_id, run_name=self.run_name or run.dir.name,
            tags={RUN_DIR_TAG: run_dir, "zoo.config": run.name})
        self.run_id = created.info.run_id
        params = [_param(key, value) for key, value in flatten(run.config).items()]
        self._log_batch(params=params)

    def log(self, record: dict[str, Any]) -> None:
        """Log the record's numeric values as metrics at the record's step."""
        seed, phase = scope(record)
        prefix = f"{sanitize(seed, KEY_CHARS)}.{sanitize(phase, KEY_CHARS)}"
        step = self.steps.of(record, prefix)
        stamp = int(time.time() * 1000)
        self._log_batch(metrics=[_metric(f"{prefix}.{sanitize(name, KEY_CHARS)}", value,
                                         stamp, step) for name, value in metrics_of(record)])

    def end(self, summary: dict[str, Any] | None, status: str) -> None:
        """Log the summary's means as ``final.<metric>`` and end the run with its status."""
        if self.run_id is None:
            return
        stamp = int(time.time() * 1000)
        self._log_batch(metrics=[_metric(f"final.{sanitize(name, KEY_CHARS)}", value, stamp, 0)
                                 for name, value in summary_means(summary).items()])
        self.client.set_terminated(self.run_id, STATUS[status])
        self.run_id = None

    def _experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return self.client.create_experiment(name)
            except Exception:  # another process created it meanwhile
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            self.client.restore_experiment(found.experiment_id)
        return found.experiment_id

    def _previous_run(self, experiment_id: str, run_dir: str) -> str | None:
        if "'" in run_dir:  # not expressible in MLflow's filter syntax: start a new run
            return None
        runs = self.client.search_runs([experiment_id], f"tags.`{RUN_DIR_TAG}` = '{run_dir}'",
                                       max_results=1)
        return runs[0].info.run_id if runs else None

    def _log_batch(self, metrics: list | None = None, params: list | None = None) -> None:
        """Log in chunks MLflow accepts in one request."""
        from mlflow.utils import validation

        for items, kind, most in ((metrics or [], "metrics", "MAX_METRICS_PER_BATCH"),
                                  (params or [], "params", "MAX_PARAMS_TAGS_PER_BATCH")):
            size = getattr(validation, most, 100)
            for i in range(0, len(items), size):
                self.client.log_batch(self.run_id, **{kind: items[i:i + size]})


def default_tracking_uri(run_dir: Path) -> str:
    """The run folder's own store: a file store ``mlruns/`` where the installed mlflow
    has one, else a sqlite database ``mlflow.db``."""
    if importlib.util.find_spec("mlflow.store.tracking.file_store") is not None:
        return (run_dir / "mlruns").resolve().as_uri()
    return f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"


def _param(key: str, value: Any) -> Any:
    from mlflow.entities import Param
    from mlflow.utils import validation

    longest = getattr(validation, "MAX_PARAM_VAL_LENGTH", 500)
    return Param(sanitize(key, KEY_CHARS)[:250], as_text(value)[:longest])


def _metric(key: str, value: float, timestamp: int, step: int) -> Any:
    from mlflow.entities import Metric

    return Metric(key[:250], value, timestamp, step)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("logger", "mlflow", MLflowLogger)
