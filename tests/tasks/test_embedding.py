"""The ``embedding`` task (Graph-RISE): retrieval metrics against a brute-force NumPy
reference, the chunked full-softmax loss, the task's head, loss and metrics on
hand-built data, and the ``distance`` regularizer on the head's class scores."""

from __future__ import annotations

import math

import dgl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from zoo_plugins.tasks.embedding import full_cross_entropy
from zoo_plugins.tasks.retrieval import retrieval_metrics
from zoo_plugins.tasks.sampled_softmax import ClassifierHead

import zoo
from zoo.contracts import Batch, ModelOutput, RegularizerInput
from zoo.plugins import default_manager

METRICS = ("precision_at_{k}", "recall_at_{k}", "map_at_{k}", "triplet_accuracy")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def registry():
    return default_manager().registry


# -- retrieval metrics ------------------------------------------------------------------
def reference_metrics(queries, query_classes, index, index_classes, k):
    """Brute force, one query at a time, in float64."""
    q = np.asarray(queries, dtype=np.float64)
    x = np.asarray(index, dtype=np.float64)
    qc, xc = np.asarray(query_classes), np.asarray(index_classes)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    precision, recall, ap, triplet = [], [], [], []
    for vec, c in zip(q, qc):
        sims = x @ vec
        relevant = xc == c
        r = int(relevant.sum())
        if r == 0:
            continue  # nothing relevant in the index: the query is left out
        hits = relevant[np.argsort(-sims, kind="stable")[:k]].astype(float)
        precision.append(hits.sum() / k)
        recall.append(hits.sum() / r)
        ap.append(sum(hits[: j + 1].sum() / (j + 1) * hits[j] for j in range(len(hits)))
                  / min(k, r))
        pos, neg = sims[relevant], sims[~relevant]
        if len(neg):
            triplet.append(float((pos[:, None] > neg[None, :]).mean()))
    mean = lambda v: float(np.mean(v)) if v else 0.0  # noqa: E731
    return dict(zip([m.format(k=k) for m in METRICS],
                    [mean(precision), mean(recall), mean(ap), mean(triplet)]))


def random_problem(seed: int, index_counts: list[int], query_counts: list[int], dim: int = 6):
    g = torch.Generator().manual_seed(seed)
    index_classes = torch.cat([torch.full((n,), c) for c, n in enumerate(index_counts)])
    query_classes = torch.cat([torch.full((n,), c) for c, n in enumerate(query_counts)])
    index = torch.randn(len(index_classes), dim, generator=g, dtype=torch.float64)
    queries = torch.randn(len(query_classes), dim, generator=g, dtype=torch.float64)
    # Pull each class towards a direction of its own, so rankings are not pure noise.
    centers = torch.randn(max(len(index_counts), len(query_counts)), dim, generator=g,
                          dtype=torch.float64)
    index += 1.5 * centers[index_classes]
    queries += 1.5 * centers[query_classes]
    perm = torch.randperm(len(index_classes), generator=g)  # classes interleaved
    return queries, query_classes, index[perm], index_classes[perm]


def assert_matches_reference(found, queries, query_classes, index, index_classes, k):
    expected = reference_metrics(queries.numpy(), query_classes.numpy(), index.numpy(),
                                 index_classes.numpy(), k)
    assert set(found) == set(expected)
    for name, value in expected.items():
        assert found[name].dim() == 0
        assert float(found[name]) == pytest.approx(value, abs=1e-6), name


@pytest.mark.parametrize("k, chunk", [(10, 7), (3, 1), (10, 1024), (1, 5)])
def test_retrieval_metrics_match_brute_force(k, chunk):
    # Uneven classes: 20 / 5 / 1 / 12 index items (R above and below k); the queries'
    # class 4 has no index item, so its queries are left out of every mean.
    q, qc, x, xc = random_problem(1, [20, 5, 1, 12], [6, 4, 3, 8, 5])
    found = retrieval_metrics(q, qc, x, xc, k=k, chunk=chunk)
    assert_matches_reference(found, q, qc, x, xc, k)


def test_a_query_class_absent_from_the_index_is_left_out():
    q, qc, x, xc = random_problem(2, [8, 9], [5, 5, 7])
    with_absent = retrieval_metrics(q, qc, x, xc, k=4, chunk=3)
    keep = qc < 2
    without = retrieval_metrics(q[keep], qc[keep], x, xc, k=4, chunk=3)
    for name in with_absent:
        torch.testing.assert_close(with_absent[name], without[name])


