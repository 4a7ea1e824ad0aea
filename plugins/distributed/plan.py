"""What a DistDGL trainer runs, read from a validated zoo config.

The DistDGL trainer is the ``supervised`` trainer's loop on sampled blocks: the model
section, the optimizer section, ``epochs``, ``patience``, ``eval_every`` and the
``neighbor_sampler`` batch source's ``fanouts``, ``batch_size`` and ``replace``. What it
does not do is refused here, before anything is partitioned or launched.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from zoo.errors import ConfigError

SAMPLED = "trainer.batches={name: neighbor_sampler, fanouts: [10, 10]}"


@dataclass(frozen=True)
class TrainingPlan:
    """The settings of a DistDGL training run.

    Attributes:
        fanouts: neighbours sampled per node at each layer, input layer first (-1: all).
        batch_size: seed (training) nodes per trainer per step.
        replace: sample neighbours with replacement.
        epochs: passes over the training nodes.
        optimizer: the optimizer section (built through the zoo's registry).
        patience: stop after this many epochs without a better validation accuracy
            (None: train every epoch).
        eval_every: evaluate every this many epochs (and after the last).
    """

    fanouts: tuple[int, ...]
    batch_size: int
    replace: bool
    epochs: int
    optimizer: dict[str, Any]
    patience: int | None = None
    eval_every: int = 1

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrainingPlan:
        """The plan of a validated zoo config, or a ConfigError saying what to change."""
        task = config.get("task", {}).get("name")
        if task != "node_classification":
            raise ConfigError(f"task: the DistDGL trainer does node classification, not "
                              f"'{task}'")
        if config.get("regularizers"):
            names = ", ".join(r.get("name", "?") for r in config["regularizers"])
            raise ConfigError(f"regularizers ({names}): the DistDGL trainer trains without "
                              "regularizers; remove the regularizers section")
        if "model" not in config:
            raise ConfigError("model: the DistDGL trainer needs a node model that runs on "
                              "sampled blocks (gcn, sage, gat, gin)")
        trainer = config.get("trainer", {})
        batches = trainer.get("batches") or {}
        if batches.get("name") != "neighbor_sampler" or "optimizer" not in trainer:
            raise ConfigError(f"trainer: the DistDGL trainer samples blocks as the "
                              f"neighbor_sampler batch source does; set {SAMPLED}")
        if batches.get("seeds", "labeled") != "labeled":
            raise ConfigError("trainer.batches.seeds: the DistDGL trainer seeds its batches "
                              "with the training nodes; set trainer.batches.seeds=labeled")
        return cls(fanouts=tuple(int(f) for f in batches["fanouts"]),
                   batch_size=int(batches["batch_size"]),
                   replace=bool(batches.get("replace", False)),
                   epochs=int(trainer["epochs"]), optimizer=dict(trainer["optimizer"]),
                   patience=trainer.get("patience"),
                   eval_every=int(trainer.get("eval_every", 1) or 1))

    def replace_settings(self, *, epochs: int | None = None, batch_size: int | None = None,
                         fanouts: list[int] | tuple[int, ...] | None = None) -> TrainingPlan:
        """The plan with the given settings changed (None keeps one); a ConfigError for a
        value out of range."""
        if epochs is not None and epochs < 1:
            raise ConfigError(f"epochs: expected a whole number >= 1, got {epochs}")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size: expected a whole number >= 1, got {batch_size}")
        if fanouts is not None and (not fanouts or any(f == 0 or f < -1 for f in fanouts)):
            raise ConfigError(f"fanouts: expected numbers >= 1 (or -1 for all), one per "
                              f"layer, got {list(fanouts)}")
        changes = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size),
                                     ("fanouts", None if fanouts is None else tuple(fanouts)))
                   if v is not None}
        return dataclasses.replace(self, **changes)

    def check_layers(self, num_layers: int | None, model: str) -> None:
        """A ConfigError unless there is one fanout per layer of the node model."""
        if num_layers is not None and num_layers != len(self.fanouts):
            raise ConfigError(f"fanouts: {len(self.fanouts)} fanout(s) for node model "
                              f"'{model}', which has {num_layers} layers; give one fanout "
                              "per layer")
