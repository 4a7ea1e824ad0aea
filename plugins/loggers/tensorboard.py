"""Logger ``tensorboard``: the run's curves as TensorBoard scalars.

Tags are ``seed<k>/<phase>/<metric>`` (``seed0/train/val_accuracy``,
``seed0/iter_2_classifier/loss``), so TensorBoard groups a seed's phases together and
each GAM iteration's classifier keeps its own curve; ``final/<metric>`` holds the
summary's means, with the config's scalars as hyperparameters (the HPARAMS tab compares
runs written under one folder: ``tensorboard --logdir runs/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml

import zoo
from zoo.errors import ConfigError
from zoo.schema import Ge
from zoo_plugins.loggers.records import (
    Steps,
    as_text,
    flatten,
    metrics_of,
    sanitize,
    scope,
    summary_means,
)


class TensorBoardLogger:
    """Writes each record's metrics as TensorBoard scalars, config as text, summary as hparams.

    A record's step is its ``epoch``, else its ``iteration`` (GAM's per-iteration
    records), else its rank among the records of its seed and phase. At the end the
    summary's means are scalars ``final/<metric>`` and, with the config's scalar values,
    an hparams entry; the writer is flushed and closed.

    Args:
        dir: the event files' folder, relative to the run folder unless absolute.
        flush_secs: how often the writer flushes to disk while the run goes on.
    """

    def __init__(self, *, dir: str = "tensorboard",
                 flush_secs: Annotated[int, Ge(1)] = 30) -> None:
        try:  # torch's writer needs the tensorboard package for its protobufs
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("logger 'tensorboard' needs the tensorboard package; "
                              "pip install 'zoo[tracking]'") from None
        self.writer_class = SummaryWriter
        self.dir = dir
        self.flush_secs = flush_secs
        self.writer: Any = None
        self.steps = Steps()
        self.config: dict[str, Any] = {}

    def start(self, run: zoo.RunInfo) -> None:
        """Open the writer and write the config (as YAML text)."""
        self.writer = self.writer_class(log_dir=str(run.dir / Path(self.dir).expanduser()),
                                        flush_secs=self.flush_secs)
        self.config = run.config
        text = yaml.safe_dump(run.config, sort_keys=False)
        # TensorBoard renders text as Markdown: indenting by four spaces keeps it verbatim.
        self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()))
        if run.resumed:
            self.writer.add_text("run", f"{run.name}: resumed")

    def log(self, record: dict[str, Any]) -> None:
        """Write the record's metrics as scalars ``seed<k>/<phase>/<metric>``."""
        seed, phase = scope(record)
        prefix = f"{sanitize(seed)}/{sanitize(phase)}"
        step = self.steps.of(record, prefix)
        for name, value in metrics_of(record):
            self.writer.add_scalar(f"{prefix}/{sanitize(name)}", value, step)

    def end(self, summary: dict[str, Any] | None, status: str) -> None:
        """Write the summary's means and the status; flush and close the writer."""
        if self.writer is None:
            return
        means = {f"final/{sanitize(k)}": v for k, v in summary_means(summary).items()}
        if means:
            # add_hparams writes the means as scalars too, beside the hparams entry.
            self.writer.add_hparams(hparams(self.config), means, run_name=".")
        self.writer.add_text("status", status)
        self.writer.flush()
        self.writer.close()
        self.writer = None


def hparams(config: dict[str, Any]) -> dict[str, Any]:
    """The config's values as TensorBoard accepts hyperparameters (numbers, strings,
    booleans; anything else as its text)."""
    return {key: value if isinstance(value, (int, float, str, bool)) else as_text(value)
            for key, value in flatten(config).items()}


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("logger", "tensorboard", TensorBoardLogger)
