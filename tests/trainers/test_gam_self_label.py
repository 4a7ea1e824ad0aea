"""Self-labeling for GAM co-training: confidence threshold, class proportions, and that
validation and test nodes are never picked."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from zoo_plugins.tasks.node_classification import NodeClassification
from zoo_plugins.trainers.gam import GAM
from zoo_plugins.trainers.self_label import class_quotas, select_self_labels


def _probs(top: list[float], classes: list[int], num_classes: int = 3) -> torch.Tensor:
    """Rows whose top probability is ``top[i]`` on class ``classes[i]``."""
    n = len(top)
    rest = (1.0 - torch.tensor(top)) / (num_classes - 1)
    probs = rest.unsqueeze(1).repeat(1, num_classes)
    probs[torch.arange(n), torch.tensor(classes)] = torch.tensor(top)
    return probs


def test_most_confident_first_above_the_threshold():
    probs = _probs([0.5, 0.9, 0.39, 0.7, 0.4], [0, 1, 2, 0, 1])
    nodes, labels = select_self_labels(probs, torch.ones(5, dtype=torch.bool), 10, 0.4)
    assert nodes.tolist() == [1, 3, 0, 4]  # 0.39 is below min_confidence
    assert labels.tolist() == [1, 0, 0, 1]
    nodes, _ = select_self_labels(probs, torch.ones(5, dtype=torch.bool), 2, 0.4)
    assert nodes.tolist() == [1, 3]


def test_only_candidates_are_picked():
    probs = _probs([0.99, 0.5, 0.98, 0.6], [0, 0, 1, 1])
    candidates = torch.tensor([False, True, False, True])
    nodes, _ = select_self_labels(probs, candidates, 10, 0.0)
    assert nodes.tolist() == [3, 1]


def test_class_quotas_follow_the_original_proportions():
    quotas = class_quotas(torch.tensor([0, 0, 0, 1]), 3, 8)
    assert quotas.tolist() == [6, 2, 0]
    assert class_quotas(torch.tensor([0, 1, 2] * 20), 3, 200).tolist() == [66, 66, 66]


def test_keep_label_proportions_caps_each_class():
    # Class 0 is predicted for 8 confident nodes, class 1 for 4; quotas 3 and 1.
    top = [0.9, 0.95, 0.8, 0.85, 0.7, 0.75, 0.6, 0.65, 0.99, 0.5, 0.55, 0.45]
    classes = [0] * 8 + [1] * 4
    probs = _probs(top, classes)
    quotas = torch.tensor([3, 1, 2])  # nobody is predicted class 2: it adds nothing
    nodes, labels = select_self_labels(probs, torch.ones(12, dtype=torch.bool), 6, 0.4,
                                       quotas)
    assert sorted(nodes.tolist()) == [0, 1, 3, 8]  # top-3 of class 0, top-1 of class 1
    assert torch.bincount(labels, minlength=3).tolist() == [3, 1, 0]


class FixedLogits(torch.nn.Module):
    """A classifier that always returns the same logits."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, graph, features):
        return SimpleNamespace(logits=self.logits)


def _self_label_setup(**trainer_options):
    n = 40
    torch.manual_seed(0)
    # Validation and test nodes get the most confident predictions of all.
    logits = torch.randn(n, 3)
    val = torch.zeros(n, dtype=torch.bool)
    test = torch.zeros(n, dtype=torch.bool)
    val[10:20], test[20:30] = True, True
    logits[10:30] *= 50.0
    train = torch.zeros(n, dtype=torch.bool)
    train[:6] = True
    labels = torch.tensor([0, 1, 2, 0, 1, 2] + [0] * (n - 6))
    data = SimpleNamespace(features=torch.zeros(n, 1), val_mask=val, test_mask=test,
                           train_mask=train, labels=labels)
    whole_graph = SimpleNamespace(infer=lambda model: model(None, data.features))
    ctx = SimpleNamespace(data=data, graph=None, task=NodeClassification(),
                          batch_source=lambda batches: whole_graph)
    trainer = GAM(num_samples_to_label=30, min_confidence=0.0, **trainer_options)
    labeled = train.clone()
    # What the trainer may see of the labels: none outside the training set.
    cur = torch.where(train, labels, torch.zeros_like(labels))
    quotas = class_quotas(labels[train], 3, 30)
    added = trainer.self_label(ctx, FixedLogits(logits), cur, labeled, quotas)
    return logits, train, val, test, labeled, cur, quotas, added


def test_trainer_never_self_labels_validation_or_test_nodes():
    logits, train, val, test, labeled, cur, quotas, added = _self_label_setup()
    assert added > 0
    new = labeled & ~train
    assert not (new & (val | test)).any()
    assert int(new.sum()) == added
    assert torch.equal(cur[new], logits[new].argmax(-1))
    assert torch.bincount(cur[new], minlength=3).le(quotas).all()


def test_transductive_setting_self_labels_test_nodes_never_validation_nodes():
    # inductive: false, the reference's setting: the test nodes' confident predictions
    # (the most confident of all here) are taken; validation nodes never are.
    logits, train, val, test, labeled, cur, quotas, added = _self_label_setup(
        inductive=False)
    new = labeled & ~train
    assert int(new.sum()) == added > 0
    assert not (new & val).any()
    assert (new & test).sum() > 0
    assert torch.equal(cur[new], logits[new].argmax(-1))
    assert torch.bincount(cur[new], minlength=3).le(quotas).all()
