"""The text of the package `zoo new-plugin` writes: one small working component per kind
(``string.Template`` pieces, ``$name`` filled in by :mod:`zoo.scaffold`),
the plugin's pyproject, README and tests. Each component follows CONTRIBUTING.md's
example of its kind and passes zoo.testing's conformance checks as written."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KindTemplate:
    """One kind's component: the imports it needs (keys of :data:`IMPORTS`), its code
    (``$name``: its registered name), a unit test of it on the tiny graph (or ""), and
    the name of its class or function (``suffix``)."""

    imports: frozenset[str]
    code: str
    unit_test: str = ""
    suffix: str = ""


# Every import a component may need, in the order they are written (stdlib, third
# party, first party); `typing` and `zoo` names are gathered separately.
IMPORTS = {
    "csv": "import csv", "importlib": "import importlib.resources",
    "Path": "from pathlib import Path",
    "dgl": "import dgl", "torch": "import torch", "F": "import torch.nn.functional as F",
    "GraphConv": "from dgl.nn import GraphConv", "nn": "from torch import nn",
}
TYPING_NAMES = ("Annotated", "Any")
ZOO_NAMES = ("Ge", "Gt", "Kind", "Lt")

NODE_MODEL = KindTemplate(frozenset({"dgl", "torch", "GraphConv", "nn", "Annotated", "Ge",
                                     "Lt"}), '''
class GCN(nn.Module):
    """Two-layer graph convolutional network (Kipf & Welling 2017) on DGL's GraphConv.

    Args:
        hidden: units of the hidden layer (the embedding).
        dropout: dropout before each layer.
    """

    def __init__(self, in_dim: int, out_dim: int, *, hidden: Annotated[int, Ge(1)] = 16,
                 dropout: Annotated[float, Ge(0), Lt(1)] = 0.5) -> None:
        super().__init__()
        self.conv1 = GraphConv(in_dim, hidden)
        self.conv2 = GraphConv(hidden, out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, graph: dgl.DGLGraph, x: torch.Tensor) -> zoo.ModelOutput:
        if x.is_sparse:  # Planetoid's features are sparse COO
            x = x.to_dense()
        # One self-loop per node: a node keeps its own state (the renormalization trick),
        # and no node is left without an in-edge.
        graph = dgl.add_self_loop(dgl.remove_self_loop(graph))
        h = torch.relu(self.conv1(graph, self.dropout(x)))
        return zoo.ModelOutput(logits=self.conv2(graph, self.dropout(h)), embedding=h)
''', '''
def test_${name}_gives_one_row_per_node(tiny_graph, zoo_registry):
    section = {"name": "$name", "hidden": 8}
    model = zoo_registry.build("node_model", section, tiny_graph.num_features,
                               tiny_graph.num_classes)
    out = model(tiny_graph.graph, tiny_graph.features)
    assert out.logits.shape == (tiny_graph.num_nodes, tiny_graph.num_classes)
    assert out.embedding.shape == (tiny_graph.num_nodes, 8)
''', "GCN")

ENCODER = KindTemplate(frozenset({"torch", "nn", "Annotated", "Ge", "Lt"}), '''
class MLP(nn.Module):
    """Two-layer perceptron over node features; alone it is a classifier.

    Args:
        hidden: units of the hidden layer (the embedding a node model reads when one
            follows).
        dropout: dropout before each layer.
    """

    def __init__(self, in_dim: int, out_dim: int | None, *,
                 hidden: Annotated[int, Ge(1)] = 64,
                 dropout: Annotated[float, Ge(0), Lt(1)] = 0.5) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_dim, hidden)
        self.out = nn.Linear(hidden, out_dim) if out_dim is not None else None
        self.dropout = nn.Dropout(dropout)
        self.out_dim = out_dim if out_dim is not None else hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor | zoo.ModelOutput:
        if x.is_sparse:
            x = x.to_dense()
        h = torch.relu(self.hidden(self.dropout(x.flatten(1))))
        if self.out is None:  # a node model follows: the embedding is the output
            return h
        return zoo.ModelOutput(logits=self.out(self.dropout(h)), embedding=h)
''', '''
def test_${name}_alone_is_a_classifier(tiny_graph, zoo_registry):
    section = {"name": "$name"}
    encoder = zoo_registry.build("encoder", section, tiny_graph.num_features,
                                 tiny_graph.num_classes)
    out = encoder(tiny_graph.features)
    assert out.logits.shape == (tiny_graph.num_nodes, tiny_graph.num_classes)
''', "MLP")

REGULARIZER = KindTemplate(frozenset({"torch", "nn", "Annotated", "Ge"}), '''
class Smoothness(nn.Module):
    """Smoothness: weighted squared distance between neighbours' class probabilities.

    Args:
        multiplier: weight of this term in the loss.
    """

    def __init__(self, *, multiplier: Annotated[float, Ge(0)] = 0.1) -> None:
        super().__init__()
        self.multiplier = multiplier

    def forward(self, inp: zoo.RegularizerInput) -> torch.Tensor:
        if inp.graph is None or inp.graph.num_edges() == 0:
            return inp.logits.sum() * 0.0  # no graph here: a zero that keeps autograd
        src, dst = inp.graph.edges()
        weight = inp.graph.edata.get("weight", torch.ones(src.numel(), device=src.device))
        p = torch.softmax(inp.logits, dim=-1)
        distance = ((p[src] - p[dst]) ** 2).sum(dim=-1)
        return self.multiplier * (weight * distance).sum() / weight.sum().clamp_min(1e-12)
''', '''
def test_${name}_is_zero_when_neighbours_agree(tiny_graph, zoo_registry):
    reg = zoo_registry.build("regularizer", {"name": "$name"})
    n, c = tiny_graph.num_nodes, tiny_graph.num_classes

    def term(logits):
        return float(reg(zoo.RegularizerInput(
            graph=tiny_graph.graph, logits=logits, embedding=logits, labels=tiny_graph.labels,
            labeled=tiny_graph.train_mask, node_ids=torch.arange(n))))

    assert term(torch.zeros(n, c)) == 0.0
    assert term(torch.randn(n, c)) > 0.0
''', "Smoothness")

GRAPH_BUILDER = KindTemplate(frozenset({"dgl", "torch", "Annotated", "Ge"}), '''
def cosine_knn(data: zoo.GraphData, *, k: Annotated[int, Ge(1)] = 10) -> dgl.DGLGraph:
    """Each node's k most similar nodes by feature cosine (dense: ~10k nodes at most).

    Args:
        k: neighbours per node (its out-edges node -> neighbour).
    """
    x = data.features.to_dense() if data.features.is_sparse else data.features
    x = torch.nn.functional.normalize(x.float().flatten(1), dim=1)
    similarity = x @ x.T
    similarity.fill_diagonal_(-2.0)  # below any cosine: no self-loops
    weight, neighbors = similarity.topk(min(k, data.num_nodes - 1), dim=1)
    src = torch.arange(data.num_nodes).repeat_interleave(neighbors.shape[1])
    graph = dgl.graph((src, neighbors.reshape(-1)), num_nodes=data.num_nodes)
    graph.edata["weight"] = weight.reshape(-1).clamp_min(0.0)
    return graph
''', '''
def test_${name}_gives_every_node_k_neighbours(tiny_graph, zoo_registry):
    section = {"name": "$name", "k": 4}
    graph = zoo_registry.build("graph_builder", section, tiny_graph)
    assert graph.out_degrees().tolist() == [4] * tiny_graph.num_nodes
''', "cosine_knn")

DATASET = KindTemplate(frozenset({"dgl", "torch", "F", "Annotated", "Ge"}), '''
def communities(*, nodes_per_class: Annotated[int, Ge(5)] = 100,
                num_classes: Annotated[int, Ge(2)] = 4, degree: Annotated[int, Ge(1)] = 5,
                noise: Annotated[float, Ge(0)] = 1.0, seed: int = 0) -> zoo.GraphData:
    """Synthetic communities, mostly linked within, with noisy one-hot features.

    Args:
        nodes_per_class: nodes in each community (its class).
        num_classes: number of communities.
        degree: edges drawn from each node (then made undirected).
        noise: standard deviation of the Gaussian noise added to the one-hot features.
        seed: seed of the edges, the noise and the split.
    """
    gen = torch.Generator().manual_seed(seed)
    n = nodes_per_class * num_classes
    labels = torch.arange(num_classes).repeat_interleave(nodes_per_class)
    features = F.one_hot(labels, num_classes).float() + noise * torch.randn(
        n, num_classes, generator=gen)
    src = torch.arange(n).repeat_interleave(degree)
    # Four in five edges stay inside the community: the graph tells classes apart.
    inside = torch.rand(src.numel(), generator=gen) < 0.8
    same = labels[src] * nodes_per_class + torch.randint(nodes_per_class, src.shape,
                                                         generator=gen)
    dst = torch.where(inside, same, torch.randint(n, src.shape, generator=gen))
    graph = dgl.to_bidirected(dgl.remove_self_loop(dgl.graph((src, dst), num_nodes=n)))
    # Split: a fifth of the nodes to train on, a fifth to validate, the rest to test.
    rank = torch.empty(n, dtype=torch.long)
    rank[torch.randperm(n, generator=gen)] = torch.arange(n)
    train, val = rank < n // 5, (rank >= n // 5) & (rank < 2 * n // 5)
    return zoo.GraphData(graph, features, labels, train, val, ~(train | val),
                         num_classes=num_classes, name="$name")


# What zoo.testing's conformance check builds: small, offline, instant.
communities.sample_config = {"nodes_per_class": 20}
''', '''
def test_${name}_is_the_same_for_the_same_seed(zoo_registry):
    section = {"name": "$name", "nodes_per_class": 10}
    first, again = (zoo_registry.build("dataset", section) for _ in range(2))
    assert first.num_nodes == 40 and torch.equal(first.features, again.features)
    assert not (first.train_mask & first.test_mask).any()
''', "communities")

TASK = KindTemplate(frozenset({"torch", "F", "Annotated", "Ge", "Lt"}), '''
class SmoothedClassification:
    """Node classification trained with label-smoothed cross-entropy.

    Args:
        smoothing: share of the target mass spread evenly over the classes.
    """

    monitor = "val_accuracy"
    mode = "max"
    tie_break = "val_loss"
    report = ("test_accuracy", "val_accuracy")

    def __init__(self, *, smoothing: Annotated[float, Ge(0), Lt(1)] = 0.1) -> None:
        self.smoothing = smoothing

    def output_size(self, data: zoo.GraphData) -> int:
        return data.num_classes

    def loss(self, output: zoo.ModelOutput, batch: zoo.Batch) -> torch.Tensor:
        rows = batch.loss_rows
        total = F.cross_entropy(output.logits[rows], batch.labels[rows],
                                label_smoothing=self.smoothing, reduction="sum")
        return total / (batch.loss_norm or max(rows.numel(), 1))

    def probabilities(self, output: zoo.ModelOutput) -> torch.Tensor:  # zoo.ClassifiesNodes
        return torch.softmax(output.logits, dim=-1)

    def evaluate(self, output: zoo.ModelOutput, data: zoo.GraphData) -> dict[str, torch.Tensor]:
        logits, labels, val = output.logits, data.labels, data.val_mask
        hit = (logits.argmax(dim=-1) == labels).float()
        return {"train_accuracy": hit[data.train_mask].mean(), "val_accuracy": hit[val].mean(),
                "val_loss": F.cross_entropy(logits[val], labels[val]),
                "test_accuracy": hit[data.test_mask].mean()}
''', suffix="SmoothedClassification")

BATCH_SOURCE = KindTemplate(frozenset({"dgl", "torch", "Annotated", "Ge"}), '''
class RandomSubgraphs:
    """Induced subgraphs of random node sets; the loss covers their labeled nodes.

    Args:
        batch_size: nodes per subgraph.
        batches: subgraphs (optimizer steps) per epoch.
    """

    graph_input = "whole"

    def __init__(self, *, batch_size: Annotated[int, Ge(1)] = 512,
                 batches: Annotated[int, Ge(1)] = 4) -> None:
        self.batch_size, self.batches = batch_size, batches

    def bind(self, data: zoo.GraphData, graph: dgl.DGLGraph, runtime: zoo.Runtime) -> None:
        if graph is None:
            raise zoo.ConfigError("batch source '$name' needs a graph")
        self.data, self.graph, self.device = data, graph, runtime.device

    def epoch(self, labels: torch.Tensor, labeled: torch.Tensor, with_reg_graph: bool = False):
        size = min(self.batch_size, self.data.num_nodes)
        # Expected labeled nodes per batch: sum / norm estimates the full-graph mean loss.
        norm = max(float(labeled.float().mean()) * size, 1e-12)  # one host read per epoch
        for _ in range(self.batches):
            ids = torch.randperm(self.data.num_nodes, device=self.device)[:size]
            sub = dgl.node_subgraph(self.graph, ids)
            yield zoo.Batch(graph=sub, inputs=self.data.features.index_select(0, ids),
                            node_ids=ids, labels=labels[ids], labeled=labeled[ids],
                            loss_rows=labeled[ids].nonzero().squeeze(1), loss_norm=norm,
                            reg_graph=sub if with_reg_graph else None)

    def infer(self, model) -> zoo.ModelOutput:
        return model(self.graph, self.data.features)
''', suffix="RandomSubgraphs")

OPTIMIZER = KindTemplate(frozenset({"torch", "Annotated", "Ge", "Gt", "Lt"}), '''
def rmsprop(params, *, lr: Annotated[float, Gt(0)] = 0.01,
            alpha: Annotated[float, Ge(0), Lt(1)] = 0.99,
            weight_decay: Annotated[float, Ge(0)] = 0.0) -> torch.optim.Optimizer:
    """RMSprop (Hinton's lecture 6e), torch.optim.RMSprop.

    Args:
        lr: learning rate.
        alpha: decay of the running average of squared gradients.
        weight_decay: L2 penalty added to the gradient.
    """
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, weight_decay=weight_decay)
''', suffix="rmsprop")

TRAINER = KindTemplate(frozenset({"Annotated", "Ge", "Kind"}), '''
class Plain:
    """Train one model with the configured regularizers; the best epoch's metrics.

    Args:
        epochs: maximum number of epochs.
        patience: stop after this many epochs without a better monitored metric (null:
            train all epochs).
        optimizer: the optimizer section.
        batches: the batch source section.
    """

    sample_config = {"epochs": 5}  # a quick run for zoo.testing's conformance check

    def __init__(self, *, epochs: Annotated[int, Ge(1)] = 100,
                 patience: Annotated[int, Ge(1)] | None = None,
                 optimizer: Annotated[dict, Kind("optimizer")] = {  # noqa: B006
                     "name": "adam", "lr": 0.01},
                 batches: Annotated[dict, Kind("batch_source")] = {  # noqa: B006
                     "name": "full_graph"}) -> None:
        self.epochs, self.patience = epochs, patience
        self.optimizer, self.batches = optimizer, batches  # zoo.ComponentSpec objects

    def fit(self, ctx: zoo.TrainContext) -> dict[str, float]:
        model = ctx.build_model()
        result = ctx.train(model, optimizer=self.optimizer, batches=self.batches,
                           regularizers=ctx.build_regularizers(), epochs=self.epochs,
                           patience=self.patience)
        return {**result.evaluation, "best_epoch": float(result.best_epoch)}
''', suffix="Plain")

LOGGER = KindTemplate(frozenset({"csv", "Path", "Any"}), '''
class CsvLogger:
    """Writes every metric of the run as a CSV row: seed, phase, step, metric, value.

    Args:
        path: the file, relative to the run folder unless absolute.
    """

    def __init__(self, *, path: str = "metrics.csv") -> None:
        self.path = path
        self.file: Any = None

    def start(self, run: zoo.RunInfo) -> None:
        path = run.dir / Path(self.path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists() or path.stat().st_size == 0
        self.file = path.open("a", newline="", encoding="utf-8")  # a resumed run appends
        self.writer = csv.writer(self.file)
        if fresh:
            self.writer.writerow(["seed", "phase", "step", "metric", "value"])

    def log(self, record: dict[str, Any]) -> None:
        step = record.get("epoch", record.get("iteration", ""))
        for key, value in record.items():
            if key in ("seed", "phase", "epoch", "iteration") or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                self.writer.writerow([record.get("seed", ""), record.get("phase", ""), step,
                                      key, value])
        self.file.flush()  # one flush per record: a killed run keeps what it logged

    def end(self, summary: dict[str, Any] | None, status: str) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
''', suffix="CsvLogger")

TEMPLATES = {"dataset": DATASET, "graph_builder": GRAPH_BUILDER, "encoder": ENCODER,
             "node_model": NODE_MODEL, "regularizer": REGULARIZER, "task": TASK,
             "batch_source": BATCH_SOURCE, "optimizer": OPTIMIZER, "trainer": TRAINER,
             "logger": LOGGER}

MODULE_HEADER = '''\
"""$about

The zoo finds it through the `zoo.plugins` entry point in pyproject.toml and calls the
hooks at the bottom: `zoo_register` (the components) and `zoo_configs` (the configs in
configs/, for `zoo run $module`); CONTRIBUTING.md in the zoo describes each kind's
contract.
"""
'''

REGISTER = '''

@zoo.hookimpl
def zoo_register(registry) -> None:
    """Register this plugin's components."""
$calls


@zoo.hookimpl
def zoo_configs():
    """The configs this plugin ships: `zoo run NAME` and `zoo configs` find them."""
    return importlib.resources.files(__name__) / "configs"
'''

PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A zoo plugin: $summary"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["zoo", "torch"]

[project.optional-dependencies]
test = ["pytest>=7.4"]

# This table is the whole integration: the zoo finds the plugin through this group.
[project.entry-points."zoo.plugins"]
$module = "$module"

[tool.setuptools]
packages = ["$module"]

# The configs ship inside the package (its zoo_configs hook offers them to zoo run).
[tool.setuptools.package-data]
$module = ["configs/*.yaml"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

README = '''\
# $dist

A plugin for the zoo (a plugin-based model zoo for GNNs on PyTorch + DGL) with
$summary, written by `zoo new-plugin $name`. Every component below is small, documented
and passes the zoo's conformance checks as generated: make it yours.

| kind | name | what |
|---|---|---|
$rows

## Use it

Install it (the zoo finds it through its entry point), see it listed with its
components, read a component's parameters, train the shipped config:

```bash
pip install -e .
zoo plugins
zoo show $first
zoo run $module        # or the file: zoo run $module/configs/$module.yaml
```

## Test it

Every component's conformance, the shipped config, a tiny training run, unit tests:

```bash
pip install -e '.[test]'
pytest
```

The tests use `zoo.testing`, the zoo's pytest plugin: the fixtures `tiny_graph` (a 90-node
synthetic graph, no download), `cora`, `run_dir` and `zoo_registry`, the config section
`TINY_GRAPH`, and `check_plugin("$module")`, which runs every rule of each component's
kind (builds from its defaults, forward and backward, finite outputs, documented
parameters...) and names the rule and the fix when one breaks.

