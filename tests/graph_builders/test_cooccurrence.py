"""The ``cooccurrence`` graph builder against counts and PMI worked out by hand."""

from __future__ import annotations

import json
import math

import dgl
import pytest
import torch
from zoo_plugins.graph_builders.cooccurrence import cooccurrence_graph

from zoo.contracts import GraphData
from zoo.errors import ConfigError, DataError

# Five sessions (the blank line is not one); item 2 repeats in the second but counts
# once. Sessions containing each item: c0=1, c1=2, c2=4, c3=1, c4=2 (n = 5).
# Pairs: (0,1)=1, (0,2)=1, (1,2)=2, (2,3)=1, (2,4)=1. Node 5 never appears.
SESSIONS = ["[0, 1, 2]", "[1, 2, 2]", "", "[2, 3]", "[4]", "[2, 4]"]
COUNTS = {(0, 1): 1, (0, 2): 1, (1, 2): 2, (2, 3): 1, (2, 4): 1}


def make_data(num_nodes: int = 6) -> GraphData:
    mask = torch.ones(num_nodes, dtype=torch.bool)
    return GraphData(dgl.graph(([], []), num_nodes=num_nodes), torch.eye(num_nodes),
                     torch.zeros(num_nodes, dtype=torch.int64), mask, mask, mask,
                     num_classes=1, name="items")


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def edge_dict(graph: dgl.DGLGraph) -> dict[tuple[int, int], float]:
    src, dst = graph.edges()
    return {(int(s), int(d)): float(w) for s, d, w in zip(src, dst, graph.edata["weight"])}


def both_directions(pairs: dict[tuple[int, int], float]) -> dict[tuple[int, int], float]:
    return {**pairs, **{(j, i): w for (i, j), w in pairs.items()}}


def test_counts_are_sessions_shared(tmp_path):
    graph = cooccurrence_graph(make_data(), sessions=write_lines(tmp_path / "s.jsonl", SESSIONS))
    assert graph.num_nodes() == 6
    assert edge_dict(graph) == both_directions({p: float(c) for p, c in COUNTS.items()})
    assert graph.edata["weight"].dtype == torch.float32
    assert int(graph.in_degrees()[5]) == 0


def test_pmi_drops_pairs_at_or_below_chance(tmp_path):
    graph = cooccurrence_graph(make_data(), weighting="pmi",
                               sessions=write_lines(tmp_path / "s.jsonl", SESSIONS))
    n, item = 5, {0: 1, 1: 2, 2: 4, 3: 1, 4: 2}
    expected = {(i, j): math.log(c * n / (item[i] * item[j])) for (i, j), c in COUNTS.items()}
    assert expected[(2, 4)] < 0  # log(5/8): together less often than chance
    del expected[(2, 4)]
    assert edge_dict(graph) == pytest.approx(both_directions(expected), rel=1e-6)


def test_min_count(tmp_path):
    graph = cooccurrence_graph(make_data(), min_count=2,
                               sessions=write_lines(tmp_path / "s.jsonl", SESSIONS))
    assert edge_dict(graph) == {(1, 2): 2.0, (2, 1): 2.0}
    with pytest.raises(ConfigError, match="no edges"):
        cooccurrence_graph(make_data(), min_count=3,
                           sessions=write_lines(tmp_path / "s.jsonl", SESSIONS))


def test_string_ids_through_a_json_or_tsv_id_map(tmp_path):
    sessions = write_lines(tmp_path / "s.jsonl", ['["a", "b"]', '["b", "c", 7]'])
    mapping = {"a": 3, "b": 1, "c": 0, "7": 4}
    json_map = tmp_path / "ids.json"
    json_map.write_text(json.dumps(mapping))
    tsv_map = write_lines(tmp_path / "ids.tsv", [f"{k}\t{v}" for k, v in mapping.items()])
    expected = both_directions({(3, 1): 1.0, (1, 0): 1.0, (1, 4): 1.0, (0, 4): 1.0})
    for id_map in (str(json_map), tsv_map):
        graph = cooccurrence_graph(make_data(), sessions=sessions, id_map=id_map)
        assert edge_dict(graph) == expected


def test_index_ids_accept_digit_strings(tmp_path):
    graph = cooccurrence_graph(make_data(), sessions=write_lines(tmp_path / "s.jsonl",
                                                                 ['["0", 1]']))
    assert edge_dict(graph) == {(0, 1): 1.0, (1, 0): 1.0}


@pytest.mark.parametrize("bad_line, message", [
    ("[1, 2", "not valid JSON"),
    ('{"items": [1]}', "expected a JSON list"),
    ("[1, true]", "neither an integer nor a string"),
    ("[1, 6]", r"not a node index in \[0, 6\)"),
    ("[1, -1]", "not a node index"),
])
def test_malformed_session_lines_name_file_and_line(tmp_path, bad_line, message):
    path = write_lines(tmp_path / "bad.jsonl", ["[0, 1]", "", bad_line, "[2, 3]"])
    with pytest.raises(DataError, match=message) as info:
        cooccurrence_graph(make_data(), sessions=path)
    assert f"{path}, line 3:" in str(info.value)


def test_unknown_item_in_an_id_map_names_the_line(tmp_path):
    json_map = tmp_path / "ids.json"
    json_map.write_text(json.dumps({"a": 0, "b": 1}))
    path = write_lines(tmp_path / "s.jsonl", ['["a", "b"]', '["a", "zzz"]'])
    with pytest.raises(DataError, match="line 2: item id 'zzz' is not in the id_map"):
        cooccurrence_graph(make_data(), sessions=path, id_map=str(json_map))


def test_bad_id_maps_and_missing_files(tmp_path):
    sessions = write_lines(tmp_path / "s.jsonl", ['["a", "b"]'])
    out_of_range = write_lines(tmp_path / "ids.tsv", ["a\t0", "b\t99"])
    with pytest.raises(DataError, match="line 2: node index 99"):
        cooccurrence_graph(make_data(), sessions=sessions, id_map=out_of_range)
    twice = write_lines(tmp_path / "twice.tsv", ["a\t0", "a\t1"])
    with pytest.raises(DataError, match="mapped twice"):
        cooccurrence_graph(make_data(), sessions=sessions, id_map=twice)
    with pytest.raises(ConfigError, match="not found"):
        cooccurrence_graph(make_data(), sessions=str(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError, match=".json or .tsv"):
        cooccurrence_graph(make_data(), sessions=sessions,
                           id_map=write_lines(tmp_path / "ids.txt", ["a 0"]))
