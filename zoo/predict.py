"""Using a trained model: ``Experiment.predict``, ``zoo predict`` and ``zoo evaluate``.

A run folder's ``weights/seed-<k>.pt`` hold each seed's best model; :func:`zoo.load`
rebuilds the experiment around one of them. :func:`predict` returns the model's class
probabilities (for a task that classifies) and embeddings, for the dataset's nodes or
for new features with their graph; ``zoo predict RUN_DIR --out preds.csv`` writes them
as a table (node id, predicted class, one probability column per class); ``zoo
evaluate RUN_DIR`` computes the task's metrics again from the saved models and shows
them beside what the run recorded.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from zoo.cli import Parser
from zoo.errors import ConfigError

if TYPE_CHECKING:
    from zoo.api import Experiment


@dataclass
class Predictions:
    """What a trained model says about every node: ``ids`` (stable ids), ``probabilities``
    ``(N, C)`` and ``classes`` ``(N,)`` when the task classifies (else None), and the
    ``embedding`` ``(N, D)`` the model computes before its output layer."""

    ids: list[str]
    probabilities: torch.Tensor | None
    classes: torch.Tensor | None
    embedding: torch.Tensor | None
    label_names: list[str] | None = None


def _graph_of(graph: Any, num_nodes: int) -> Any:
    """A DGL graph from a DGL graph, an edge-list file (.tsv/.bin) or ``(src, dst)``."""
    import dgl

    from zoo.graphio import load_graph

    if graph is None or isinstance(graph, dgl.DGLGraph):
        g = graph
    elif isinstance(graph, (str, Path)):
        g = load_graph(graph, num_nodes=num_nodes)
    elif isinstance(graph, (tuple, list)) and len(graph) == 2:
        src, dst = (torch.as_tensor(np.asarray(x), dtype=torch.long).reshape(-1)
                    for x in graph)
        if src.shape != dst.shape:
            raise ConfigError(f"graph: {src.numel()} sources but {dst.numel()} destinations; "
                              "give one of each per edge")
        ids = torch.cat([src, dst])
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_nodes):
            raise ConfigError(f"graph: node ids must be in 0..{num_nodes - 1}, one per "
                              "feature row")
        g = dgl.graph((src, dst), num_nodes=num_nodes)
    else:
        raise ConfigError(f"graph: expected a DGL graph, a graph file or (src, dst) arrays, "
                          f"got {type(graph).__name__}")
    if g is not None:
        if g.num_nodes() != num_nodes:
            raise ConfigError(f"the graph has {g.num_nodes()} nodes but there are {num_nodes} "
                              "feature rows; give one row per node")
        if "weight" not in g.edata:
            g.edata["weight"] = torch.ones(g.num_edges())
    return g


def new_data(exp: Experiment, features: Any, graph: Any = None) -> Any:
    """A dataset of new nodes: ``features`` (one row per node, the training data's
    columns) and their graph, without labels."""
    from zoo.contracts import GraphData

    x = torch.as_tensor(np.asarray(features) if not isinstance(features, torch.Tensor)
                        else features)
    if not x.is_floating_point():
        x = x.float()
    train = exp.data
    if x.dim() < 2 or x.shape[1:] != train.features.shape[1:]:
        raise ConfigError(f"features: expected rows shaped like the training data's "
                          f"{tuple(train.features.shape[1:])}, got {tuple(x.shape)}")
    n = int(x.shape[0])
    g = _graph_of(graph, n)
    if g is None and not exp.model.graph_free:
        raise ConfigError("this model reads a graph: give the new nodes' graph as well "
                          "(graph=...; on the command line --graph FILE)")
    none = torch.zeros(n, dtype=torch.bool)
    return GraphData(graph=g, features=x.to(train.features.dtype), labels=torch.zeros(
        n, dtype=torch.long), train_mask=none, val_mask=none, test_mask=none,
        num_classes=train.num_classes, name=f"{train.name} (new nodes)",
        extra={k: v for k, v in train.extra.items() if k == "label_names"})


@torch.no_grad()
def predict(exp: Experiment, features: Any = None, graph: Any = None,
            batches: dict[str, Any] | None = None) -> Predictions:
    """The model's predictions for the dataset's nodes, or for ``features`` (new nodes)
    with their ``graph`` (a DGL graph, an edge-list file, or ``(src, dst)``)."""
    from zoo.retrieval import item_ids

    runtime = exp.runtime
    if features is None:
        if graph is not None:
            raise ConfigError("a new graph needs its nodes' features too (features=...)")
        data, g = exp.data, exp.graph
    else:
        data = new_data(exp, features, graph)
        g = data.graph
    model = exp.model
    default = {"name": "items" if model.graph_free else "full_graph"}
    source = exp.registry.build("batch_source", batches or default)
    source.bind(runtime.to(data), runtime.to(g), runtime)
    model.eval()
    out = source.infer(model)
    probabilities = classes = None
    to_probs = getattr(exp.task, "probabilities", None)
    if callable(to_probs):
        probabilities = to_probs(out).detach().cpu().float()
        classes = probabilities.argmax(dim=1)
    embedding = out.embedding.detach().cpu().float() if out.embedding is not None else None
    if embedding is not None and embedding.is_sparse:
        embedding = embedding.to_dense()
    names = data.extra.get("label_names")
    return Predictions(ids=item_ids(data), probabilities=probabilities, classes=classes,
                       embedding=embedding, label_names=list(names) if names else None)


def predictions_csv(pred: Predictions, rows: torch.Tensor | None = None) -> str:
    """``id, predicted, p_<class>...`` as CSV text (the rows ``rows``, default all)."""
    if pred.probabilities is None:
        raise ConfigError("this run's task does not classify, so there are no class "
                          "probabilities to write; use `zoo embed` for its embeddings")
    n_classes = pred.probabilities.shape[1]
    names = pred.label_names or [str(c) for c in range(n_classes)]
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["id", "predicted", *(f"p_{name}" for name in names)])
    index = range(len(pred.ids)) if rows is None else rows.nonzero().squeeze(1).tolist()
    probs, classes = pred.probabilities.tolist(), pred.classes.tolist()
    for i in index:
        out.writerow([pred.ids[i], names[classes[i]], *(f"{p:.6g}" for p in probs[i])])
    return buf.getvalue()


# -- the commands ---------------------------------------------------------------------
def predict_parser() -> Parser:
    p = Parser(prog="zoo predict", description="Write a trained model's predictions: node "
               "id, predicted class and the class probabilities, as CSV.")
    p.add_argument("run_dir", type=Path, help="a folder `zoo run` wrote")
    p.add_argument("--out", type=Path, help="CSV file (default: RUN_DIR/predictions.csv; "
                   "- for stdout)")
    p.add_argument("--seed", type=int, help="whose model (default: the lowest seed saved)")
    p.add_argument("--split", choices=("all", "train", "val", "test", "unlabeled"),
                   default="all", help="which of the dataset's nodes (default all)")
    p.add_argument("--features", type=Path, help="new nodes' features (.npy, one row per "
                   "node) instead of the dataset's")
    p.add_argument("--graph", type=Path, help="the new nodes' graph (.tsv edge list or .bin)")
    p.set_defaults(func=cmd_predict)
    return p


def _load_features(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ConfigError(f"features file '{path}' not found; give a .npy file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise ConfigError(f"cannot read features from '{path}': it is not a NumPy .npy array "
                          "of numbers; save one row per node with numpy.save") from None


def cmd_predict(args: Any) -> int:
    from zoo.retrieval import load
    from zoo.run import atomic_write

    if args.graph is not None and args.features is None:
        raise ConfigError("--graph describes new nodes: give their --features too")
    exp = load(args.run_dir, args.seed)
    if args.features is not None:
        if args.split != "all":
            raise ConfigError("--split picks the dataset's nodes; leave it out with "
                              "--features")
        pred = predict(exp, _load_features(args.features), args.graph)
        rows = None
    else:
        pred = predict(exp)
        data = exp.data
        masks = {"train": data.train_mask, "val": data.val_mask, "test": data.test_mask,
                 "unlabeled": ~(data.train_mask | data.val_mask | data.test_mask)}
        rows = masks[args.split].cpu() if args.split != "all" else None
    text = predictions_csv(pred, rows)
    if str(args.out) == "-":
        print(text, end="")
        return 0
    out = args.out or args.run_dir / "predictions.csv"
    if out.is_dir():
        raise ConfigError(f"--out '{out}' is a folder; give a file name such as preds.csv")
    atomic_write(out, text)
    count = text.count("\n") - 1
    print(f"wrote {count} predictions of seed {exp.seed} to {out}")
    return 0


def evaluate_parser() -> Parser:
    p = Parser(prog="zoo evaluate", description="Compute a run's metrics again from its "
               "saved models, beside the values the run recorded.")
    p.add_argument("run_dir", type=Path, help="a folder `zoo run` wrote")
    p.add_argument("--seed", type=int, help="one seed (default: every seed saved)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_evaluate)
    return p


def evaluate_run(run_dir: Path, seeds: list[int] | None = None,
                 ) -> dict[int, dict[str, dict[str, float]]]:
    """``{seed: {metric: {"now": value, "recorded": value}}}`` for the saved models."""
    from zoo.retrieval import load

    saved = sorted(int(p.stem.removeprefix("seed-")) for p in
                   (Path(run_dir) / "weights").glob("seed-*.pt")
                   if p.stem.removeprefix("seed-").isdigit())
    if seeds:
        missing = [s for s in seeds if s not in saved]
        if missing:
            raise ConfigError(f"run folder '{run_dir}' has no weights for seed "
                              f"{missing[0]}; it has seeds {', '.join(map(str, saved))}")
        saved = seeds
    recorded: dict[str, Any] = {}
    summary_path = Path(run_dir) / "summary.json"
    if summary_path.is_file():
        try:
            recorded = json.loads(summary_path.read_text(encoding="utf-8"))
        except ValueError:
            recorded = {}
    results: dict[int, dict[str, dict[str, float]]] = {}
    exp = None
    for seed in saved:
        exp = load(run_dir, seed) if exp is None else _reload(exp, run_dir, seed)
        now = exp.evaluate()
        seeds_run = recorded.get("seeds", [])
        results[seed] = {}
        for key, value in now.items():
            values = recorded.get("metrics", {}).get(key, {}).get("values", [])
            at = seeds_run.index(seed) if seed in seeds_run else None
            before = values[at] if at is not None and at < len(values) else math.nan
            results[seed][key] = {"now": float(value), "recorded": float(before)}
    return results


def _reload(exp: Experiment, run_dir: Path, seed: int) -> Experiment:
    from zoo.retrieval import load

    fresh = load(run_dir, seed)
    fresh._data, fresh._graph = exp._data, exp._graph  # the dataset is the same
    return fresh


def cmd_evaluate(args: Any) -> int:
    results = evaluate_run(args.run_dir, [args.seed] if args.seed is not None else None)
    if args.json:
        print(json.dumps({str(k): v for k, v in results.items()}, indent=2))
        return 0
    for seed, metrics in results.items():
        print(f"seed {seed}:")
        width = max(len(k) for k in metrics)
        for key, v in metrics.items():
            note = "" if math.isnan(v["recorded"]) else f"   (run recorded {v['recorded']:.4f})"
            print(f"  {key:<{width}}  {v['now']:.4f}{note}")
    return 0
