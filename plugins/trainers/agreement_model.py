"""The agreement model of Graph Agreement Models (Stretcu et al., NeurIPS 2019) and its training.

The agreement model g(x_i, x_j) predicts the probability that nodes i and j share a
label. A shared encoder embeds both nodes, an aggregation merges the two embeddings
(element-wise squared difference by default, which makes g symmetric) and a predictor
turns the result into one logit. It learns from pairs of labeled nodes (the original
labels plus the classifier's self-labels): the graph's labeled-labeled edges, balanced
with random negative labeled pairs, or random labeled pairs when the graph is not used
(the paper's GAM* variant). A tenth of the pairs is held out to report its accuracy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from zoo.contracts import ModelOutput
from zoo.engine import Engine, FitResult
from zoo.schema import Ge, Kind, Lt
from zoo_plugins.layers import Linear, make_activation

Aggregation = Literal["dist", "add", "concat", "project_dist", "project_add", "project_concat"]
AGGREGATIONS: tuple[str, ...] = Aggregation.__args__  # type: ignore[attr-defined]
AgreementSource = Literal["auto", "edges", "random", "edges_and_random"]


@dataclass(frozen=True)
class AgreementOptions:
    """The agreement model of GAM and how it trains (the ``gam`` trainer's ``agreement``).

    Args:
        encoder: encoder section of the agreement model, shared by both nodes (built with
            no output size).
        aggregation: how the agreement model merges the two embeddings: 'dist'
            (element-wise squared difference), 'add', 'concat', or 'project_*' (each
            embedding first projected by a learned layer).
        projection_dim: output size of the projection for 'project_*' aggregations.
        predictor_hidden: hidden units of the agreement predictor (0: linear).
        optimizer: the agreement model's optimizer section (the reference's Adam at lr
            0.001 barely moves it from 0.5 on row-normalized features in 2000 steps).
        batch_size: pairs per agreement step (half agreeing, half not).
        steps: maximum optimizer steps of the agreement model per iteration.
        patience: stop after this many steps without a better held-out accuracy.
        eval_every: agreement steps between two evaluations.
        val_ratio: share of the labeled pairs (or nodes, without the graph) held out to
            measure the agreement model's accuracy.
        pairs: what the agreement model learns from: 'edges' (labeled-labeled edges,
            topped up with random disagreeing labeled pairs; the paper's GAM), 'random'
            (random labeled pairs; GAM*), 'edges_and_random' (both in every batch), or
            'auto' (edges, or random pairs when the agreement regularizer has use_graph
            false).
        propagation: average the features the agreement model sees over this many hops
            of the graph first (symmetric-normalized adjacency with self-loops, as SGC);
            0 gives it the raw node features, as in the paper.
    """

    encoder: Annotated[dict, Kind("encoder")] = field(default_factory=lambda: {
        "name": "mlp", "hidden": 128, "layers": 1, "dropout": 0.0, "activation": "leaky_relu"})
    aggregation: Aggregation = "dist"
    projection_dim: Annotated[int, Ge(1)] = 64
    predictor_hidden: Annotated[int, Ge(0)] = 0
    optimizer: Annotated[dict, Kind("optimizer")] = field(default_factory=lambda: {
        "name": "adam", "lr": 0.01, "weight_decay": 0.0})
    batch_size: Annotated[int, Ge(2)] = 128
    steps: Annotated[int, Ge(1)] = 2000
    patience: Annotated[int, Ge(1)] = 500
    eval_every: Annotated[int, Ge(1)] = 10
    val_ratio: Annotated[float, Ge(0), Lt(1)] = 0.1
    pairs: AgreementSource = "auto"
    propagation: Annotated[int, Ge(0)] = 0


class AgreementModel(nn.Module):
    """Predicts whether two nodes share a label: shared encoder, aggregation, predictor.

    ``project_*`` aggregations first map each embedding through a learned projection
    (a linear layer and ``activation``) shared by both nodes; ``predictor_hidden`` > 0
    puts one hidden layer in the predictor, otherwise it is linear.
    """

    def __init__(self, encoder: nn.Module, *, aggregation: str = "dist",
                 projection_dim: int = 64, predictor_hidden: int = 0,
                 activation: str = "leaky_relu") -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}; use one of {AGGREGATIONS}")
        self.encoder = encoder
        self.aggregation = aggregation
        dim = int(encoder.out_dim)
        self.projection: nn.Module | None = None
        if aggregation.startswith("project_"):
            self.projection = nn.Sequential(Linear(dim, projection_dim),
                                            make_activation(activation))
            dim = projection_dim
        in_dim = 2 * dim if aggregation.endswith("concat") else dim
        if predictor_hidden > 0:
            self.predictor = nn.Sequential(Linear(in_dim, predictor_hidden),
                                           make_activation(activation),
                                           Linear(predictor_hidden, 1))
        else:
            self.predictor = Linear(in_dim, 1)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """One embedding per row of ``features`` (projected for ``project_*``)."""
        out = self.encoder(features)
        h = out.logits if isinstance(out, ModelOutput) else out
        return self.projection(h) if self.projection is not None else h

    def score(self, h_i: torch.Tensor, h_j: torch.Tensor) -> torch.Tensor:
        """Agreement logits for pairs of embeddings (one per row)."""
        if self.aggregation.endswith("dist"):
            merged = (h_i - h_j) ** 2
        elif self.aggregation.endswith("add"):
            merged = h_i + h_j
        else:
            merged = torch.cat([h_i, h_j], dim=-1)
        return self.predictor(merged).squeeze(-1)

    def forward(self, features: torch.Tensor, src: torch.Tensor,
                dst: torch.Tensor) -> torch.Tensor:
        """Agreement logits of the node pairs ``(src[k], dst[k])``."""
        # Embed only the nodes of these pairs: a batch touches a few hundred rows, and
        # selecting rows of sparse features is cheaper than multiplying all of them.
        nodes, where = torch.unique(torch.cat([src, dst]), return_inverse=True)
        h = self.encode(features.index_select(0, nodes))
        return self.score(h[where[:src.numel()]], h[where[src.numel():]])


def propagate_features(graph: Any, features: torch.Tensor, steps: int) -> torch.Tensor:
    """``S^steps X`` with S the symmetric-normalized adjacency with self-loops (as SGC,
    Wu et al. 2019): features averaged over ``steps``-hop neighbourhoods, dense."""
    import dgl

    x = features.to_dense() if features.is_sparse else features
    if steps <= 0:
        return x
    g = dgl.add_self_loop(dgl.remove_self_loop(graph))
    norm = g.in_degrees().float().clamp_min(1).pow(-0.5).unsqueeze(1)
    for _ in range(steps):
        with g.local_scope():
            g.ndata["h"] = x * norm
            g.update_all(dgl.function.copy_u("h", "m"), dgl.function.sum("m", "h"))
            x = g.ndata["h"] * norm
    return x


# -- pair sampling -------------------------------------------------------------------
def sample_pairs_by_agreement(nodes: torch.Tensor, labels: torch.Tensor, count: int,
                              agree: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random pairs of ``nodes`` whose labels agree (or differ), exactly.

    The first node is uniform; the second is uniform among the nodes of the same class
    (or of the other classes), found by indexing into ``nodes`` sorted by label, so there
    is no rejection loop. Pairs are drawn with replacement.
    """
    node_labels = labels[nodes]
    order = torch.argsort(node_labels, stable=True)
    by_label, sorted_labels = nodes[order], node_labels[order]
    classes, counts = torch.unique_consecutive(sorted_labels, return_counts=True)
    offsets = torch.cumsum(counts, 0) - counts
    n = nodes.numel()
    device = nodes.device
    if agree:
        first_pos = torch.randint(n, (count,), device=device)
    else:
        # Only nodes with some node of another class can start a disagreeing pair.
        has_other = (n - counts) > 0
        eligible = torch.isin(sorted_labels, classes[has_other]).nonzero().squeeze(1)
        if eligible.numel() == 0:
            empty = nodes.new_empty(0)
            return empty, empty
        first_pos = eligible[torch.randint(eligible.numel(), (count,), device=device)]
    cls = torch.searchsorted(classes, sorted_labels[first_pos])
    if agree:
        second_pos = offsets[cls] + (torch.rand(count, device=device) * counts[cls]).long(
        ).clamp_max(counts[cls] - 1)
    else:
        others = n - counts[cls]
        r = (torch.rand(count, device=device) * others).long().clamp_max(others - 1)
        second_pos = torch.where(r < offsets[cls], r, r + counts[cls])
    return by_label[first_pos], by_label[second_pos]


@dataclass
class AgreementPairs:
    """Training pools and the held-out validation pairs for the agreement model.

    ``pos``/``neg`` are pools of agreeing and disagreeing ``(i, j)`` rows (from edges);
    with ``resample`` set, balanced random pairs of these labeled nodes are also drawn
    afresh for every batch. ``val_*`` are the held-out pairs with their 0/1 targets.
    """

    pos: torch.Tensor
    neg: torch.Tensor
    val_src: torch.Tensor
    val_dst: torch.Tensor
    val_target: torch.Tensor
    resample: tuple[torch.Tensor, torch.Tensor] | None = None  # (train nodes, labels)

    # Cached: every training batch asks both (the pairs never change once built).
    @cached_property
    def has_pools(self) -> bool:
        return self.pos.shape[0] > 0 and self.neg.shape[0] > 0

    @cached_property
    def has_random(self) -> bool:
        if self.resample is None:
            return False
        nodes, labels = self.resample
        return nodes.numel() > 1 and labels[nodes].unique().numel() > 1

    @property
    def trainable(self) -> bool:
        """Whether there is anything to learn from (both agreeing and disagreeing pairs)."""
        return self.has_pools or self.has_random

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A balanced batch (src, dst, target): half agreeing, half disagreeing pairs,
        split evenly between the edge pools and random pairs when there are both."""
        sources = [self.has_pools, self.has_random]
        share = max(batch_size // max(sum(sources), 1), 2)
        pos, neg = [], []
        if self.has_pools:
            half = min(share // 2, self.pos.shape[0])
            device = self.pos.device
            pos.append(self.pos[torch.randint(self.pos.shape[0], (half,), device=device)])
            neg.append(self.neg[torch.randint(self.neg.shape[0], (half,), device=device)])
        if self.has_random:
            nodes, labels = self.resample  # type: ignore[misc]
            pos.append(torch.stack(sample_pairs_by_agreement(nodes, labels, share // 2, True), 1))
            neg.append(torch.stack(sample_pairs_by_agreement(nodes, labels, share // 2, False), 1))
        p, q = torch.cat(pos), torch.cat(neg)
        target = torch.cat([p.new_ones(p.shape[0], dtype=torch.float32),
                            q.new_zeros(q.shape[0], dtype=torch.float32)])
        return torch.cat([p[:, 0], q[:, 0]]), torch.cat([p[:, 1], q[:, 1]]), target


def graph_agreement_pairs(src: torch.Tensor, dst: torch.Tensor, labels: torch.Tensor,
                          labeled: torch.Tensor, val_ratio: float = 0.1,
                          max_val: int = 10_000) -> AgreementPairs:
    """Pairs from the graph's labeled-labeled edges (GAM): agreement = labels equal.

    ``val_ratio`` of the edges is held out for validation. Disagreeing training edges
    are topped up with random disagreeing labeled pairs until there are as many as
    agreeing ones, so that balanced batches exist even on a homophilous graph.
    """
    keep = labeled[src] & labeled[dst] & (src != dst)
    edges = torch.stack([src[keep], dst[keep]], dim=1)
    perm = torch.randperm(edges.shape[0], device=edges.device)
    num_val = min(int(edges.shape[0] * val_ratio), max_val)
    val, train = edges[perm[:num_val]], edges[perm[num_val:]]
    agree = labels[train[:, 0]] == labels[train[:, 1]]
    pos, neg = train[agree], train[~agree]
    missing = pos.shape[0] - neg.shape[0]
    if missing > 0:
        nodes = labeled.nonzero().squeeze(1)
        i, j = sample_pairs_by_agreement(nodes, labels, missing, agree=False)
        if i.numel():
            neg = torch.cat([neg, torch.stack([i, j], dim=1)])
    val_target = (labels[val[:, 0]] == labels[val[:, 1]]).float()
    return AgreementPairs(pos, neg, val[:, 0], val[:, 1], val_target)


def edge_and_random_agreement_pairs(src: torch.Tensor, dst: torch.Tensor,
                                    labels: torch.Tensor, labeled: torch.Tensor,
                                    val_ratio: float = 0.1,
                                    max_val: int = 10_000) -> AgreementPairs:
    """Labeled edges (validated on held-out edges, as :func:`graph_agreement_pairs`) plus,
    in every batch, as many balanced random pairs of labeled nodes: early on there are
    only a few dozen labeled-labeled edges, and random pairs teach label agreement
    itself rather than "looks like a neighbour"."""
    pairs = graph_agreement_pairs(src, dst, labels, labeled, val_ratio, max_val)
    return dataclasses.replace(pairs, resample=(labeled.nonzero().squeeze(1), labels))


def random_agreement_pairs(labels: torch.Tensor, labeled: torch.Tensor,
                           val_ratio: float = 0.1, max_val: int = 10_000) -> AgreementPairs:
    """Random pairs of labeled nodes (GAM*, no graph): ``val_ratio`` of the labeled nodes
    are held out, and balanced validation pairs are drawn among them."""
    nodes = labeled.nonzero().squeeze(1)
    nodes = nodes[torch.randperm(nodes.numel(), device=nodes.device)]
    num_val_nodes = int(nodes.numel() * val_ratio)
    val_nodes, train_nodes = nodes[:num_val_nodes], nodes[num_val_nodes:]
    num_val = min(int(nodes.numel() ** 2 * val_ratio), max_val) // 2
    empty = nodes.new_empty(0)
    vs, vd, target = empty, empty, empty.new_zeros(0, dtype=torch.float32)
    if num_val > 0 and val_nodes.numel() > 1 and labels[val_nodes].unique().numel() > 1:
        ps, pd = sample_pairs_by_agreement(val_nodes, labels, num_val, agree=True)
        ns, nd = sample_pairs_by_agreement(val_nodes, labels, num_val, agree=False)
        vs, vd = torch.cat([ps, ns]), torch.cat([pd, nd])
        target = torch.cat([ps.new_ones(ps.numel(), dtype=torch.float32),
                            ns.new_zeros(ns.numel(), dtype=torch.float32)])
    no_pairs = nodes.new_empty(0, 2)
    return AgreementPairs(no_pairs, no_pairs, vs, vd, target, resample=(train_nodes, labels))


# -- training ------------------------------------------------------------------------
@torch.no_grad()
def agreement_metrics(model: AgreementModel, features: torch.Tensor,
                      pairs: AgreementPairs) -> dict[str, torch.Tensor]:
    """Accuracy (threshold 0.5) and cross-entropy of ``model`` on the held-out pairs."""
    model.eval()
    logits = model(features, pairs.val_src, pairs.val_dst)
    return {
        "agreement_val_accuracy": ((logits > 0).float() == pairs.val_target).float().mean(),
        "agreement_val_loss": F.binary_cross_entropy_with_logits(logits, pairs.val_target),
    }


def train_agreement_model(model: AgreementModel, features: torch.Tensor,
                          pairs: AgreementPairs, engine: Engine, *,
                          optimizer: Callable[[Any], torch.optim.Optimizer], batch_size: int,
                          steps: int, patience: int, eval_every: int, phase: str = "agreement",
                          record: dict[str, Any] | None = None) -> tuple[float, FitResult]:
    """Train ``model`` with sigmoid cross-entropy on balanced batches through
    ``engine.fit``; keep the weights of the best held-out accuracy and return it (with
    the fit's record).

    One engine epoch is ``eval_every`` optimizer steps; ``steps`` and ``patience`` are
    counted in optimizer steps. Ties in held-out accuracy go to the lower held-out loss:
    early on the held-out set is a handful of pairs whose accuracy is often 1.0 from
    the first evaluation, and accuracy alone would keep that untrained model. Without
    held-out pairs the accuracy on the latest training batch stands in for the held-out
    one. ``optimizer(params)`` builds the optimizer.
    """
    opt = optimizer(model.parameters())
    has_val = pairs.val_target.numel() > 0
    last: dict[str, torch.Tensor] = {}

    def train_step(epoch: int) -> dict[str, torch.Tensor]:
        model.train()
        total = torch.zeros((), device=features.device)
        for _ in range(eval_every):
            src, dst, target = pairs.batch(batch_size)
            opt.zero_grad(set_to_none=True)
            logits = model(features, src, dst)
            loss = F.binary_cross_entropy_with_logits(logits, target)
            loss.backward()
            opt.step()
            total = total + loss.detach()
        last["accuracy"] = ((logits.detach() > 0).float() == target).float().mean()
        return {"agreement_loss": total / eval_every}

    def evaluate() -> dict[str, Any]:
        if has_val:
            with torch.no_grad():
                return agreement_metrics(model, features, pairs)
        return {"agreement_val_accuracy": last["accuracy"], "agreement_val_loss": 0.0}

    epochs = max(math.ceil(steps / eval_every), 1)
    result = engine.fit(model, train_step=train_step, evaluate=evaluate, epochs=epochs,
                        patience=max(math.ceil(patience / eval_every), 1) if has_val else None,
                        monitor="agreement_val_accuracy", mode="max",
                        tie_break="agreement_val_loss", phase=phase, record=record)
    model.eval()
    accuracy = (result.best.get("agreement_val_accuracy", 0.0) if has_val
                else float(last["accuracy"]))
    return float(accuracy), result