def test_k_larger_than_the_index():
    q, qc, x, xc = random_problem(3, [3, 2, 1], [4, 4, 4])  # 6 index items, k = 10
    found = retrieval_metrics(q, qc, x, xc, k=10, chunk=5)
    assert_matches_reference(found, q, qc, x, xc, 10)
    # Every relevant item is within the top 10 of a 6-item index.
    assert float(found["recall_at_10"]) == pytest.approx(1.0)
    assert float(found["map_at_10"]) <= 1.0


def test_queries_whose_every_index_item_is_relevant_have_no_triplets():
    q, qc, x, xc = random_problem(4, [7], [3, 2])  # class 0 only in the index
    found = retrieval_metrics(q, qc, x, xc, k=5)
    assert float(found["precision_at_5"]) == pytest.approx(1.0)
    assert float(found["triplet_accuracy"]) == 0.0  # nothing could be measured


def test_empty_queries_or_index_give_zeros():
    x, xc = torch.randn(5, 3), torch.zeros(5, dtype=torch.long)
    for found in (retrieval_metrics(x[:0], xc[:0], x, xc, k=3),
                  retrieval_metrics(x, xc, x[:0], xc[:0], k=3)):
        assert all(float(v) == 0.0 for v in found.values())


def test_perfectly_separated_embedding_scores_one():
    classes, dim = 4, 4
    g = torch.Generator().manual_seed(0)
    index_classes = torch.arange(classes).repeat_interleave(12)
    query_classes = torch.arange(classes).repeat_interleave(5)
    eye = torch.eye(dim)
    index = eye[index_classes] + 1e-3 * torch.randn(len(index_classes), dim, generator=g)
    queries = eye[query_classes] + 1e-3 * torch.randn(len(query_classes), dim, generator=g)
    found = retrieval_metrics(queries, query_classes, index, index_classes, k=10, chunk=6)
    for name in ("precision_at_10", "map_at_10", "triplet_accuracy"):
        assert float(found[name]) == pytest.approx(1.0), name
    assert float(found["recall_at_10"]) == pytest.approx(10 / 12)


def test_random_embedding_has_triplet_accuracy_near_one_half():
    g = torch.Generator().manual_seed(0)
    index, queries = torch.randn(400, 16, generator=g), torch.randn(200, 16, generator=g)
    found = retrieval_metrics(queries, torch.randint(4, (200,), generator=g), index,
                              torch.randint(4, (400,), generator=g), k=10, chunk=64)
    assert abs(float(found["triplet_accuracy"]) - 0.5) < 0.03
    assert abs(float(found["precision_at_10"]) - 0.25) < 0.05


# -- the chunked full softmax -------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_full_cross_entropy_over_class_chunks_is_the_full_softmax(bias):
    head = ClassifierHead(6, 23, bias=bias)  # 23 classes: the last chunk of 7 is short
    if bias:
        head.bias.data.normal_()
    emb, labels = 3 * torch.randn(11, 6), torch.randint(23, (11,))
    torch.testing.assert_close(full_cross_entropy(head, emb, labels, chunk=7),
                               F.cross_entropy(head.scores(emb), labels).detach())


# -- the task ------------------------------------------------------------------------------
def make_data(n: int = 30, num_classes: int = 3, dim: int = 8, extra=None) -> zoo.GraphData:
    labels = torch.arange(n) % num_classes
    part = torch.arange(n) % 5  # 0-2 train, 3 val, 4 test
    return zoo.GraphData(graph=None, features=torch.randn(n, dim), labels=labels,
                         train_mask=part < 3, val_mask=part == 3, test_mask=part == 4,
                         num_classes=num_classes, name="hand-made", extra=extra or {})


def test_task_output_size_and_head(registry):
    task = registry.build("task", {"name": "embedding", "embedding_size": 8})
    data = make_data(num_classes=5)
    assert task.output_size(data) == 8
    head = task.head(data, 8)
    assert isinstance(head, ClassifierHead)
    assert head.weight.shape == (5, 8) and head.bias.shape == (5,)
    assert task.monitor == "val_precision_at_10" and task.mode == "max"


