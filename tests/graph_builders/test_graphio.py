"""Graph files: save/load round trips (.bin, .tsv), atomic writes, bad files named by
line, the ``file`` builder, and ``zoo graph build`` on the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dgl
import numpy as np
import pytest
import torch
from zoo_plugins.graph_builders.file import file_graph

import zoo
from zoo.contracts import GraphData
from zoo.errors import ConfigError, DataError
from zoo.graphio import load_graph, save_graph
from zoo_plugins.datasets.fetch import mirror_file

REPO = Path(__file__).resolve().parents[2]
HAVE_CORA = mirror_file("ind.cora.x", "planetoid") is not None
requires_cora = pytest.mark.skipif(not HAVE_CORA, reason="Cora is not available offline "
                                   "(no ZOO_DATA_MIRROR folder)")


def weighted_graph(num_nodes: int = 6) -> dgl.DGLGraph:
    rng = np.random.default_rng(0)
    src = torch.tensor([0, 1, 1, 2, 4, 3])
    dst = torch.tensor([1, 0, 2, 1, 3, 3])
    graph = dgl.graph((src, dst), num_nodes=num_nodes)  # node 5 isolated
    graph.edata["weight"] = torch.from_numpy(rng.random(6).astype(np.float32))
    return graph


def make_data(num_nodes: int) -> GraphData:
    mask = torch.ones(num_nodes, dtype=torch.bool)
    return GraphData(dgl.graph(([], []), num_nodes=num_nodes), torch.eye(num_nodes),
                     torch.zeros(num_nodes, dtype=torch.int64), mask, mask, mask,
                     num_classes=1, name="tiny")


def assert_same_graph(a: dgl.DGLGraph, b: dgl.DGLGraph) -> None:
    assert a.num_nodes() == b.num_nodes()
    ka = {(int(s), int(d)): float(w) for s, d, w in zip(*a.edges(), a.edata["weight"])}
    kb = {(int(s), int(d)): float(w) for s, d, w in zip(*b.edges(), b.edata["weight"])}
    assert ka == kb  # float32 weights survive exactly
    assert b.edata["weight"].dtype == torch.float32


@pytest.mark.parametrize("suffix", [".bin", ".tsv"])
def test_round_trip(tmp_path, suffix):
    graph = weighted_graph()
    path = save_graph(graph, tmp_path / f"g{suffix}")
    assert_same_graph(graph, load_graph(path, num_nodes=6))
    assert [p.name for p in tmp_path.iterdir()] == [f"g{suffix}"]  # no temp files left


def test_tsv_is_nsl_edge_list_and_node_count_defaults_to_largest_id(tmp_path):
    path = save_graph(weighted_graph(), tmp_path / "g.tsv")
    first = path.read_text().splitlines()[0].split("\t")
    assert first[:2] == ["0", "1"] and len(first) == 3
    assert load_graph(path).num_nodes() == 5  # isolated node 5 is not in the file


def test_tsv_missing_weight_is_one_and_duplicates_keep_the_largest(tmp_path):
    path = tmp_path / "nsl.tsv"
    path.write_text("0\t1\n0\t1\t0.25\n1\t2\t0.5\n1\t2\t0.125\n\n")
    graph = load_graph(path)
    weights = {(int(s), int(d)): float(w)
               for s, d, w in zip(*graph.edges(), graph.edata["weight"])}
    assert weights == {(0, 1): 1.0, (1, 2): 0.5}


def test_failed_save_leaves_the_old_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / "g.bin"
    save_graph(weighted_graph(), path)
    before = path.read_bytes()

    def broken_save(filename, graphs, labels=None):
        Path(filename).write_bytes(b"half a graph")
        raise OSError("disk full")

    monkeypatch.setattr(dgl, "save_graphs", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_graph(weighted_graph(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.bin"]


@pytest.mark.parametrize("content, message", [
    ("0\t1\t0.5\n1\t2\t0.5\t9\n", "line 2: expected 'src<TAB>dst<TAB>weight'"),
    ("0\t1\t0.5\n\n1\tx\t0.5\n", "line 3: node ids must be integers"),
    ("0\t1\t-0.5\n", "line 1: edge weight '-0.5' must be finite and non-negative"),
    ("0\t1\tnan\n", "line 1: edge weight 'nan'"),
    ("0\t-1\t1\n", "line 1: node ids must be >= 0"),
    ("\n", "has no edges"),
])
def test_bad_tsv_lines_are_named(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_graph(path)


def test_bin_with_negative_weights_is_rejected(tmp_path):
    graph = weighted_graph()
    graph.edata["weight"][2] = -1.0
    path = save_graph(graph, tmp_path / "neg.bin")
    with pytest.raises(DataError, match="negative or not finite"):
        load_graph(path)


def test_unknown_format_missing_file_and_corrupt_bin(tmp_path):
    with pytest.raises(ConfigError, match=r"\.bin .* or \.tsv"):
        save_graph(weighted_graph(), tmp_path / "g.csv")
    with pytest.raises(DataError, match="not found"):
        load_graph(tmp_path / "missing.bin")
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(b"not a graph")
    with pytest.raises(DataError, match="not a readable DGL graph file"):
        load_graph(corrupt)


def test_file_builder_checks_the_node_count(tmp_path):
    for suffix in (".bin", ".tsv"):
        path = str(save_graph(weighted_graph(), tmp_path / f"g{suffix}"))
        assert_same_graph(weighted_graph(), file_graph(make_data(6), path=path))
    with pytest.raises(DataError, match="has 6 nodes but the dataset has 7"):
        file_graph(make_data(7), path=str(tmp_path / "g.bin"))
    with pytest.raises(DataError, match="line 5: node id 4 is not below the dataset's 4"):
        file_graph(make_data(4), path=str(tmp_path / "g.tsv"))


def test_file_builder_applies_the_common_options(tmp_path):
    path = str(save_graph(weighted_graph(), tmp_path / "g.bin"))
    graph = file_graph(make_data(6), path=path, self_loops=False, undirected=True)
    assert not graph.has_edges_between(3, 3)
    assert graph.has_edges_between(3, 4)


@requires_cora
def test_zoo_graph_build_writes_a_file_the_file_builder_loads(tmp_path):
    config = tmp_path / "knn.yaml"
    config.write_text("dataset: {name: planetoid, subset: cora}\n"
                      "graph: {name: knn, k: 5, threshold: null}\n"
                      "encoder: {name: mlp}\n"
                      "trainer: {name: supervised}\n")
    out = tmp_path / "cora_knn.bin"
    env = {**os.environ, "DGLBACKEND": "pytorch"}
    done = subprocess.run([sys.executable, "-m", "zoo.cli", "graph", "build", str(config),
                           "graph.k=3", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "saved graph with 2708 nodes" in done.stdout
    built = zoo.build(str(config), ["graph.k=3"]).graph
    loaded = zoo.build({"dataset": {"name": "planetoid", "subset": "cora"},
                        "graph": {"name": "file", "path": str(out)},
                        "encoder": {"name": "mlp"}, "trainer": {"name": "supervised"}}).graph
    assert_same_graph(built, loaded)


@requires_cora
def test_zoo_graph_build_rejects_an_unknown_format(tmp_path, capsys):
    from zoo.cli import main

    config = tmp_path / "c.yaml"
    config.write_text("dataset: {name: planetoid, subset: cora}\n"
                      "encoder: {name: mlp}\ntrainer: {name: supervised}\n")
    assert main(["graph", "build", str(config), "--out", str(tmp_path / "g.csv")]) == 2
    assert "must end in .bin" in capsys.readouterr().err
