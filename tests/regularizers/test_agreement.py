"""The ``agreement`` regularizer (Graph Agreement Models) against its closed form on
tiny graphs: exact LL agreement, LU orientation without label leaks, UU gradients."""

from __future__ import annotations

import dgl
import pytest
import torch

import zoo

from zoo.contracts import RegularizerInput
from zoo.errors import ConfigError
from zoo_plugins.regularizers.agreement import AgreementRegularizer


class ConstantAgreement(torch.nn.Module):
    """A stand-in agreement model: embeddings are the features, the logit their dot product."""

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def score(self, h_i: torch.Tensor, h_j: torch.Tensor) -> torch.Tensor:
        return (h_i * h_j).sum(-1)


FEATURES = torch.tensor([[1.0, 0.0], [0.5, 0.5], [1.0, 1.0], [-1.0, 2.0]])
LOGITS = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.5], [-0.5, 0.3]])


def _input(graph: dgl.DGLGraph, labels: list[int], labeled: list[bool],
           logits: torch.Tensor = LOGITS) -> RegularizerInput:
    n = graph.num_nodes()
    return RegularizerInput(graph=graph, logits=logits, embedding=logits,
                            labels=torch.tensor(labels), labeled=torch.tensor(labeled),
                            node_ids=torch.arange(n))


def _regularizer(**kw) -> AgreementRegularizer:
    reg = AgreementRegularizer(**{"num_pairs_reg": 16, **kw})
    reg.set_agreement_model(ConstantAgreement(), FEATURES)
    return reg


def _sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).sum()


def test_closed_form_one_edge_per_pair_type():
    # 0, 1 labeled; 2, 3 unlabeled. Edges: 0->1 (LL), 0->2 (LU), 2->3 (UU).
    graph = dgl.graph(([0, 0, 2], [1, 2, 3]), num_nodes=4)
    reg = _regularizer(reg_weight_ll=0.3, reg_weight_lu=0.7, reg_weight_uu=0.2)
    value = reg(_input(graph, [0, 0, 9, 9], [True, True, False, False]))
    p = torch.softmax(LOGITS, -1)
    onehot0 = torch.tensor([1.0, 0.0])
    g = torch.sigmoid((FEATURES[0] * FEATURES[2]).sum())
    g_uu = torch.sigmoid((FEATURES[2] * FEATURES[3]).sum())
    expected = (0.3 * 1.0 * _sq(onehot0, p[1]) + 0.7 * g * _sq(onehot0, p[2])
                + 0.2 * g_uu * _sq(p[2], p[3])) / 3
    assert torch.allclose(value, expected, atol=1e-6)


def test_labeled_pairs_use_exact_agreement():
    graph = dgl.graph(([0], [1]), num_nodes=4)
    reg = _regularizer(reg_weight_ll=1.0, reg_weight_lu=0.0, reg_weight_uu=0.0)
    differ = reg(_input(graph, [0, 1, 0, 0], [True, True, False, False]))
    same = reg(_input(graph, [1, 1, 0, 0], [True, True, False, False]))
    assert differ.item() == 0.0  # labels differ: agreement 0, whatever g would say
    p1 = torch.softmax(LOGITS[1], -1)
    assert torch.allclose(same, _sq(torch.tensor([0.0, 1.0]), p1))


def test_unlabeled_source_edge_is_oriented_and_never_reads_its_label():
    # Only the edge 2 -> 0 (unlabeled -> labeled): the labeled node 0 gives the target.
    graph = dgl.graph(([2], [0]), num_nodes=4)
    reg = _regularizer(reg_weight_lu=1.0, reg_weight_uu=0.0)
    a = reg(_input(graph, [1, 0, 0, 0], [True, True, False, False]))
    b = reg(_input(graph, [1, 0, 1, 0], [True, True, False, False]))  # node 2's label
    p = torch.softmax(LOGITS, -1)
    g = torch.sigmoid((FEATURES[0] * FEATURES[2]).sum())
    assert torch.allclose(a, g * _sq(torch.tensor([0.0, 1.0]), p[2]), atol=1e-6)
    assert torch.equal(a, b)


def test_uu_pairs_send_gradients_to_both_nodes():
    graph = dgl.graph(([2], [3]), num_nodes=4)
    reg = _regularizer(reg_weight_uu=1.0)
    logits = LOGITS.clone().requires_grad_(True)
    reg(_input(graph, [0, 0, 0, 0], [True, True, False, False], logits)).backward()
    grad = logits.grad.abs().sum(-1)
    assert grad[2] > 0 and grad[3] > 0 and grad[0] == 0 and grad[1] == 0


def test_zero_without_agreement_model():
    graph = dgl.graph(([0, 2], [2, 3]), num_nodes=4)
    reg = AgreementRegularizer(reg_weight_lu=1.0, reg_weight_uu=1.0)
    assert reg(_input(graph, [0, 0, 0, 0], [True, True, False, False])).item() == 0.0
    reg.set_agreement_model(ConstantAgreement(), FEATURES)
    assert reg(_input(graph, [0, 0, 0, 0], [True, True, False, False])).item() > 0.0
    reg.set_agreement_model(None)
    assert reg(_input(graph, [0, 0, 0, 0], [True, True, False, False])).item() == 0.0


