"""The epoch loop: evaluation cadence, early stopping, best weights kept."""

from __future__ import annotations

import torch

from zoo.engine import Engine


def run(scores: list[float], *, eval_every: int = 1, patience: int | None = None):
    """Fit a one-weight model whose weight is the epoch number; ``scores[e]`` is the
    monitored metric an evaluation after epoch ``e`` reads."""
    model = torch.nn.Linear(1, 1, bias=False)
    records: list[dict] = []
    state = {"epoch": -1}

    def train_step(epoch: int) -> dict:
        state["epoch"] = epoch
        with torch.no_grad():
            model.weight.fill_(epoch)
        return {"loss": torch.tensor(1.0 / (epoch + 1))}

    def evaluate() -> dict:
        return {"val_accuracy": scores[state["epoch"]]}

    result = Engine(log=records.append).fit(model, train_step=train_step, evaluate=evaluate,
                                            epochs=len(scores), patience=patience,
                                            tie_break=None, eval_every=eval_every)
    return result, records, float(model.weight.detach())


def test_every_epoch_is_evaluated_by_default_and_the_best_weights_come_back():
    result, records, weight = run([0.1, 0.5, 0.3, 0.2])
    assert result.best_epoch == 1 and weight == 1.0
    assert all("val_accuracy" in r for r in records) and len(records) == 4


def test_eval_every_evaluates_every_kth_epoch_and_the_last():
    result, records, weight = run([0.9, 0.1, 0.2, 0.3, 0.4, 0.35, 0.5], eval_every=3)
    evaluated = [r["epoch"] for r in records if "val_accuracy" in r]
    assert evaluated == [2, 5, 6]
    assert len(records) == 7 and all("loss" in r for r in records)
    # epoch 0 scored best but was never evaluated: it cannot be chosen.
    assert result.best_epoch == 6 and weight == 6.0
    assert len(result.epoch_ms) == 7 and len(result.history) == 3


def test_patience_counts_epochs_checked_at_evaluations():
    scores = [0.5, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    result, _, weight = run(scores, patience=2)
    assert result.epochs_run == 4 and weight == 1.0  # epochs 2 and 3 did not improve
    result, _, _ = run(scores, eval_every=2, patience=4)
    assert result.epochs_run == 6  # evaluated after 1, 3, 5: 5 - 1 >= 4
