"""Runs as search engines: ``zoo.load(run_dir)``, ``zoo embed`` and ``zoo search``.

A run folder holds the resolved config and every seed's trained weights
(``weights/seed-<k>.pt``); :func:`load` rebuilds the experiment and its model from
them. :func:`write_embeddings` saves every item's vector (``embeddings.npy``, float32,
one row per item) with its stable id (``embedding_ids.json``, the dataset's
``extra["ids"]``). :func:`search` finds the items nearest a query by cosine similarity:
exactly (a matrix product) up to ``EXACT_LIMIT`` items, with a faiss HNSW index
(inner product over unit vectors) beyond, when faiss is installed.

Queries: an image file (read and normalized by the dataset's ``extra["load_image"]``,
then embedded by the model), an item's id (its own vector; the item itself is left
out of its results), or a label name (``extra["label_names"]``): the label's row of the
classifier head's weights, the text-to-image search of Graph-RISE.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from zoo.checkpoint import load_file
from zoo.errors import ConfigError, DataError, ZooError

if TYPE_CHECKING:
    from zoo.api import Experiment
    from zoo.contracts import GraphData, ModelOutput

EXACT_LIMIT = 100_000
IndexKind = Literal["auto", "exact", "faiss"]


class QueryError(ZooError):
    """A search query names nothing the run can answer: an unreadable image, an unknown
    id or label (CLI exit code 2)."""

    exit_code = 2


def item_ids(data: GraphData) -> list[str]:
    """Every row's stable id: ``extra["ids"]``, or the row index."""
    ids = data.extra.get("ids")
    return [str(i) for i in ids] if ids is not None else [str(i) for i in range(data.num_nodes)]