## Layout

- `pyproject.toml`: the `zoo.plugins` entry point (`$module = "$module"`).
- `$module/__init__.py`: the components and the `zoo_register` hook.
- `$module/configs/$module.yaml`: a config using them (shipped as package data).
- `tests/test_$module.py`: the tests.
'''

TESTS = '''\
"""Tests of the zoo plugin $module, on zoo.testing's fixtures (no download)."""

from pathlib import Path
$imports
import zoo
from zoo.testing import $testing

CONFIG = Path(__file__).resolve().parents[1] / "$module" / "configs" / "$module.yaml"
TINY = $tiny  # the dataset of the training test
COMPONENTS = [
$expected
]


def test_components_conform():
    """Every component honours its kind's contract (zoo.testing's conformance checks)."""
    assert sorted(check_plugin("$module")) == COMPONENTS


def test_config_builds():
    """The shipped config validates and builds every component (no data is loaded)."""
    zoo.build(CONFIG)


def test_trains_on_the_tiny_graph(run_dir):
    """The shipped config, trained a few epochs on a tiny dataset, beats chance."""
    exp = zoo.build(CONFIG, dataset=TINY, trainer={"epochs": 30})
    summary = exp.fit(seeds=1, out=run_dir)
    chance = 1 / exp.data.num_classes
    assert summary["metrics"]["test_accuracy"]["mean"] > 1.5 * chance
    assert (run_dir / "summary.json").is_file()
'''
