"""Dataset ``sbm``: a synthetic graph with planted communities (a stochastic block model).

A graph of any size, generated in seconds with no download, for scaling runs and for
checking that a model uses the graph and the features it is given. The model:

- **Communities.** ``num_classes`` communities of equal size (they differ by at most one
  node); a node's community is its label. Which node is in which community is a seeded
  random permutation.
- **Edges.** The graph is symmetric, without self-loops or duplicate edges, with exactly
  ``M = round(avg_degree * num_nodes / 2)`` undirected edges, that is ``2 M`` directed
  edges ``u -> v`` in the DGL graph (both directions of each): ``avg_degree`` is the mean
  number of neighbours of a node, and 1,000,000 nodes at ``avg_degree`` 10 are 10,000,000
  directed (5,000,000 undirected) edges. Exactly ``round(homophily * M)`` of the
  undirected edges join two nodes of the same community (edge homophily), drawn
  uniformly among all such pairs; the others are drawn uniformly among the pairs of
  nodes in different communities (exactly uniform when N is a multiple of C). This is
  the SBM with a fixed number of edges per block type; in the usual edge-probability
  terms, with communities of ``s = N / C`` nodes,
  ``p_in = homophily * avg_degree / (s - 1)`` and
  ``p_out = (1 - homophily) * avg_degree / (N - s)``. ``homophily = 1 / C`` (about) is a
  graph without community structure; degrees are close to Poisson (there is no degree
  correction), so a few nodes may have no neighbour when ``avg_degree`` is small.
- **Features.** ``x_v = feature_signal * m_{y_v} + e_v`` with noise ``e_v ~ N(0, I)``
  in ``num_features`` dimensions and unit-length class means ``m_c``, orthonormal when
  ``num_classes <= num_features`` (a seeded random rotation), else independent random
  directions. Two orthonormal class means are ``feature_signal * sqrt(2)`` noise
  standard deviations apart, so the best rule that tells two classes apart from the
  features alone errs with probability ``Phi(-feature_signal / sqrt(2))`` (0.24 at 1,
  0.08 at 2). ``feature_signal = 0``: the features carry no information about the label.
  Dense float32, ``(N, num_features)``: 1,000,000 nodes with 32 features take 128 MB.
- **Split** (as Planetoid's): ``train_per_class`` random nodes of each community, then
  ``val_size`` and ``test_size`` random nodes among the rest; the masks are disjoint.

Everything is determined by ``seed``: the same parameters give the same graph, features
and split, bit for bit. Each part draws from a random stream of its own, so the graph
does not change with the feature or split parameters, nor the split with the graph's
(only with ``num_nodes``, ``num_classes`` and the split sizes).

Generation is vectorised (NumPy; no Python loop over nodes or edges): 1,000,000 nodes
and 10,000,000 directed edges take about 2 s on a shared 2-core machine and a peak
resident memory of 605 MiB, of which 270 MiB is the interpreter with torch and DGL
loaded: little more than the data it returns (160 MB of edge ids, 128 MB of features).
``benchmarks/bench_scale.py`` prints both (row ``data only``).
``extra`` holds the realised ``homophily`` and ``avg_degree`` and the ``class_means``
(``(C, F)`` float32, before scaling by ``feature_signal``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import torch

import zoo
from zoo.contracts import GraphData
from zoo.errors import ConfigError
from zoo.schema import Ge, Gt, Le

# Separate random streams (``default_rng([seed, stream])``): changing one part's
# parameters leaves the other parts as they were.
LABEL_STREAM, EDGE_STREAM, FEATURE_STREAM, SPLIT_STREAM = 1, 2, 3, 4
FEATURE_CHUNK = 1 << 16  # rows per step when adding the class means (bounds the temporary)
# Extra draws per round of edge sampling: self-loops and repeated pairs are thrown away.
OVERSAMPLE = 1.01

Pair = tuple[np.ndarray, np.ndarray]


def sbm(*, num_nodes: Annotated[int, Ge(2)] = 10_000,
        avg_degree: Annotated[float, Gt(0)] = 10.0,
        num_classes: Annotated[int, Ge(2)] = 5,
        homophily: Annotated[float, Ge(0), Le(1)] = 0.6,
        num_features: Annotated[int, Ge(1)] = 32,
        feature_signal: Annotated[float, Ge(0)] = 1.0,
        train_per_class: Annotated[int, Ge(1)] = 20,
        val_size: Annotated[int, Ge(0)] = 500,
        test_size: Annotated[int, Ge(0)] = 1000,
        seed: int = 0) -> GraphData:
    """Synthetic graph with planted communities (stochastic block model), any size.

    Args:
        num_nodes: number of nodes N.
        avg_degree: mean number of neighbours per node; the graph has round(avg_degree * N
            / 2) undirected edges, twice as many directed ones (both directions stored).
        num_classes: number of communities (equal sizes); a node's community is its label.
        homophily: fraction of the edges whose two ends are in the same community
            (1 / num_classes: no community structure).
        num_features: feature dimensions (dense float32).
        feature_signal: distance of each class mean from the origin in noise standard
            deviations: x = feature_signal * m_label + N(0, I), orthonormal means m;
            0 makes the features pure noise.
        train_per_class: training nodes drawn from each community.
        val_size: validation nodes, drawn from the rest.
        test_size: test nodes, drawn from the rest.
        seed: seed of the communities, edges, features and split.
    """
    n, c = int(num_nodes), int(num_classes)
    # Every check before any work: a 1,000,000-node graph should not fail after its edges.
    sizes = community_sizes(n, c)
    plan = edge_plan(n, sizes, avg_degree, homophily)
    check_split(n, sizes, train_per_class, val_size, test_size)
    labels, members, starts = _communities(n, c, sizes, seed)
    src, dst = _edges(plan, members, starts, sizes, labels, seed)
    features, means = _features(labels, c, num_features, feature_signal, seed)
    masks = _split(labels, starts, sizes, train_per_class, val_size, test_size, seed)
    import dgl

    graph = dgl.graph((torch.from_numpy(src), torch.from_numpy(dst)), num_nodes=n)
    return GraphData(
        graph=graph, features=torch.from_numpy(features), labels=torch.from_numpy(labels),
        train_mask=torch.from_numpy(masks[0]), val_mask=torch.from_numpy(masks[1]),
        test_mask=torch.from_numpy(masks[2]), num_classes=c, name=f"sbm-{n}",
        extra={"homophily": plan.within / plan.total if plan.total else float("nan"),
               "avg_degree": src.size / n, "class_means": torch.from_numpy(means)})


# What zoo.testing's conformance check builds it with: small, offline, instant.
sbm.sample_config = {"num_nodes": 200, "val_size": 50, "test_size": 50}


@zoo.hookimpl
def zoo_register(registry: Any) -> None:
    """Register the ``sbm`` dataset."""
    registry.add("dataset", "sbm", sbm)


# -- checks --------------------------------------------------------------------------
def community_sizes(n: int, c: int) -> np.ndarray:
    """Sizes of ``c`` communities of ``n`` nodes, equal up to one node (the first larger)."""
    if c > n:
        raise ConfigError(f"dataset 'sbm': num_classes={c} is more than num_nodes={n}, which "
                          "leaves communities empty; lower num_classes or raise num_nodes")
    return n // c + (np.arange(c, dtype=np.int64) < n % c)


@dataclass(frozen=True)
class EdgePlan:
    """How many undirected edges to draw inside and between communities, and how many
    pairs of nodes each kind has."""

    num_nodes: int
    total: int
    within: int
    within_pairs: int
    across_pairs: int

    @property
    def across(self) -> int:
        return self.total - self.within


def edge_plan(n: int, sizes: np.ndarray, avg_degree: float, homophily: float) -> EdgePlan:
    """The edge counts ``avg_degree`` and ``homophily`` ask for; a ConfigError if the
    communities do not have that many pairs of nodes."""
    total = round(avg_degree * n / 2)
    pairs = n * (n - 1) // 2
    if total > pairs:
        raise ConfigError(f"dataset 'sbm': avg_degree={avg_degree:g} needs {total} edges, "
                          f"more than the {pairs} pairs of {n} nodes (avg_degree at most "
                          f"{n - 1}); lower avg_degree or raise num_nodes")
    within = round(homophily * total)
    within_pairs = int(sum(int(s) * (int(s) - 1) // 2 for s in sizes))
    plan = EdgePlan(n, total, within, within_pairs, pairs - within_pairs)
    if plan.within > plan.within_pairs:
        raise ConfigError(f"dataset 'sbm': homophily={homophily:g} puts {plan.within} edges "
                          f"inside communities of about {n // len(sizes)} nodes, which hold at "
                          f"most {plan.within_pairs}; lower homophily or avg_degree, or use "
                          "fewer num_classes")
    if plan.across > plan.across_pairs:
        raise ConfigError(f"dataset 'sbm': homophily={homophily:g} puts {plan.across} edges "
                          f"between communities, which have at most {plan.across_pairs} pairs; "
                          "raise homophily, lower avg_degree or use more num_classes")
    return plan


def check_split(n: int, sizes: np.ndarray, train_per_class: int, val_size: int,
                test_size: int) -> None:
    """A ConfigError if the split asks for more nodes than there are."""
    if train_per_class > sizes.min():
        raise ConfigError(f"dataset 'sbm': train_per_class={train_per_class} is more than the "
                          f"{int(sizes.min())} nodes of the smallest community; lower "
                          "train_per_class or raise num_nodes")
    train_total = train_per_class * sizes.size
    if train_total + val_size + test_size > n:
        raise ConfigError(f"dataset 'sbm': the split needs {train_total} training + {val_size} "
                          f"validation + {test_size} test nodes, more than the {n} nodes; "
                          "lower train_per_class, val_size or test_size, or raise num_nodes")


# -- communities ---------------------------------------------------------------------
def _communities(n: int, c: int, sizes: np.ndarray, seed: int,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, the nodes grouped by community (``members``) and where each group starts
    in ``members``."""
    order = np.random.default_rng([seed, LABEL_STREAM]).permutation(n)
    # Node order[i] joins community i % c: community k gets sizes[k] nodes.
    labels = np.empty(n, dtype=np.int64)
    labels[order] = np.arange(n, dtype=np.int64) % c
    members = np.concatenate([order[k::c] for k in range(c)])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return labels, members, starts


