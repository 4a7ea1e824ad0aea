"""partition(): DistDGL partitions of a zoo experiment's graph, node data carried through
DGL's renumbering, and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import dgl
import pytest
import torch
from dgl.distributed import load_partition
from omegaconf import OmegaConf

import zoo
from zoo_plugins.batch_sources.neighbor_sampler import whole_graph_in_degrees
from zoo_plugins.distributed.partition import partition


@pytest.fixture(scope="module")
def cora() -> zoo.Experiment:
    return zoo.build("sage_cora_sampled")


def test_writes_the_parts_the_config_and_the_zoo_section(cora_parts: Path,
                                                         cora: zoo.Experiment) -> None:
    meta = json.loads(cora_parts.read_text())
    assert cora_parts.name == "sage_cora_sampled.json"
    assert meta["num_parts"] == 2 and meta["graph_name"] == "sage_cora_sampled"
    assert {p.name for p in cora_parts.parent.iterdir()} == {
        "sage_cora_sampled.json", "part0", "part1", "zoo_config.yaml", "orig_nids.pt",
        "orig_eids.pt"}
    assert meta["zoo"]["num_classes"] == 7 and meta["zoo"]["num_features"] == 1433
    stored = OmegaConf.to_container(OmegaConf.load(cora_parts.parent / "zoo_config.yaml"))
    assert stored == cora.config
    assert zoo.build(stored).config == cora.config  # a trainer rebuilds the same experiment


def test_node_counts_add_up_and_node_data_survive_the_renumbering(
        cora_parts: Path, cora: zoo.Experiment) -> None:
    data, graph = cora.data, cora.graph
    orig_nids = torch.load(cora_parts.parent / "orig_nids.pt", weights_only=True)
    assert sorted(orig_nids.tolist()) == list(range(data.num_nodes))  # a permutation
    features = data.features.to_dense()
    expected = {"feat": features, "label": data.labels, "train_mask": data.train_mask,
                "val_mask": data.val_mask, "test_mask": data.test_mask,
                "in_degree": whole_graph_in_degrees(graph)}
    owned, edges = 0, 0
    for part in range(2):
        g, node_feats, edge_feats, book, *_ = load_partition(str(cora_parts), part)
        inner = g.ndata["inner_node"].bool()
        new_ids = g.ndata[dgl.NID][inner]  # the partition's own nodes, in row order
        assert torch.equal(new_ids, book.partid2nids(part))
        owned += len(new_ids)
        edges += int(g.edata["inner_edge"].sum())
        orig = orig_nids[new_ids]
        for name, values in expected.items():
            assert torch.equal(node_feats[f"_N/{name}"], values[orig]), name
        assert torch.equal(edge_feats["_N:_E:_N/weight"], torch.ones(len(
            edge_feats["_N:_E:_N/weight"])))
        # The partition's edges, mapped back, are the experiment's edges.
        src, dst = g.edges()
        keep = g.edata["inner_edge"].bool()
        back_src = orig_nids[g.ndata[dgl.NID][src[keep]]]
        back_dst = orig_nids[g.ndata[dgl.NID][dst[keep]]]
        assert bool(graph.has_edges_between(back_src, back_dst).all())
    assert owned == data.num_nodes
    assert edges == graph.num_edges()


def test_random_partitions(tmp_path: Path, cora: zoo.Experiment) -> None:
    config = partition(cora, 3, tmp_path / "random", method="random")
    meta = json.loads(config.read_text())
    assert meta["num_parts"] == 3 and meta["zoo"]["method"] == "random"
    sizes = [end - start for start, end in meta["node_map"]["_N"]]
    assert sum(sizes) == cora.data.num_nodes and min(sizes) > 0


def test_refuses_a_non_empty_out_and_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "parts"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(zoo.ConfigError, match="not empty"):
        partition("sage_cora_sampled", 2, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["parts"]


@pytest.mark.parametrize("overrides, message", [
    (["trainer.batches.name=full_graph"], "neighbor_sampler"),
    (["regularizers=[{name: distance}]"], "regularizers"),
])
def test_refuses_what_the_distdgl_trainer_cannot_run(tmp_path: Path, overrides: list[str],
                                                     message: str) -> None:
    with pytest.raises(zoo.ConfigError, match=message):
        partition("sage_cora_sampled", 2, tmp_path / "parts", overrides=overrides)
    assert not (tmp_path / "parts").exists()


def test_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(zoo.ConfigError, match="parts"):
        partition("sage_cora_sampled", 0, tmp_path / "parts")
    with pytest.raises(zoo.ConfigError, match="method"):
        partition("sage_cora_sampled", 2, tmp_path / "parts", method="kmeans")


def test_a_diverged_epoch_stops_the_distdgl_trainers_with_one_line() -> None:
    from zoo.errors import DivergedError
    from zoo_plugins.distributed.train import check_finite_loss

    check_finite_loss(0.7, epoch=3)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(DivergedError, match=r"^training diverged at epoch 3 \(loss is "
                                                r"(nan|inf)\); lower trainer.optimizer.lr"):
            check_finite_loss(bad, epoch=3)