def test_penalize_neg_agr_drops_pairs_believed_to_disagree():
    graph = dgl.graph(([2], [3]), num_nodes=4)
    features = FEATURES.clone()
    features[3] = torch.tensor([-1.0, -1.0])  # dot product with node 2: -2 -> g < 0.5
    reg = AgreementRegularizer(reg_weight_uu=1.0, penalize_neg_agr=True)
    reg.set_agreement_model(ConstantAgreement(), features)
    assert reg(_input(graph, [0, 0, 0, 0], [True, True, False, False])).item() == 0.0
    features[3] = torch.tensor([1.0, 1.0])  # dot product 2 -> g = 0.88
    reg.set_agreement_model(ConstantAgreement(), features)
    value = reg(_input(graph, [0, 0, 0, 0], [True, True, False, False]))
    p = torch.softmax(LOGITS, -1)
    expected = (torch.sigmoid(torch.tensor(2.0)) - 0.5) * _sq(p[2], p[3])
    assert torch.allclose(value, expected, atol=1e-6)


def test_random_pairs_without_graph_come_from_the_right_groups():
    torch.manual_seed(0)
    labeled = torch.tensor([True, False, True, False, False, True])
    reg = AgreementRegularizer(use_graph=False, num_pairs_reg=200)
    (ll_l, ll_r), (lu_l, lu_r), (uu_l, uu_r) = reg.sample_pairs(None, labeled)
    assert labeled[ll_l].all() and labeled[ll_r].all()
    assert labeled[lu_l].all() and not labeled[lu_r].any()
    assert not labeled[uu_l].any() and not labeled[uu_r].any()
    assert ll_l.numel() == lu_l.numel() == uu_l.numel() == 200


def test_graph_pairs_follow_the_edges():
    torch.manual_seed(0)
    src = torch.tensor([0, 1, 1, 2, 3, 4])
    dst = torch.tensor([1, 0, 2, 1, 4, 3])
    graph = dgl.graph((src, dst), num_nodes=5)
    labeled = torch.tensor([True, True, False, False, False])
    reg = AgreementRegularizer(num_pairs_reg=50)
    (ll_l, ll_r), (lu_l, lu_r), (uu_l, uu_r) = reg.sample_pairs(graph, labeled)
    edges = set(zip(src.tolist(), dst.tolist()))
    for left, right in ((ll_l, ll_r), (lu_l, lu_r), (uu_l, uu_r)):
        assert all((a, b) in edges or (b, a) in edges for a, b in zip(left.tolist(),
                                                                      right.tolist()))
    assert set(zip(lu_l.tolist(), lu_r.tolist())) == {(1, 2)}  # 2->1 flipped to 1->2
    assert set(zip(uu_l.tolist(), uu_r.tolist())) == {(3, 4), (4, 3)}


def test_mean_counts_every_sampled_pair():
    # LL pairs count in the mean even with weight 0, as in the reference implementation.
    graph = dgl.graph(([0, 0], [1, 2]), num_nodes=4)
    with_ll = _regularizer(reg_weight_lu=1.0)(_input(graph, [0, 0, 0, 0],
                                                      [True, True, False, False]))
    graph_lu = dgl.graph(([0], [2]), num_nodes=4)
    only_lu = _regularizer(reg_weight_lu=1.0)(_input(graph_lu, [0, 0, 0, 0],
                                                      [True, True, False, False]))
    assert torch.allclose(with_ll, only_lu / 2)


@pytest.mark.parametrize("kw, message", [
    ({"reg_weight_lu": -1.0}, "reg_weight_lu: must be >= 0, got -1.0"),
    ({"num_pairs_reg": 0}, "num_pairs_reg: must be >= 1 or null, got 0"),
])
def test_bad_config_is_a_config_error(kw, message):
    with pytest.raises(ConfigError, match=message):
        zoo.default_registry().validate("regularizer", {"name": "agreement", **kw}, "r")
    with pytest.raises(ConfigError, match="needs use_graph: true"):
        AgreementRegularizer(num_pairs_reg=None, use_graph=False)


def test_all_pairs_is_the_expectation_of_sampling():
    # Two LU edges (0->2, 1->3) and one UU edge (2->3): null averages every edge of a type.
    graph = dgl.graph(([0, 1, 2], [2, 3, 3]), num_nodes=4)
    inp = _input(graph, [0, 1, 0, 0], [True, True, False, False])
    exact = _regularizer(num_pairs_reg=None, reg_weight_lu=1.0, reg_weight_uu=0.5)(inp)
    p = torch.softmax(LOGITS, -1)
    g = torch.sigmoid((FEATURES[[0, 1]] * FEATURES[[2, 3]]).sum(-1))
    lu = (g[0] * _sq(torch.tensor([1.0, 0.0]), p[2])
          + g[1] * _sq(torch.tensor([0.0, 1.0]), p[3])) / 2
    uu = torch.sigmoid((FEATURES[2] * FEATURES[3]).sum()) * _sq(p[2], p[3])
    assert torch.allclose(exact, (lu + 0.5 * uu) / 2, atol=1e-6)
    torch.manual_seed(0)
    sampled = _regularizer(num_pairs_reg=20000, reg_weight_lu=1.0, reg_weight_uu=0.5)(inp)
    assert torch.allclose(sampled, exact, rtol=0.02)


def test_all_pairs_needs_the_graph():
    with pytest.raises(ConfigError, match="use_graph"):
        AgreementRegularizer(num_pairs_reg=None, use_graph=False)