@pytest.mark.parametrize("loss_norm", [None, 10.0])
def test_task_loss_is_the_heads_cross_entropy_of_the_loss_rows(registry, loss_norm):
    task = registry.build("task", {"name": "embedding", "embedding_size": 4})
    data = make_data(n=9, num_classes=3, dim=4)
    head = task.head(data, 4)
    head.bias.data.normal_()
    emb = torch.randn(9, 4, requires_grad=True)
    rows = torch.tensor([0, 2, 3, 7])
    batch = Batch(graph=None, inputs=data.features, node_ids=torch.arange(9),
                  labels=data.labels, labeled=torch.ones(9, dtype=torch.bool),
                  loss_rows=rows, loss_norm=loss_norm)
    got = task.loss(ModelOutput(emb, emb, head), batch)
    scores = emb[rows] @ head.weight.T + head.bias
    if loss_norm is None:
        expected = F.cross_entropy(scores, data.labels[rows])
    else:
        expected = F.cross_entropy(scores, data.labels[rows], reduction="sum") / loss_norm
    torch.testing.assert_close(got, expected)
    got.backward()  # trains both the embedding and the class weights
    assert emb.grad is not None and head.weight.grad is not None


def test_task_loss_without_a_head_is_a_contract_error(registry):
    task = registry.build("task", {"name": "embedding"})
    data = make_data(n=4)
    batch = Batch(graph=None, inputs=data.features, node_ids=torch.arange(4),
                  labels=data.labels, labeled=torch.ones(4, dtype=torch.bool),
                  loss_rows=torch.arange(4))
    with pytest.raises(zoo.ContractError, match="classifier head"):
        task.loss(ModelOutput(torch.randn(4, 8), torch.randn(4, 8)), batch)


@pytest.mark.parametrize("k", [10, 5])
def test_task_evaluate_returns_every_metric(registry, k):
    task = registry.build("task", {"name": "embedding", "embedding_size": 8, "k": k})
    assert task.monitor == f"val_precision_at_{k}"
    assert task.report == (f"test_precision_at_{k}", f"test_map_at_{k}", "test_accuracy")
    data = make_data()
    head = task.head(data, 8)
    emb = torch.randn(30, 8)
    metrics = task.evaluate(ModelOutput(emb, emb, head), data)
    expected = {f"{split}_{m.format(k=k)}" for split in ("val", "test") for m in METRICS}
    expected |= {"train_accuracy", "val_accuracy", "test_accuracy", "val_loss"}
    assert set(metrics) == expected
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in metrics.values())
    # The retrieval metrics are those of the split's items against the training items.
    train, val = data.train_mask, data.val_mask
    found = retrieval_metrics(emb[val], data.labels[val], emb[train], data.labels[train], k=k)
    for name, value in found.items():
        torch.testing.assert_close(metrics[f"val_{name}"], value)
    with torch.no_grad():
        scores = head.scores(emb)
    for split, mask in (("train", train), ("val", val), ("test", data.test_mask)):
        accuracy = (scores[mask].argmax(1) == data.labels[mask]).float().mean()
        torch.testing.assert_close(metrics[f"{split}_accuracy"], accuracy)
    torch.testing.assert_close(metrics["val_loss"],
                               F.cross_entropy(scores[val], data.labels[val]))


def index_data(use_train_items: bool) -> zoo.GraphData:
    """Queries (validation and test) of class 1 along e1; the training split holds
    class-0 items along e0 (labeled) and class-1 items near e1 (unlabeled: only in
    ``train_items``); item 0, of class 0, sits exactly on e1 and is labeled but outside
    ``train_items``: it would be every query's nearest neighbour."""
    e0, e1 = torch.eye(4)[0], torch.eye(4)[1]
    g = torch.Generator().manual_seed(0)
    noise = lambda n: 0.05 * torch.randn(n, 4, generator=g)  # noqa: E731
    emb = torch.cat([e1[None], e0 + noise(4), e1 + 0.3 * torch.eye(4)[2] + noise(4),
                     e1 + noise(6)])
    labels = torch.tensor([0] * 5 + [1] * 10)
    n = len(labels)
    train_mask = torch.zeros(n, dtype=torch.bool)
    train_mask[:5] = True  # item 0 and the class-0 items
    train_items = torch.zeros(n, dtype=torch.bool)
    train_items[1:9] = True  # class-0 items and the unlabeled class-1 items
    val_mask, test_mask = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    val_mask[9:12], test_mask[12:] = True, True
    data = zoo.GraphData(graph=None, features=emb, labels=labels, train_mask=train_mask,
                         val_mask=val_mask, test_mask=test_mask, num_classes=2,
                         extra={"train_items": train_items} if use_train_items else {})
    return data


