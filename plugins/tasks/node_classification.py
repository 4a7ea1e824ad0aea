"""Task ``node_classification``: one class per node, trained with cross-entropy.

The task of the Planetoid papers (and of GAM, NSL's graph regularization and the node
models): the model outputs class scores, the loss is the cross-entropy of the labeled
rows of a batch, and the metrics are the accuracy of the training, validation and test
nodes and the validation loss. The epoch (or co-training iteration) with the best
validation accuracy is kept, ties going to the lower validation loss.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

import zoo


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose arg-max equals the label (0 for no rows), on the device."""
    if labels.numel() == 0:
        return logits.new_zeros(())
    return (logits.argmax(-1) == labels).float().mean()


class NodeClassification:
    """Classify nodes: cross-entropy on labeled nodes; accuracy on train/val/test splits.

    Metrics: ``train_accuracy`` (against the dataset's labels of the training nodes),
    ``val_accuracy``, ``val_loss`` (cross-entropy of the validation nodes) and
    ``test_accuracy``. The monitored metric is ``val_accuracy`` (higher is better), ties
    broken by the lower ``val_loss``.
    """

    monitor = "val_accuracy"
    mode: Literal["max", "min"] = "max"
    tie_break = "val_loss"
    report = ("test_accuracy", "val_accuracy")

    def __init__(self) -> None:
        pass

    def output_size(self, data: zoo.GraphData) -> int:
        """One score per class."""
        return int(data.num_classes)

    def loss(self, output: zoo.ModelOutput, batch: zoo.Batch) -> torch.Tensor:
        """Cross-entropy of the batch's ``loss_rows``: their mean, or their sum over
        ``loss_norm`` (a mini-batch's unbiased estimate of the full-graph mean)."""
        rows = batch.loss_rows
        if batch.loss_norm is None:
            return F.cross_entropy(output.logits[rows], batch.labels[rows])
        return F.cross_entropy(output.logits[rows], batch.labels[rows],
                               reduction="sum") / batch.loss_norm

    def probabilities(self, output: zoo.ModelOutput) -> torch.Tensor:
        """Class probabilities, one row per node."""
        return torch.softmax(output.logits, dim=-1)

    def evaluate(self, output: zoo.ModelOutput, data: zoo.GraphData) -> dict[str, torch.Tensor]:
        """Accuracies of the three splits and the validation loss (0-dim tensors)."""
        logits, labels, val = output.logits, data.labels, data.val_mask
        val_loss = (F.cross_entropy(logits[val], labels[val]) if val.any()
                    else logits.new_zeros(()))
        return {
            "train_accuracy": accuracy(logits[data.train_mask], labels[data.train_mask]),
            "val_accuracy": accuracy(logits[val], labels[val]),
            "val_loss": val_loss,
            "test_accuracy": accuracy(logits[data.test_mask], labels[data.test_mask]),
        }


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("task", "node_classification", NodeClassification)
