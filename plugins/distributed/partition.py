"""Partition a zoo experiment's graph for DGL's distributed training (DistDGL).

``partition(config, parts, out)`` writes what ``dgl.distributed.partition_graph`` writes
(``OUT/<name>.json``, the partition config, and ``OUT/part<i>/``) with the node data a
DistDGL trainer reads from the key-value store: ``feat`` (dense float32), ``label``,
``train_mask``/``val_mask``/``test_mask`` and ``in_degree`` (each node's whole-graph
in-degree without self-loops, which the block contract promises and ``gcn`` normalises
with), and the edge data ``weight``. Beside it: ``zoo_config.yaml`` (the resolved zoo
config, from which each trainer rebuilds the model) and ``orig_nids.pt``/``orig_eids.pt``
(the original id of each partitioned node and edge: ``partition_graph`` renumbers them
so that every partition owns a contiguous id range). The partition config names these
files under a ``"zoo"`` key, which DGL ignores.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import dgl
import torch
from omegaconf import OmegaConf

import zoo
from zoo.errors import ConfigError
from zoo_plugins.batch_sources.neighbor_sampler import whole_graph_in_degrees
from zoo_plugins.distributed.plan import TrainingPlan

ZOO_CONFIG = "zoo_config.yaml"
ORIG_NIDS, ORIG_EIDS = "orig_nids.pt", "orig_eids.pt"
NODE_DATA = ("feat", "label", "train_mask", "val_mask", "test_mask", "in_degree")


def graph_name_of(name: str) -> str:
    """A DistDGL graph name from an experiment's name: letters, digits and underscores
    (the name becomes part of shared-memory and file names)."""
    return re.sub(r"\W", "_", name, flags=re.ASCII).strip("_") or "graph"


def check_out(out: Path) -> None:
    """A ConfigError unless ``out`` is absent or an empty folder."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} already exists and is not empty; give a new folder "
                          "(partitions are never written over)")


def _experiment(exp_or_config: Any, overrides: list[str] | None) -> zoo.Experiment:
    from zoo.api import Experiment, build

    if isinstance(exp_or_config, Experiment):
        if overrides:
            raise ConfigError("overrides apply to a config, not to a built experiment; pass "
                              "the config instead")
        return exp_or_config
    return build(exp_or_config, overrides)


def partition_input(exp: zoo.Experiment) -> dgl.DGLGraph:
    """The experiment's graph (its graph builder's, or the dataset's own) as a fresh DGL
    graph carrying the node and edge data a DistDGL trainer reads."""
    data, graph = exp.data, exp.graph
    if graph is None:
        raise ConfigError(f"dataset '{data.name}' has no graph to partition; add a graph: "
                          "section")
    features = data.features
    if features.dim() != 2:
        raise ConfigError(f"dataset '{data.name}' has {features.dim()}-dimensional features; "
                          "DistDGL partitions need one feature row per node")
    graph = graph.to("cpu")
    src, dst = graph.edges()
    g = dgl.graph((src, dst), num_nodes=data.num_nodes)
    g.ndata["feat"] = (features.to_dense() if features.is_sparse else features).float().cpu()
    g.ndata["label"] = data.labels.cpu()
    g.ndata["train_mask"] = data.train_mask.cpu()
    g.ndata["val_mask"] = data.val_mask.cpu()
    g.ndata["test_mask"] = data.test_mask.cpu()
    g.ndata["in_degree"] = whole_graph_in_degrees(graph)
    g.edata["weight"] = graph.edata["weight"].float().cpu()
    return g


def partition(exp_or_config: Any, parts: int, out: str | Path,
              method: Literal["metis", "random"] = "metis", *,
              overrides: list[str] | None = None, graph_name: str | None = None) -> Path:
    """Partition an experiment's graph into ``parts`` DistDGL partitions under ``out``
    and return the partition config (``out/<graph_name>.json``).

    ``exp_or_config`` is a built ``zoo.Experiment`` or a config (path, bundled name or
    dict, with ``overrides`` as ``KEY=VALUE`` strings). The config must describe what the
    DistDGL trainer runs: node classification with a block model (gcn, sage, gat, gin) fed by
    ``trainer.batches: {name: neighbor_sampler, ...}``, without regularizers; it is
    checked before the data loads. ``method`` is METIS (few edges cut, balanced training
    nodes) or random. Everything is written into a temporary folder beside ``out`` and
    renamed into place at the end, so ``out`` is either complete or absent; an existing,
    non-empty ``out`` is refused.
    """
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
        raise ConfigError(f"parts: expected a whole number >= 1, got {parts!r}")
    if method not in ("metis", "random"):
        raise ConfigError(f"method: expected 'metis' or 'random', got {method!r}")
    out = Path(out).expanduser().absolute()
    check_out(out)
    exp = _experiment(exp_or_config, overrides)
    TrainingPlan.from_config(exp.config)  # refuse what the DistDGL trainer cannot run
    name = graph_name_of(graph_name or exp.name)
    g = partition_input(exp)
    if parts > g.num_nodes():
        raise ConfigError(f"parts: {parts} partitions for {g.num_nodes()} nodes; give at most "
                          "one partition per node")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partitioning-"))
    try:
        orig_nids, orig_eids = dgl.distributed.partition_graph(
            g, name, parts, str(tmp), part_method=method,
            balance_ntypes=g.ndata["train_mask"] if method == "metis" else None,
            balance_edges=method == "metis", return_mapping=True)
        torch.save(orig_nids, tmp / ORIG_NIDS)
        torch.save(orig_eids, tmp / ORIG_EIDS)
        (tmp / ZOO_CONFIG).write_text(OmegaConf.to_yaml(OmegaConf.create(exp.config)),
                                      encoding="utf-8")
        config_file = tmp / f"{name}.json"
        part_config = json.loads(config_file.read_text(encoding="utf-8"))
        part_config["zoo"] = {
            "config": ZOO_CONFIG, "orig_nids": ORIG_NIDS, "orig_eids": ORIG_EIDS,
            "experiment": exp.name, "dataset": exp.data.name, "method": method,
            "num_classes": int(exp.task.output_size(exp.data)),
            "num_features": int(g.ndata["feat"].shape[1]),
        }
        config_file.write_text(json.dumps(part_config, indent=4) + "\n", encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide the partitions from other users
        if out.exists():  # an empty folder (checked above): the rename replaces it
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / f"{name}.json"


def read_part_config(part_config: str | Path) -> dict[str, Any]:
    """A partition config written by :func:`partition`, with its ``"zoo"`` section; a
    ConfigError names what is missing."""
    path = Path(part_config)
    if not path.is_file():
        raise ConfigError(f"partition config {path} does not exist; write one with "
                          "`zoo partition CONFIG --parts N --out DIR`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"partition config {path} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or "zoo" not in meta or "num_parts" not in meta:
        raise ConfigError(f"{path} is not a partition config written by `zoo partition` "
                          "(it has no 'zoo' section); partition the experiment with it")
    return meta


def zoo_file(part_config: str | Path, meta: dict[str, Any], key: str) -> Path:
    """A file the ``"zoo"`` section names, relative to the partition config's folder."""
    return Path(part_config).parent / meta["zoo"][key]
