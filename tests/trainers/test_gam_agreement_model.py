"""The GAM agreement model: aggregations, exact balanced pair sampling, and training on
labeled pairs through the engine."""

from __future__ import annotations

import pytest
import torch

from zoo.engine import Engine
from zoo_plugins.encoders.mlp import MLP
from zoo_plugins.trainers.agreement_model import (
    AGGREGATIONS,
    AgreementModel,
    edge_and_random_agreement_pairs,
    graph_agreement_pairs,
    propagate_features,
    random_agreement_pairs,
    sample_pairs_by_agreement,
    train_agreement_model,
)


def _model(aggregation: str = "dist", in_dim: int = 6) -> AgreementModel:
    encoder = MLP(in_dim, None, hidden=8, layers=1, dropout=0.0, activation="leaky_relu")
    return AgreementModel(encoder, aggregation=aggregation, projection_dim=5)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_every_aggregation_gives_one_logit_per_pair(aggregation):
    torch.manual_seed(0)
    model = _model(aggregation)
    x = torch.randn(10, 6)
    src, dst = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    logits = model(x, src, dst)
    assert logits.shape == (3,)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    if aggregation.endswith(("dist", "add")):  # symmetric aggregations
        assert torch.allclose(model(x, dst, src), logits)


def test_sparse_features_are_accepted():
    torch.manual_seed(0)
    x = torch.randn(10, 6)
    model = _model().eval()
    dense = model(x, torch.tensor([0, 1]), torch.tensor([2, 3]))
    sparse = model(x.to_sparse(), torch.tensor([0, 1]), torch.tensor([2, 3]))
    assert torch.allclose(dense, sparse, atol=1e-6)


def test_sampled_pairs_agree_or_disagree_exactly():
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 0, 2, 9, 9])
    nodes = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])  # 8, 9 are not candidates
    i, j = sample_pairs_by_agreement(nodes, labels, 500, agree=True)
    assert torch.equal(labels[i], labels[j])
    assert torch.isin(i, nodes).all() and torch.isin(j, nodes).all()
    i, j = sample_pairs_by_agreement(nodes, labels, 500, agree=False)
    assert (labels[i] != labels[j]).all()
    assert torch.isin(j, nodes).all()
    assert set(j.tolist()) == set(nodes.tolist())  # every node can be a partner


def test_graph_pairs_use_labeled_edges_balanced_with_random_negatives():
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    labeled = torch.tensor([True, True, True, True, True, True, False, False])
    # All labeled-labeled edges agree; edges to 6, 7 (unlabeled) must be ignored.
    src = torch.tensor([0, 1, 1, 2, 3, 4, 5, 6, 0, 1])
    dst = torch.tensor([1, 0, 2, 1, 4, 3, 6, 5, 2, 7])
    pairs = graph_agreement_pairs(src, dst, labels, labeled, val_ratio=0.0)
    assert pairs.val_target.numel() == 0
    assert pairs.pos.shape[0] == 7 and pairs.neg.shape[0] == 7
    assert (labels[pairs.neg[:, 0]] != labels[pairs.neg[:, 1]]).all()
    assert labeled[pairs.neg].all()
    s, d, target = pairs.batch(8)
    assert target.tolist() == [1.0] * 4 + [0.0] * 4
    assert torch.equal(labels[s] == labels[d], target.bool())


def test_graph_pairs_hold_out_a_share_of_the_edges():
    torch.manual_seed(0)
    n = 50
    labels = torch.arange(n) % 3
    src = torch.randint(n, (400,))
    dst = torch.randint(n, (400,))
    keep = src != dst
    pairs = graph_agreement_pairs(src[keep], dst[keep], labels, torch.ones(n, dtype=torch.bool),
                                  val_ratio=0.1)
    assert pairs.val_target.numel() == int(int(keep.sum()) * 0.1)
    assert torch.equal(pairs.val_target.bool(), labels[pairs.val_src] == labels[pairs.val_dst])


def test_random_pairs_hold_out_nodes():
    torch.manual_seed(0)
    labels = torch.arange(100) % 4
    labeled = torch.ones(100, dtype=torch.bool)
    pairs = random_agreement_pairs(labels, labeled, val_ratio=0.1)
    train_nodes = pairs.resample[0]
    val_nodes = torch.unique(torch.cat([pairs.val_src, pairs.val_dst]))
    assert not torch.isin(val_nodes, train_nodes).any()
    assert pairs.val_target.mean().item() == pytest.approx(0.5)
    s, d, target = pairs.batch(64)
    assert torch.isin(s, train_nodes).all() and torch.isin(d, train_nodes).all()
    assert torch.equal(labels[s] == labels[d], target.bool())


def test_edges_and_random_pairs_share_each_batch():
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    labeled = torch.tensor([True, True, True, True, True, False])
    src, dst = torch.tensor([0, 2, 0]), torch.tensor([1, 3, 2])  # two agree, one not
    pairs = edge_and_random_agreement_pairs(src, dst, labels, labeled, val_ratio=0.0)
    s, d, target = pairs.batch(16)
    # Half the batch is for the edge pools, but they give at most their size (2 + 2).
    assert target.tolist() == [1.0] * 6 + [0.0] * 6
    assert torch.equal(labels[s] == labels[d], target.bool())
    assert labeled[s].all() and labeled[d].all()
    assert set(zip(s[:2].tolist(), d[:2].tolist())) <= {(0, 1), (2, 3)}  # edge positives


def test_propagate_features_is_normalized_neighbourhood_averaging():
    import dgl

    # Path 0 - 1 - 2; with self-loops the degrees are 2, 3, 2.
    graph = dgl.graph((torch.tensor([0, 1, 1, 2]), torch.tensor([1, 0, 2, 1])))
    x = torch.tensor([[1.0], [0.0], [0.0]])
    once = propagate_features(graph, x.to_sparse(), 1)
    assert torch.allclose(once, torch.tensor([[0.5], [1 / 6 ** 0.5], [0.0]]))
    assert torch.equal(propagate_features(graph, x, 0), x)


def test_training_learns_agreement_of_separable_classes():
    torch.manual_seed(0)
    n, classes = 120, 3
    labels = torch.arange(n) % classes
    x = torch.nn.functional.one_hot(labels, 6).float() * 2 + 0.3 * torch.randn(n, 6)
    labeled = torch.ones(n, dtype=torch.bool)
    model = _model()
    pairs = random_agreement_pairs(labels, labeled, val_ratio=0.2)
    records = []
    accuracy, result = train_agreement_model(
        model, x, pairs, Engine(log=records.append),
        optimizer=lambda params: torch.optim.Adam(params, lr=0.01), batch_size=64, steps=400,
        patience=200, eval_every=10, phase="agr")
    assert accuracy == result.best["agreement_val_accuracy"]
    assert accuracy >= 0.95
    assert records and records[0]["phase"] == "agr"