def test_the_index_is_the_whole_training_split_from_train_items(registry):
    task = registry.build("task", {"name": "embedding", "embedding_size": 4, "k": 1})
    data = index_data(use_train_items=True)
    head = task.head(data, 4)
    out = ModelOutput(data.features, data.features, head)
    metrics = task.evaluate(out, data)
    for split in ("val", "test"):
        # Item 0 is not indexed; the unlabeled class-1 training items are.
        assert float(metrics[f"{split}_precision_at_1"]) == 1.0
        assert float(metrics[f"{split}_map_at_1"]) == 1.0
        assert float(metrics[f"{split}_triplet_accuracy"]) == 1.0
    # Without train_items the index is train_mask: item 0 first, no class-1 item at all.
    fallback = task.evaluate(out, index_data(use_train_items=False))
    assert float(fallback["val_precision_at_1"]) == 0.0


def test_evaluate_ranks_by_classes_when_labels_are_finer(registry):
    task = registry.build("task", {"name": "embedding", "embedding_size": 8, "k": 3})
    data = make_data(num_classes=6)
    data.extra["classes"] = data.labels // 2  # fine labels 2c, 2c+1 -> class c
    emb = torch.randn(30, 8)
    metrics = task.evaluate(ModelOutput(emb, emb, task.head(data, 8)), data)
    classes, train, test = data.extra["classes"], data.train_mask, data.test_mask
    found = retrieval_metrics(emb[test], classes[test], emb[train], classes[train], k=3)
    for name, value in found.items():
        torch.testing.assert_close(metrics[f"test_{name}"], value)


# -- the distance regularizer on the head's class scores ----------------------------------
# Edges 0->1 (w 1), 1->2 (w 2), 2->0 (w 0.5).
SRC, DST, WEIGHT = [0, 1, 2], [1, 2, 0], [1.0, 2.0, 0.5]


def three_node_input(head) -> RegularizerInput:
    g = dgl.graph((torch.tensor(SRC), torch.tensor(DST)), num_nodes=3)
    g.edata["weight"] = torch.tensor(WEIGHT)
    logits = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.5]])
    return RegularizerInput(graph=g, logits=logits, embedding=torch.zeros(3, 5),
                            labels=torch.zeros(3, dtype=torch.long),
                            labeled=torch.zeros(3, dtype=torch.bool),
                            node_ids=torch.arange(3), head=head)


def test_distance_on_scores_uses_the_heads_class_distribution(registry):
    head = ClassifierHead(2, 3)
    weight = [[1.0, -1.0], [0.5, 2.0], [-2.0, 0.0]]
    bias = [0.1, -0.2, 0.3]
    with torch.no_grad():
        head.weight.copy_(torch.tensor(weight))
        head.bias.copy_(torch.tensor(bias))
    reg = registry.build("regularizer", {"name": "distance", "multiplier": 0.5,
                                         "target": "scores", "transform": "softmax",
                                         "distance": "kl_divergence"})
    inp = three_node_input(head)
    value = reg(inp)

    def probs(row):
        scores = [sum(w * x for w, x in zip(wrow, row)) + b for wrow, b in zip(weight, bias)]
        z = sum(math.exp(s) for s in scores)
        return [math.exp(s) / z for s in scores]

    p = [probs(row) for row in inp.logits.tolist()]
    kl = lambda a, b: sum(x * math.log(x + 1e-7) - x * math.log(y + 1e-7)  # noqa: E731
                          for x, y in zip(a, b))
    expected = 0.5 * sum(w * kl(p[u], p[v]) for u, v, w in zip(SRC, DST, WEIGHT)) / sum(WEIGHT)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    # Not the same as regularizing the 2-wide embedding itself.
    on_logits = registry.build("regularizer", {"name": "distance", "multiplier": 0.5,
                                               "transform": "softmax",
                                               "distance": "kl_divergence"})(inp)
    assert on_logits.item() != pytest.approx(expected, rel=1e-3)


def test_distance_on_scores_without_a_head_is_a_config_error(registry):
    reg = registry.build("regularizer", {"name": "distance", "target": "scores",
                                         "transform": "softmax", "distance": "kl_divergence"})
    with pytest.raises(zoo.ConfigError, match="target 'scores'"):
        reg(three_node_input(None))


def test_triplet_accuracy_counts_ties_as_half_whatever_the_index_order():
    index = torch.ones(6, 4)
    classes = torch.tensor([0, 0, 0, 1, 1, 1])
    for query_class in (0, 1):
        found = retrieval_metrics(torch.ones(2, 4), torch.full((2,), query_class), index,
                                  classes, k=3)
        assert float(found["triplet_accuracy"]) == pytest.approx(0.5)
