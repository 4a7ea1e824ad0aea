"""A run as a search engine, end to end: ``zoo run`` of a tiny ResNet embedding on an
``image_folder`` dataset, then ``zoo embed``, ``zoo search`` (by image, id and label,
exact and faiss) and ``zoo.load`` from Python, and their one-line user errors.

One run (a few seconds) serves every test in this module."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import zoo
from zoo.cli import main as zoo_main

pytest.importorskip("PIL")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIDE = 8


def zoo_cli(*args: str) -> subprocess.CompletedProcess:
    """``zoo ARGS`` in a subprocess, as users run it (one CPU thread: on a shared
    machine torch's default thread count can make these tiny models many times slower)."""
    env = {**os.environ, "DGLBACKEND": "pytorch", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def zoo_in_process(*args: str) -> subprocess.CompletedProcess:
    """``zoo ARGS`` through ``zoo.cli.main`` in this process (no interpreter start-up):
    an exception that escapes main fails the test just as a traceback would."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = zoo_main(list(args))
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def user_error(out: subprocess.CompletedProcess, usage: bool = False) -> str:
    """Assert a clean user error: exit code 2, no traceback, one ``zoo: error:`` line
    (after the command's usage when ``usage``)."""
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if not line.startswith("zoo: warning")]
    if usage:
        assert lines and lines[0].startswith("usage: zoo "), lines
        lines = [line for line in lines[1:] if not line.startswith(" ")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("zoo: error: ")
    return lines[0]


def pattern(name: str) -> np.ndarray:
    """Each class's picture: a bright left half (a), top half (b), or a checkerboard (c)."""
    x = np.zeros((SIDE, SIDE))
    if name == "a":
        x[:, : SIDE // 2] = 1
    elif name == "b":
        x[: SIDE // 2, :] = 1
    else:
        x[(np.arange(SIDE)[:, None] + np.arange(SIDE)[None, :]) % 2 == 0] = 1
    return x


def noisy(name: str, rng: np.random.Generator) -> np.ndarray:
    return np.clip(pattern(name) * 200 + 20 + rng.normal(0, 25, (SIDE, SIDE)), 0,
                   255).astype(np.uint8)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The in-process searches on one torch thread too; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three class folders of 12 grey 8x8 PNGs; ``a/dup1.png`` and ``a/dup2.png`` have
    identical pixels."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name in "abc":
        (root / name).mkdir()
        for i in range(10 if name == "a" else 12):
            Image.fromarray(noisy(name, rng), "L").save(root / name / f"{i:02d}.png")
    dup = noisy("a", rng)
    for file in ("dup1.png", "dup2.png"):
        Image.fromarray(dup, "L").save(root / "a" / file)
    return root


@pytest.fixture(scope="module")
def run(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``zoo run`` of a tiny ResNet embedding, then ``zoo embed``, in subprocesses."""
    work = tmp_path_factory.mktemp("search-run")
    config = {
        "dataset": {"name": "image_folder", "root": str(images), "size": SIDE, "channels": 1,
                    "val_fraction": 0.2, "test_fraction": 0.2},
        "encoder": {"name": "resnet", "depth": 18, "width": 4, "stages": 2,
                    "normalize": True},
        "task": {"name": "embedding", "embedding_size": 8, "map_points": 50},
        "trainer": {"name": "supervised", "epochs": 3,
                    "batches": {"name": "items", "batch_size": 16},
                    "optimizer": {"name": "adam", "lr": 0.01}},
        "seeds": 1, "threads": 1,
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = work / "run"
    res = zoo_cli("run", str(path), "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "test_precision_at_10:" in res.stdout
    res = zoo_cli("embed", str(out))
    assert res.returncode == 0, res.stderr
    assert "wrote 36 embeddings of seed 0" in res.stdout
    return out


@pytest.fixture(scope="module")
def embeddings(run: Path) -> tuple[list[str], np.ndarray]:
    ids = json.loads((run / "embedding_ids.json").read_text())
    return ids, np.load(run / "embeddings.npy")


def search_json(run: Path, *query: str, in_process: bool = False) -> list[tuple[str, float]]:
    res = (zoo_in_process if in_process else zoo_cli)("search", str(run), *query, "--json")
    assert res.returncode == 0, res.stderr
    return [(r["id"], r["score"]) for r in json.loads(res.stdout)]


# -- the run folder -----------------------------------------------------------------------
def test_run_folder_holds_weights_and_the_embedding_map(run: Path):
    for name in ("config.yaml", "summary.json", "metrics.jsonl", "weights/seed-0.pt",
                 "embedding_map.png"):
        assert (run / name).is_file(), name
    assert (run / "embedding_map.png").read_bytes().startswith(PNG_SIGNATURE)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["files"] == ["embedding_map.png"]
    assert summary["task"]["monitor"] == "val_precision_at_10"
    assert not list(run.glob(".*.tmp"))


def test_embed_writes_vectors_and_sorted_ids(images: Path, embeddings):
    ids, vectors = embeddings
    expected = sorted(p.relative_to(images).as_posix() for p in images.rglob("*.png"))
    assert ids == expected and len(ids) == 36
    assert vectors.shape == (36, 8) and vectors.dtype == np.float32
    # resnet normalize: true gives unit-norm embeddings.
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# -- searching -----------------------------------------------------------------------------
def test_search_by_id_finds_the_duplicate_and_never_the_query(run: Path):
    found = search_json(run, "--id", "a/dup1.png", "-k", "3")
    assert len(found) == 3
    assert found[0][0] == "a/dup2.png"
    assert found[0][1] == pytest.approx(1.0, abs=1e-5)
    assert "a/dup1.png" not in [i for i, _ in found]
    scores = [s for _, s in found]
    assert scores == sorted(scores, reverse=True)


def test_search_by_image_finds_both_duplicates(run: Path, images: Path):
    found = search_json(run, "--image", str(images / "a" / "dup1.png"), "-k", "4")
    assert {i for i, _ in found[:2]} == {"a/dup1.png", "a/dup2.png"}
    assert found[0][1] == pytest.approx(1.0, abs=1e-5)
    assert found[1][1] == pytest.approx(1.0, abs=1e-5)


def test_search_by_label_ranks_by_the_heads_class_weights(run: Path, embeddings):
    ids, vectors = embeddings
    saved = torch.load(run / "weights" / "seed-0.pt", map_location="cpu", weights_only=True)
    state = saved["state_dict"]
    (key,) = [k for k in state if k.endswith("head.weight")]
    row = state[key][["a", "b", "c"].index("b")].double().numpy()
    units = vectors.astype(np.float64) / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = units @ (row / np.linalg.norm(row))
    order = np.argsort(-cosine, kind="stable")[:5]
    found = search_json(run, "--text", "b", "-k", "5")
    np.testing.assert_allclose([s for _, s in found], cosine[order], atol=2e-5)
    if np.diff(cosine[order]).min() < -1e-5:  # no near-ties: the order is certain
        assert [i for i, _ in found] == [ids[r] for r in order]
    else:
        assert sorted(i for i, _ in found) == sorted(ids[r] for r in order)


def test_exact_and_faiss_indexes_agree(run: Path):
    pytest.importorskip("faiss")
    exact = search_json(run, "--id", "c/03.png", "-k", "3", "--index", "exact",
                        in_process=True)
    hnsw = search_json(run, "--id", "c/03.png", "-k", "3", "--index", "faiss",
                       in_process=True)
    assert exact[0][0] == hnsw[0][0]
    assert exact[0][1] == pytest.approx(hnsw[0][1], abs=1e-5)
    assert "c/03.png" not in [i for i, _ in exact + hnsw]


# -- user errors ---------------------------------------------------------------------------
def test_unknown_id_is_one_line_in_a_subprocess(run: Path):
    line = user_error(zoo_cli("search", str(run), "--id", "a/nope.png"))
    assert "no item has the id 'a/nope.png'" in line


@pytest.mark.parametrize("case", ["corrupt", "label", "missing", "not_a_run", "no_query",
                                  "zero_k"])
def test_search_errors_are_one_line_exit_2(run: Path, tmp_path: Path, case: str):
    if case == "corrupt":
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"this is not a PNG at all" * 10)
        line = user_error(zoo_in_process("search", str(run), "--image", str(bad)))
        assert "bad.png" in line and "not a readable PNG or JPEG" in line
    elif case == "label":
        line = user_error(zoo_in_process("search", str(run), "--text", "zebra"))
        assert "no label is called 'zebra'; labels are a, b, c" in line
    elif case == "missing":
        line = user_error(zoo_in_process("search", str(run), "--image",
                                         str(tmp_path / "nowhere.png")))
        assert "nowhere.png' not found" in line
    elif case == "not_a_run":
        line = user_error(zoo_in_process("search", str(tmp_path), "--id", "a/00.png"))
        assert "is not a run folder (no config.yaml)" in line
    elif case == "no_query":
        line = user_error(zoo_in_process("search", str(run)), usage=True)
        assert "give a query" in line
    else:
        line = user_error(zoo_in_process("search", str(run), "--id", "a/00.png", "-k", "0"),
                          usage=True)
        assert "-k must be a whole number >= 1" in line


def test_embed_of_a_folder_that_is_not_a_run(tmp_path: Path):
    line = user_error(zoo_in_process("embed", str(tmp_path)))
    assert "is not a run folder" in line
    assert not (tmp_path / "embeddings.npy").exists()


# -- from Python ---------------------------------------------------------------------------
def test_load_search_and_embed_from_python(run: Path, embeddings):
    exp = zoo.load(run)
    assert exp.seed == 0
    found = exp.search(id="a/dup1.png", k=1)
    assert len(found) == 1 and found[0][0] == "a/dup2.png"
    ids, vectors = exp.embed()
    assert ids == embeddings[0]
    np.testing.assert_allclose(vectors, embeddings[1], rtol=1e-4, atol=1e-5)
    with pytest.raises(zoo.ConfigError, match="no weights for seed 3"):
        zoo.load(run, seed=3)
