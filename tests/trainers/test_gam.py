"""The ``gam`` trainer end to end on small synthetic graphs: it beats the plain
classifier and plain distance regularization on a graph full of wrong-label edges,
reports its baseline and per-iteration records, and works for any classifier."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import dgl
import pytest
import torch

import zoo
from zoo.contracts import GraphData
from zoo.errors import ConfigError
from zoo.plugins import PluginManager
from zoo.registry import PluginRegistrar, Registry
from zoo_plugins.datasets.fetch import mirror_file


def noisy_sbm(*, n_per_class: int = 100, classes: int = 3, degree: int = 6,
              cross: float = 0.35, dim: int = 16, noise: float = 1.5, train_per_class: int = 5,
              seed: int = 0) -> GraphData:
    """A stochastic block model whose edges join different classes with probability
    ``cross``, and Gaussian features around a random mean per class (``noise`` std)."""
    gen = torch.Generator().manual_seed(seed)
    n = n_per_class * classes
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    means = torch.randn(classes, dim, generator=gen)
    features = means[labels] + noise * torch.randn(n, dim, generator=gen)
    m = n * degree // 2
    src = torch.randint(n, (m,), generator=gen)
    other = (labels[src] + torch.randint(1, classes, (m,), generator=gen)) % classes
    same = torch.rand(m, generator=gen) >= cross
    dst = (torch.where(same, labels[src], other) * n_per_class
           + torch.randint(n_per_class, (m,), generator=gen))
    keep = src != dst
    src, dst = src[keep], dst[keep]
    graph = dgl.to_simple(dgl.graph((torch.cat([src, dst]), torch.cat([dst, src])),
                                    num_nodes=n))
    perm = torch.randperm(n, generator=gen)
    train = torch.zeros(n, dtype=torch.bool)
    for c in range(classes):
        train[perm[labels[perm] == c][:train_per_class]] = True
    rest = perm[~train[perm]]
    val = torch.zeros(n, dtype=torch.bool)
    test = torch.zeros(n, dtype=torch.bool)
    val[rest[:60]] = True
    test[rest[60:210]] = True
    return GraphData(graph, features, labels, train, val, test, classes, "noisy_sbm")


def _constant_dataset(data: GraphData):
    def dataset() -> GraphData:
        """A synthetic graph for the GAM tests."""
        return data
    return dataset


def _registry(datasets: dict[str, GraphData]) -> Registry:
    manager = PluginManager(warn=False)
    manager.load_entry_points()
    registrar = PluginRegistrar("test_gam", "test_gam", "0")
    for name, data in datasets.items():
        registrar.add("dataset", name, _constant_dataset(data))
    registrar.commit(manager.registry)
    return manager.registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    return _registry({f"sbm{s}": noisy_sbm(seed=s) for s in (0, 1)})


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: much faster on shared CPUs, and the supervised runs honour it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


MLP = {"name": "mlp", "hidden": 32, "layers": 2, "dropout": 0.0, "activation": "leaky_relu"}
ADAM = {"name": "adam", "lr": 0.01, "weight_decay": 5e-4}
SUPERVISED = {"name": "supervised", "optimizer": ADAM, "epochs": 200}
GAM = {"name": "gam", "optimizer": ADAM, "steps": 200, "patience": 100,
       "max_iterations": 4, "num_samples_to_label": 30,
       "agreement": {"steps": 300, "patience": 100,
                     "encoder": {"name": "mlp", "hidden": 32, "layers": 1, "dropout": 0.0,
                                 "activation": "leaky_relu"}}}
AGREEMENT = {"name": "agreement", "reg_weight_lu": 1.0, "reg_weight_uu": 0.5,
             "num_pairs_reg": 128}


def merged(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, nested mappings key by key."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = (merged(out[key], value) if isinstance(value, dict)
                    and isinstance(out.get(key), dict) else value)
    return out


def _fit(registry: Registry, config: dict, seeds: int = 2, out=None) -> dict:
    return zoo.build(config, registry=registry).fit(seeds=seeds, out=out)


def _mean(summary: dict, key: str = "test_accuracy") -> float:
    return summary["metrics"][key]["mean"]


def test_gam_beats_classifier_and_distance_regularization_on_noisy_graph(registry):
    """35% of the edges join different classes: pulling every neighbour together hurts,
    weighting neighbours by learned agreement (and self-labeling) helps."""
    scores: dict[str, list[float]] = {"mlp": [], "distance": [], "gam": []}
    for name in ("sbm0", "sbm1"):
        base = {"dataset": {"name": name}, "encoder": MLP}
        scores["mlp"].append(_mean(_fit(registry, {**base, "trainer": SUPERVISED})))
        distance = {"name": "distance", "multiplier": 0.5, "transform": "softmax"}
        scores["distance"].append(_mean(_fit(registry, {**base, "regularizers": [distance],
                                                        "trainer": SUPERVISED})))
        scores["gam"].append(_mean(_fit(registry, {**base, "regularizers": [AGREEMENT],
                                                   "trainer": GAM})))
    mean = {k: sum(v) / len(v) for k, v in scores.items()}
    assert mean["gam"] > mean["mlp"] + 0.03, scores
    assert mean["gam"] > mean["distance"] + 0.03, scores


def test_metrics_baseline_and_iteration_records(registry, tmp_path):
    config = {"dataset": {"name": "sbm0"}, "encoder": MLP, "regularizers": [AGREEMENT],
              "trainer": {**GAM, "max_iterations": 2}}
    summary = _fit(registry, config, seeds=1, out=tmp_path / "run")
    metrics = {k: v["mean"] for k, v in summary["metrics"].items()}
    for key in ("test_accuracy", "val_accuracy", "baseline_test_accuracy",
                "baseline_val_accuracy", "agreement_accuracy", "iterations", "labeled"):
        assert key in metrics, key
    assert 0.0 <= metrics["agreement_accuracy"] <= 1.0
    assert metrics["iterations"] == 2
    # The baseline and the last iteration do not self-label: one round of 30 nodes.
    assert metrics["labeled"] == 15 + 30
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    gam = [r for r in records if r["phase"] == "gam"]
    assert [r["iteration"] for r in gam] == [0, 1, 2]
    assert [r["labeled"] for r in gam] == [15, 15, 45]
    assert [r["self_labeled"] for r in gam] == [0, 30, 0]
    assert math.isnan(gam[0]["agreement_accuracy"]) and gam[1]["agreement_accuracy"] >= 0
    # How many held-out pairs the agreement accuracy was measured on (15 labeled nodes
    # share no edge to hold out here: 0, the accuracy is then the last training batch's).
    assert gam[0]["agreement_val_pairs"] == 0 and gam[1]["agreement_val_pairs"] == 0
    phases = {r["phase"] for r in records}
    assert {"iter 0 classifier", "iter 1 agreement", "iter 1 classifier"} <= phases
    # The reported accuracy is that of the best-validation iteration.
    best = max(gam, key=lambda r: r["val_accuracy"])
    assert metrics["val_accuracy"] == pytest.approx(best["val_accuracy"])
    assert metrics["test_accuracy"] == pytest.approx(gam[gam.index(best)]["test_accuracy"])
    assert metrics["baseline_test_accuracy"] == pytest.approx(gam[0]["test_accuracy"])


@pytest.mark.parametrize("variant", [
    {"model": {"name": "gcn", "hidden": 16}, "trainer": {"warm_start_classifier": True}},
    {"model": {"name": "sage", "hidden": 16},
     "trainer": {"batches": {"name": "neighbor_sampler", "fanouts": [5, 5], "batch_size": 64,
                             "seeds": "all"}}},
    {"encoder": MLP, "regularizers": [{**AGREEMENT, "use_graph": False}],
     "trainer": {"agreement": {"aggregation": "project_concat"}, "warm_start_agreement": True,
                 "batches": {"name": "full_graph", "batch_size": 8}}},
    {"encoder": MLP, "trainer": {"batches": {"name": "packed_neighbors", "batch_size": 64},
                                 "agreement": {"pairs": "edges_and_random", "propagation": 2,
                                               "aggregation": "project_dist"}}},
])
def test_other_classifiers_and_variants_run(registry, variant):
    config = {"dataset": {"name": "sbm0"}, "regularizers": [AGREEMENT], **variant,
              "trainer": merged({**GAM, "max_iterations": 1}, variant.get("trainer", {}))}
    metrics = _fit(registry, config, seeds=1)["metrics"]
    assert metrics["test_accuracy"]["mean"] > 0.5
    assert metrics["iterations"]["mean"] == 1


def test_without_agreement_regularizer_is_a_config_error_before_anything_runs(registry):
    config = {"dataset": {"name": "sbm0"}, "encoder": MLP, "trainer": GAM}
    with pytest.raises(ConfigError, match="agreement regularizer"):
        zoo.build(config, registry=registry)


def test_old_agreement_keys_name_their_new_place(registry):
    config = {"dataset": {"name": "sbm0"}, "encoder": MLP, "regularizers": [AGREEMENT],
              "trainer": {**GAM, "agreement_lr": 0.01}}
    with pytest.raises(ConfigError, match="trainer.agreement_lr has moved: write "
                                          "trainer.agreement.optimizer.lr instead"):
        zoo.build(config, registry=registry)


def test_stops_when_a_round_labels_nothing(registry):
    config = {"dataset": {"name": "sbm0"}, "encoder": MLP, "regularizers": [AGREEMENT],
              "trainer": {**GAM, "num_samples_to_label": 0, "max_iterations": 5}}
    metrics = _fit(registry, config, seeds=1)["metrics"]
    assert metrics["iterations"]["mean"] == 1
    assert metrics["labeled"]["mean"] == 15


def test_threads_setting_is_restored(registry):
    torch.set_num_threads(2)
    config = {"dataset": {"name": "sbm0"}, "encoder": MLP, "regularizers": [AGREEMENT],
              "trainer": {**GAM, "max_iterations": 0}, "threads": 1}
    _fit(registry, config, seeds=1)
    assert torch.get_num_threads() == 2


CORA = mirror_file("ind.cora.x", "planetoid") or Path("ind.cora.x")


@pytest.mark.slow
@pytest.mark.skipif(not CORA.is_file() and not os.environ.get("ZOO_DATA_DIR"),
                    reason="Cora is not available offline")
def test_gam_cora_improves_on_its_gcn_baseline():
    """The headline config, cut to three co-training iterations (about a minute)."""
    summary = zoo.build("gam_cora", ["trainer.max_iterations=3"]).fit(seeds=1)
    metrics = {k: v["mean"] for k, v in summary["metrics"].items()}
    assert metrics["baseline_test_accuracy"] >= 0.80
    assert metrics["test_accuracy"] >= 0.825
    assert metrics["best_iteration"] >= 1  # co-training, not the plain GCN, was chosen


@pytest.mark.slow
@pytest.mark.skipif(not CORA.is_file() and not os.environ.get("ZOO_DATA_DIR"),
                    reason="Cora is not available offline")
def test_gam_mlp_cora_lifts_an_mlp_far_above_its_baseline():
    """MLP + GAM cut to two co-training iterations (about 20 seconds): the agreement
    term and the first self-labels already add 15+ points to a plain MLP's ~0.59."""
    summary = zoo.build("gam_mlp_cora", ["trainer.max_iterations=2"]).fit(seeds=1)
    metrics = {k: v["mean"] for k, v in summary["metrics"].items()}
    assert metrics["baseline_test_accuracy"] < 0.65
    assert metrics["test_accuracy"] >= metrics["baseline_test_accuracy"] + 0.15