def output_vectors(task: Any, output: ModelOutput) -> np.ndarray:
    """The vectors an index stores: the task's ``embed(output)``, else the embedding."""
    embed = getattr(task, "embed", None)
    vectors = embed(output) if callable(embed) else output.embedding
    if vectors.is_sparse:
        vectors = vectors.to_dense()
    return vectors.detach().cpu().float().reshape(vectors.shape[0], -1).numpy()


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class EmbeddingIndex:
    """Cosine nearest neighbours over ``vectors``: exact, or faiss HNSW for large sets."""

    def __init__(self, vectors: np.ndarray, kind: IndexKind = "auto") -> None:
        self.vectors = unit_rows(np.ascontiguousarray(vectors, dtype=np.float32))
        self.faiss = None
        if kind == "faiss" or (kind == "auto" and len(self.vectors) > EXACT_LIMIT):
            try:
                import faiss
            except ImportError:
                if kind == "faiss":
                    raise ConfigError("index 'faiss' needs faiss; pip install faiss-cpu, or "
                                      "use the exact index") from None
                return  # auto: exact search is slower but right
            index = faiss.IndexHNSWFlat(self.vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = 128
            index.add(self.vectors)
            self.faiss = index

    def search(self, query: np.ndarray, k: int, exclude: int | None = None,
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, scores)`` of the ``k`` items nearest ``query`` (one vector), best
        first, leaving out the row ``exclude``."""
        q = unit_rows(np.asarray(query, dtype=np.float32).reshape(1, -1))
        want = min(k + (exclude is not None), len(self.vectors))
        if self.faiss is not None:
            scores, rows = self.faiss.search(q, want)
            scores, rows = scores[0], rows[0]
            keep = rows >= 0
            scores, rows = scores[keep], rows[keep]
        else:
            sims = torch.from_numpy(self.vectors) @ torch.from_numpy(q[0])
            top = sims.topk(want)
            scores, rows = top.values.numpy(), top.indices.numpy()
        if exclude is not None:
            keep = rows != exclude
            scores, rows = scores[keep], rows[keep]
        return rows[:k], scores[:k]


def load(run_dir: str | Path, seed: int | None = None, *, registry: Any = None) -> Experiment:
    """The experiment of a run folder with the trained model of ``seed`` (default: the
    lowest seed saved)."""
    from zoo.api import build

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"'{run}' is not a run folder (no config.yaml); give a folder "
                          "that `zoo run` wrote")
    saved = {int(p.stem.removeprefix("seed-")): p for p in (run / "weights").glob("seed-*.pt")
             if p.stem.removeprefix("seed-").isdigit()}
    if not saved:
        raise ConfigError(f"run folder '{run}' has no trained weights (weights/seed-*.pt); "
                          "it is from an older zoo or its run failed; run the config again")
    if seed is None:
        seed = min(saved)
    if seed not in saved:
        raise ConfigError(f"run folder '{run}' has no weights for seed {seed}; it has seeds "
                          f"{', '.join(map(str, sorted(saved)))}")
    exp = build(run / "config.yaml", registry=registry)
    exp.name = run.name
    model = exp.build_model()
    state = load_file(saved[seed])  # weights-only: a tampered file is refused, not run
    if isinstance(state, dict) and state.get("format") == "zoo-weights":
        state = state["state_dict"]  # with its config, metrics and zoo version
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, AttributeError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot load '{saved[seed]}': {first}; the file is damaged or "
                        "does not match the run's config") from None
    exp._model = model.to(exp.runtime.device)
    exp.seed = seed
    return exp


def write_embeddings(exp: Experiment, folder: str | Path) -> tuple[Path, Path]:
    """Write ``embeddings.npy`` and ``embedding_ids.json`` into ``folder`` (atomically)."""
    ids, vectors = exp.embed()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays, names = folder / "embeddings.npy", folder / "embedding_ids.json"
    _atomic(arrays, lambda f: np.save(f, vectors))
    _atomic(names, lambda f: f.write(json.dumps(ids).encode("utf-8")))
    return arrays, names


def _atomic(path: Path, write: Any) -> None:
    from zoo.run import default_file_mode

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def query_vector(exp: Experiment, ids: list[str], *, image: str | Path | None,
                 item: str | None, text: str | None) -> tuple[np.ndarray, int | None]:
    """The query's vector, and the row to leave out of its results (an id query's own)."""
    given = [name for name, v in (("image", image), ("id", item), ("text", text))
             if v is not None]
    if len(given) != 1:
        raise ConfigError("give exactly one query: an image file, an id or a label text")
    data = exp.data
    if item is not None:
        try:
            row = ids.index(str(item))
        except ValueError:
            raise QueryError(f"no item has the id '{item}'; ids are the dataset's "
                             f"(e.g. '{ids[0]}'); `zoo embed` lists them all") from None
        return exp.embedding_vectors[row], row
    if text is not None:
        names = [str(n) for n in data.extra.get("label_names", range(data.num_classes))]
        if text not in names:
            raise QueryError(f"no label is called '{text}'; labels are "
                             f"{', '.join(names[:10])}{', ...' if len(names) > 10 else ''}")
        head = exp.model.head
        if head is None or not hasattr(head, "weight"):
            raise ConfigError("text search needs a model with a classifier head (task "
                              "'embedding'); search by --image or --id")
        return head.weight[names.index(text)].detach().cpu().float().numpy(), None
    load_image = data.extra.get("load_image")
    if load_image is None:
        raise ConfigError(f"dataset '{data.name}' cannot read image files; search by --id")
    try:
        x = load_image(image)
    except DataError as e:
        raise QueryError(str(e)) from None
    model = exp.model
    model.eval()
    with torch.no_grad():
        out = model(None, x.to(exp.runtime.device))
    return output_vectors(exp.task, out)[0], None


def search(exp: Experiment, *, image: str | Path | None = None, item: str | None = None,
           text: str | None = None, k: int = 10, index: IndexKind = "auto",
           ) -> list[tuple[str, float]]:
    """The ``k`` items nearest one query, as ``(id, cosine similarity)``, best first."""
    if k < 1:
        raise ConfigError(f"k must be a whole number >= 1, got {k}")
    if getattr(exp, "_search_index", None) is None or exp._search_index[0] != index:
        ids, vectors = exp.embed()
        exp.embedding_vectors = vectors
        exp._search_index = (index, EmbeddingIndex(vectors, index), ids)
    _, found, ids = exp._search_index
    query, exclude = query_vector(exp, ids, image=image, item=item, text=text)
    rows, scores = found.search(query, k, exclude)
    return [(ids[r], float(s)) for r, s in zip(rows, scores)]
