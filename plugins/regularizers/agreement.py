"""Regularizer ``agreement``: the Graph Agreement Models loss (Stretcu et al., NeurIPS 2019).

For sampled node pairs (i, j), the classifier's output for j is pulled towards i's
label (labeled i) or i's prediction (unlabeled i), weighted by the agreement model's
belief that i and j share a label::

    loss = mean over pairs of  w_type * g(i, j) * || target_i - softmax(f(x_j)) ||^2

with pair types LL, LU, UU (L: labeled, U: unlabeled; the trainer's labeled set
includes self-labels) and weights ``reg_weight_ll/lu/uu``. LL pairs use the exact
agreement (1 when the two labels match, else 0) and no agreement model; LU pairs put
the labeled node on the side of the true label, so an unlabeled node's label is never
read (the fix of the reference implementation's label-leak bug, its PR #82); UU pairs
compare two predictions, with gradients through both.

The ``gam`` trainer owns the agreement model and hands it over with
:meth:`AgreementRegularizer.set_agreement_model`; until then (the baseline iteration)
the term is zero. The agreement model is frozen while the classifier trains, so the
node embeddings it needs are computed once per hand-over, not per step.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.schema import Ge


class AgreementRegularizer(nn.Module):
    """Graph Agreement Models loss: agreement-weighted squared distance on LL/LU/UU pairs.

    Pairs come from the graph's edges (``use_graph: true``, GAM) or are random pairs of
    nodes of each type (``use_graph: false``, the paper's GAM*; the ``gam`` trainer then
    also trains its agreement model on random labeled pairs, unless told otherwise).

    Args:
        reg_weight_ll: weight of labeled-labeled pairs (agreement is exact: labels equal).
        reg_weight_lu: weight of labeled-unlabeled pairs.
        reg_weight_uu: weight of unlabeled-unlabeled pairs.
        num_pairs_reg: pairs sampled per type and step (with replacement); the loss is
            the mean over all sampled pairs, as in the reference implementation. null:
            every edge, every step (the expectation of the sampled loss; needs use_graph).
        use_graph: sample pairs from the graph's edges (GAM); false: random pairs (GAM*).
        penalize_neg_agr: use max(agreement - 0.5, 0) as the weight, so that only pairs
            believed to agree are pulled together (the reference's option).
    """

    def __init__(self, *, reg_weight_ll: Annotated[float, Ge(0)] = 0.0,
                 reg_weight_lu: Annotated[float, Ge(0)] = 0.1,
                 reg_weight_uu: Annotated[float, Ge(0)] = 0.05,
                 num_pairs_reg: Annotated[int, Ge(1)] | None = 128,
                 use_graph: bool = True, penalize_neg_agr: bool = False) -> None:
        super().__init__()
        if num_pairs_reg is None and not use_graph:
            raise zoo.ConfigError("regularizer 'agreement': num_pairs_reg null (every edge) needs "
                              "use_graph: true; give a number of random pairs instead")
        self.weights = (float(reg_weight_ll), float(reg_weight_lu), float(reg_weight_uu))
        self.num_pairs_reg = num_pairs_reg
        self.use_graph = use_graph
        self.penalize_neg_agr = penalize_neg_agr
        self.agreement_model: Any = None
        self._embeddings: torch.Tensor | None = None
        self._edges: tuple[Any, torch.Tensor, torch.Tensor] | None = None  # (graph, src, dst)
        self._pools: tuple[tuple, list] | None = None

    def set_agreement_model(self, model: Any, features: torch.Tensor | None = None) -> None:
        """Use ``model`` (an ``AgreementModel``; None: no agreement term) from now on.

        ``features`` are the node features the model reads (one row per dataset node);
        it embeds them once here (eval mode, no gradients), since it stays fixed while
        the classifier trains.
        """
        self.agreement_model = model
        self._embeddings = None
        if model is not None:
            if features is None:
                raise ValueError("set_agreement_model needs the node features with a model")
            was_training = model.training
            model.eval()
            with torch.no_grad():
                self._embeddings = model.encode(features)
            model.train(was_training)

    # -- pairs ------------------------------------------------------------------------
    def _graph_edges(self, graph: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if self._edges is None or self._edges[0] is not graph:
            src, dst = graph.edges()
            keep = src != dst  # a self-loop says nothing about agreement
            self._edges = (graph, src[keep], dst[keep])
        return self._edges[1], self._edges[2]

    def _edge_pools(self, graph: Any, labeled: torch.Tensor,
                    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The LL, LU (labeled node left) and UU edges of ``graph``. On the whole graph
        the labeled set changes only between co-training phases, so they are kept until
        it does (finding them costs a host synchronisation)."""
        key = (graph, labeled, labeled._version)  # held, so their ids cannot be reused
        if self._pools is not None and all(a is b for a, b in zip(self._pools[0][:2], key[:2])) \
                and self._pools[0][2] == key[2]:
            return self._pools[1]
        src, dst = self._graph_edges(graph)
        ls, ld = labeled[src], labeled[dst]
        # Orient LU edges labeled -> unlabeled; the graph holds both directions of
        # an undirected edge, so each such edge appears twice, like the reference's.
        groups = [(ls & ld, src, dst), (ls & ~ld, src, dst), (~ls & ld, dst, src),
                  (~ls & ~ld, src, dst)]
        pools = []
        for mask, left, right in groups:
            idx = mask.nonzero().squeeze(1)
            pools.append((left[idx], right[idx]))
        pools = [pools[0], (torch.cat([pools[1][0], pools[2][0]]),
                            torch.cat([pools[1][1], pools[2][1]])), pools[3]]
        self._pools = (key, pools)
        return pools

    def sample_pairs(self, graph: Any, labeled: torch.Tensor,
                     ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``num_pairs_reg`` (left, right) row pairs of each type LL, LU, UU (empty when
        there is none; every edge of the type when ``num_pairs_reg`` is None); in LU
        pairs the labeled node is on the left."""
        n = self.num_pairs_reg
        if self.use_graph:
            pools = self._edge_pools(graph, labeled)
            if n is None:
                return pools
            out = []
            for left, right in pools:
                if left.numel() == 0:
                    out.append((left, right))
                    continue
                pick = torch.randint(left.numel(), (n,), device=left.device)
                out.append((left[pick], right[pick]))
            return out
        assert n is not None  # checked in __init__: random pairs need a count
        lab = labeled.nonzero().squeeze(1)
        unl = (~labeled).nonzero().squeeze(1)
        out = []
        for a, b in ((lab, lab), (lab, unl), (unl, unl)):
            if a.numel() == 0 or b.numel() == 0:
                out.append((a[:0], b[:0]))
                continue
            out.append((a[torch.randint(a.numel(), (n,), device=a.device)],
                        b[torch.randint(b.numel(), (n,), device=b.device)]))
        return out

    @torch.no_grad()
    def agreement(self, left_ids: torch.Tensor, right_ids: torch.Tensor) -> torch.Tensor:
        """The agreement model's probability that each pair of dataset nodes agrees."""
        h = self._embeddings
        return torch.sigmoid(self.agreement_model.score(h[left_ids], h[right_ids]))

    # -- loss -------------------------------------------------------------------------
    def forward(self, inp: zoo.RegularizerInput) -> torch.Tensor:
        """The agreement loss for one step (zero without an agreement model)."""
        logits = inp.logits
        if self.agreement_model is None or not any(self.weights):
            return logits.new_zeros(())
        labeled = inp.labeled.bool()
        probs = torch.softmax(logits, dim=-1)
        num_classes = logits.shape[-1]
        (ll_l, ll_r), (lu_l, lu_r), (uu_l, uu_r) = self.sample_pairs(inp.graph, labeled)
        labels = inp.labels
        ids = inp.node_ids
        lefts = [F.one_hot(labels[ll_l], num_classes).to(probs.dtype),
                 F.one_hot(labels[lu_l], num_classes).to(probs.dtype), probs[uu_l]]
        rights = [probs[ll_r], probs[lu_r], probs[uu_r]]
        agreements = [(labels[ll_l] == labels[ll_r]).to(probs.dtype),
                      self.agreement(ids[lu_l], ids[lu_r]) if lu_l.numel() else probs.new_zeros(0),
                      self.agreement(ids[uu_l], ids[uu_r]) if uu_l.numel() else probs.new_zeros(0)]
        if self.penalize_neg_agr:
            agreements = [torch.relu(a - 0.5) for a in agreements]
        # The mean over all sampled pairs, as in the reference: every pair type present
        # gets the same number of pairs, so this is the average of per-type means (which
        # is also what "all pairs" computes, whatever the number of edges of each type).
        total, types = logits.new_zeros(()), 0
        for w, left, right, agree in zip(self.weights, lefts, rights, agreements):
            if agree.numel():
                types += 1
                if w:
                    total = total + w * (agree * (left - right).pow(2).sum(-1)).mean()
        return total / max(types, 1)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("regularizer", "agreement", AgreementRegularizer)
