"""Using a trained model: zoo.load, Experiment.predict, zoo predict, zoo evaluate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("predict") / "run"
    assert main(["run", "gcn_cora", "trainer.epochs=40", "--seeds", "2", "--quiet",
                 "--out", str(out)]) == 0
    return out


def test_predict_gives_probabilities_and_embeddings(run: Path) -> None:
    exp = zoo.load(run)
    pred = exp.predict()
    n = exp.data.num_nodes
    assert pred.probabilities.shape == (n, exp.data.num_classes)
    assert torch.allclose(pred.probabilities.sum(1), torch.ones(n), atol=1e-5)
    assert torch.equal(pred.classes, pred.probabilities.argmax(1))
    assert pred.embedding.shape[0] == n
    summary = json.loads((run / "summary.json").read_text())
    test = exp.data.test_mask
    accuracy = float((pred.classes[test] == exp.data.labels[test]).float().mean())
    assert accuracy == pytest.approx(summary["metrics"]["test_accuracy"]["values"][0], abs=1e-6)


def test_predict_on_new_nodes_equals_the_same_nodes_given_anew(run: Path) -> None:
    exp = zoo.load(run)
    data = exp.data
    features = data.features.to_dense() if data.features.is_sparse else data.features
    src, dst = exp.graph.edges()
    again = exp.predict(features.numpy(), (src.numpy(), dst.numpy()))
    assert torch.allclose(again.probabilities, exp.predict().probabilities, atol=1e-5)
    with pytest.raises(zoo.ConfigError, match="reads a graph"):
        exp.predict(features[:10])
    with pytest.raises(zoo.ConfigError, match="one per feature row"):
        exp.predict(features[:10], (np.array([0]), np.array([50])))
    with pytest.raises(zoo.ConfigError, match="shaped like"):
        exp.predict(features[:, :5], (src.numpy(), dst.numpy()))


def test_zoo_predict_writes_csv(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run), "--out", str(out), "--seed", "1"]) == 0
    rows = list(csv.reader(out.open()))
    exp = zoo.load(run, seed=1)
    assert rows[0][:2] == ["id", "predicted"] and len(rows[0]) == 2 + exp.data.num_classes
    assert len(rows) == 1 + exp.data.num_nodes
    pred = exp.predict()
    assert [int(r[1]) for r in rows[1:11]] == pred.classes[:10].tolist()
    assert float(rows[1][2 + int(rows[1][1])]) == pytest.approx(
        float(pred.probabilities[0].max()), rel=1e-5)
    test_only = tmp_path / "test.csv"
    assert main(["predict", str(run), "--split", "test", "--out", str(test_only)]) == 0
    assert len(test_only.read_text().splitlines()) == 1 + int(exp.data.test_mask.sum())
    # New nodes from files: the dataset's own features and graph give the same table.
    features, graph = tmp_path / "x.npy", tmp_path / "g.tsv"
    dense = exp.data.features.to_dense() if exp.data.features.is_sparse else exp.data.features
    np.save(features, dense.numpy())
    assert main(["graph", "build", "gcn_cora", "--out", str(graph)]) == 0
    new = tmp_path / "new.csv"
    assert main(["predict", str(run), "--seed", "1", "--features", str(features), "--graph",
                 str(graph), "--out", str(new)]) == 0
    assert [r[1] for r in csv.reader(new.open())][1:] == [r[1] for r in rows[1:]]


def test_zoo_predict_errors(run: Path, tmp_path: Path, capsys) -> None:
    assert main(["predict", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["predict", str(run), "--seed", "7"]) == 2
    assert "no weights for seed 7" in capsys.readouterr().err
    assert main(["predict", str(run), "--graph", "g.tsv"]) == 2
    assert "--features" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    assert main(["predict", str(run), "--features", str(bad), "--graph", str(bad)]) == 2


def test_zoo_evaluate_recomputes_the_recorded_metrics(run: Path, capsys) -> None:
    assert main(["evaluate", str(run), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results) == {"0", "1"}
    for metrics in results.values():
        for key in ("test_accuracy", "val_accuracy", "train_accuracy"):
            assert metrics[key]["now"] == pytest.approx(metrics[key]["recorded"], abs=1e-6)
    assert main(["evaluate", str(run), "--seed", "1"]) == 0
    assert "run recorded" in capsys.readouterr().out
