"""The synthetic session generator and its co-occurrence graph."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import zoo
from zoo_plugins.graph_builders.cooccurrence import cooccurrence_graph
from zoo_plugins.graph_builders.sessions import (
    intruder_share,
    simulate_sessions,
    synthetic_sessions,
)


def items_data(n: int = 300, classes: int = 5, train: int = 200) -> zoo.GraphData:
    labels = torch.arange(n) % classes
    train_items = torch.zeros(n, dtype=torch.bool)
    train_items[:train] = True
    labeled = train_items & (torch.arange(n) % 10 == 0)
    val = torch.zeros(n, dtype=torch.bool)
    val[train:250] = True
    return zoo.GraphData(graph=None, features=torch.randn(n, 1, 4, 4), labels=labels,
                         train_mask=labeled, val_mask=val, test_mask=~train_items & ~val,
                         num_classes=classes, name="toy", extra={"train_items": train_items})


def test_every_item_is_in_its_sessions_and_sessions_follow_the_size():
    labels = np.arange(103) % 4
    sessions = simulate_sessions(labels, np.arange(103), session_size=4, sessions_per_item=3,
                                 intruder_rate=0.0, seed=1)
    counts = np.bincount(np.concatenate(sessions), minlength=103)
    assert (counts == 3).all()  # no intruders: each round places every item once
    assert all(2 <= len(s) <= 5 for s in sessions)
    assert all(len(set(labels[s])) == 1 for s in sessions)  # pure sessions


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.2, 0.3])
def test_intruder_rate_is_the_off_class_share(rate):
    labels = np.arange(5000) % 10
    sessions = simulate_sessions(labels, np.arange(5000), session_size=5, intruder_rate=rate,
                                 seed=0)
    assert intruder_share(sessions, labels) == pytest.approx(rate, abs=0.02)


def test_same_seed_same_sessions_and_other_seed_others():
    labels = np.arange(200) % 3
    a = simulate_sessions(labels, np.arange(200), seed=4)
    b = simulate_sessions(labels, np.arange(200), seed=4)
    c = simulate_sessions(labels, np.arange(200), seed=5)
    assert all((x == y).all() for x, y in zip(a, b))
    assert any(len(x) != len(y) or (x != y).any() for x, y in zip(a, c))


def test_graph_covers_the_training_split_only_by_default():
    data = items_data()
    graph = synthetic_sessions(data, intruder_rate=0.0)
    src, dst = graph.edges()
    touched = torch.unique(torch.cat([src, dst]))
    assert set(touched.tolist()) == set(range(200))  # every training item, labeled or not
    assert (data.labels[src] == data.labels[dst]).all()  # pure sessions: same-class edges
    everyone = synthetic_sessions(data, items="all", intruder_rate=0.0)
    assert torch.unique(torch.cat(everyone.edges())).numel() == 300


def test_saved_log_reads_back_to_the_same_graph(tmp_path):
    data = items_data()
    log = tmp_path / "logs" / "sessions.jsonl"
    graph = synthetic_sessions(data, save=str(log), intruder_rate=0.3, seed=2)
    lines = log.read_text().splitlines()
    assert all(isinstance(json.loads(line), list) for line in lines)
    again = cooccurrence_graph(data, sessions=str(log))
    assert graph.num_edges() == again.num_edges()
    a = torch.stack(graph.edges()).T.tolist()
    b = torch.stack(again.edges()).T.tolist()
    assert sorted(map(tuple, a)) == sorted(map(tuple, b))
    torch.testing.assert_close(graph.edata["weight"][torch.argsort(graph.edges()[0] * 1000
                                                                   + graph.edges()[1])],
                               again.edata["weight"][torch.argsort(again.edges()[0] * 1000
                                                                   + again.edges()[1])])


def test_sessions_follow_coarse_classes_when_labels_are_fine():
    data = items_data()
    data.extra["classes"] = data.labels.clone()
    data.labels = data.labels * 7 + torch.arange(300) % 7  # fine labels
    graph = synthetic_sessions(data, intruder_rate=0.0)
    src, dst = graph.edges()
    assert (data.extra["classes"][src] == data.extra["classes"][dst]).all()