def test_transductive_run_never_reads_test_labels(tmp_path, monkeypatch):
    """inductive: false lets the classifier self-label test nodes: with the test labels
    scrambled, everything the run learns (weights, self-labels, validation accuracy) is
    the same; only the test accuracy measured against them moves."""
    import zoo_plugins.trainers.gam as gam_module

    chosen: list[torch.Tensor] = []

    def recording(*args, **kwargs):
        nodes, new_labels = select_self_labels(*args, **kwargs)
        chosen.append(nodes)
        return nodes, new_labels

    select_self_labels = gam_module.select_self_labels
    monkeypatch.setattr(gam_module, "select_self_labels", recording)
    data = noisy_sbm(seed=0)
    labels = data.labels.clone()
    test = data.test_mask
    labels[test] = (labels[test] + 1) % data.num_classes
    scrambled = GraphData(data.graph, data.features, labels, data.train_mask,
                          data.val_mask, test, data.num_classes, "noisy_sbm")
    registry = _registry({"plain": data, "scrambled": scrambled})
    runs = {}
    for name in ("plain", "scrambled"):
        config = {"dataset": {"name": name}, "encoder": MLP, "regularizers": [AGREEMENT],
                  "trainer": {**GAM, "max_iterations": 2, "inductive": False}}
        runs[name] = _fit(registry, config, seeds=1, out=tmp_path / name)["metrics"]
    for key in ("val_accuracy", "labeled", "agreement_accuracy", "best_iteration"):
        assert runs["plain"][key]["values"] == runs["scrambled"][key]["values"], key
    assert runs["plain"]["labeled"]["mean"] == 15 + 30
    assert (runs["scrambled"]["test_accuracy"]["mean"] < 0.5
            < runs["plain"]["test_accuracy"]["mean"])
    files = [tmp_path / name / "weights" / "seed-0.pt" for name in ("plain", "scrambled")]
    weights = [torch.load(file, weights_only=True)["state_dict"] for file in files]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    records = [json.loads(line) for line in (tmp_path / "plain" / "metrics.jsonl").open()]
    assert [r["self_labeled"] for r in records if r["phase"] == "gam"] == [0, 30, 0]
    # Both runs chose the same nodes, test nodes among them, never validation nodes.
    assert len(chosen) == 2 and torch.equal(chosen[0], chosen[1])
    assert test[chosen[0]].any() and not data.val_mask[chosen[0]].any()