# -- edges ---------------------------------------------------------------------------
def _edges(plan: EdgePlan, members: np.ndarray, starts: np.ndarray, sizes: np.ndarray,
           labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Both directions of every undirected edge: ``src``, ``dst``."""
    n = plan.num_nodes
    rng = np.random.default_rng([seed, EDGE_STREAM])

    def draw_within(k: int) -> Pair:
        u = rng.integers(0, n, k)
        group = labels[u]
        return u, members[starts[group] + rng.integers(0, sizes[group])]

    def draw_across(k: int) -> Pair:
        u = rng.integers(0, n, k)
        group = labels[u]
        # A position among the nodes of the other communities: skip u's own block.
        pos = rng.integers(0, n - sizes[group])
        pos += (pos >= starts[group]) * sizes[group]
        return u, members[pos]

    keys = np.concatenate([
        _distinct_pairs(rng, plan.within, plan.within_pairs, draw_within, n),
        _distinct_pairs(rng, plan.across, plan.across_pairs, draw_across, n)])
    # Pair key lo * n + hi (lo < hi) -> both directions, written straight into place.
    src = np.empty(2 * keys.size, dtype=np.int64)
    np.floor_divide(keys, n, out=src[:keys.size])
    np.remainder(keys, n, out=src[keys.size:])
    del keys
    dst = np.concatenate([src[src.size // 2:], src[:src.size // 2]])
    return src, dst


def _distinct_pairs(rng: np.random.Generator, need: int, capacity: int,
                    draw: Callable[[int], Pair], n: int) -> np.ndarray:
    """``need`` distinct unordered pairs as sorted keys ``lo * n + hi``, uniformly at random
    among the ``capacity`` pairs ``draw`` returns with equal probability.

    Pairs are drawn with repetition until ``need`` distinct ones are found (a uniform
    random set, given its size) and a uniform random subset of the surplus is dropped;
    one round usually suffices, more when the graph is nearly complete.
    """
    keys = np.empty(0, dtype=np.int64)
    while keys.size < need:
        # A draw repeats an earlier pair with probability keys.size / capacity.
        fresh_share = max(1.0 - keys.size / capacity, 1e-3)
        u, v = draw(int((need - keys.size) / fresh_share * OVERSAMPLE) + 64)
        lo = np.minimum(u, v)
        hi = np.maximum(u, v, out=v)
        del u
        found = lo * n + hi
        found = found[lo != hi]
        del lo, hi
        keys = _sorted_distinct(np.concatenate([keys, found]))
    if keys.size > need:
        keys = np.delete(keys, rng.choice(keys.size, keys.size - need, replace=False))
    return keys


def _sorted_distinct(keys: np.ndarray) -> np.ndarray:
    """The distinct values of ``keys``, sorted (sorts ``keys`` in place). np.unique is
    several times slower on millions of int64 keys: NumPy 2 hashes before it sorts."""
    keys.sort()
    if keys.size < 2:
        return keys
    first = np.empty(keys.size, dtype=bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    return keys[first]


# -- features ------------------------------------------------------------------------
def _features(labels: np.ndarray, c: int, num_features: int, signal: float, seed: int,
              ) -> tuple[np.ndarray, np.ndarray]:
    """Features ``signal * m_label + N(0, I)`` and the unit class means ``m`` (C, F)."""
    rng = np.random.default_rng([seed, FEATURE_STREAM])
    raw = rng.standard_normal((num_features, c))
    if c <= num_features:
        q, r = np.linalg.qr(raw)
        # Signs fixed so that R's diagonal is positive: the one QR, whatever LAPACK does.
        means = (q * np.where(np.diag(r) < 0, -1.0, 1.0)).T
    else:
        means = (raw / np.linalg.norm(raw, axis=0, keepdims=True)).T
    means = np.ascontiguousarray(means, dtype=np.float32)
    x = rng.standard_normal((labels.size, num_features), dtype=np.float32)
    if signal:
        centers = np.float32(signal) * means
        for start in range(0, labels.size, FEATURE_CHUNK):
            x[start:start + FEATURE_CHUNK] += centers[labels[start:start + FEATURE_CHUNK]]
    return x, means


# -- split ---------------------------------------------------------------------------
def _split(labels: np.ndarray, starts: np.ndarray, sizes: np.ndarray, train_per_class: int,
           val_size: int, test_size: int, seed: int) -> np.ndarray:
    """Train, validation and test masks, ``(3, N)`` bool."""
    n = labels.size
    order = np.random.default_rng([seed, SPLIT_STREAM]).permutation(n)
    # Each node's rank within its community, in the order of the permutation.
    grouped = np.argsort(labels[order], kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[grouped] = np.arange(n, dtype=np.int64) - np.repeat(starts, sizes)
    chosen = rank < train_per_class
    rest = order[~chosen]
    masks = np.zeros((3, n), dtype=bool)
    masks[0, order[chosen]] = True
    masks[1, rest[:val_size]] = True
    masks[2, rest[val_size:val_size + test_size]] = True
    return masks
