"""Task ``embedding``: Graph-RISE's image semantic embedding (Juan et al., WSDM 2020).

The model (a ResNet, or any encoder) maps an item to an embedding of
``embedding_size`` units: that is its output (``ModelOutput.logits``) and what image
search indexes. The task gives every model a classifier head over the label space
(:class:`zoo_plugins.tasks.sampled_softmax.ClassifierHead`): class weights trained by a
softmax cross-entropy on the labeled items — a *sampled* softmax with the log-Q
correction when the label space is huge (Graph-RISE: 40M classes, 100K sampled per
step). Graph regularization (the ``distance`` regularizer over session co-occurrence
neighbours) acts on the embeddings (``target: logits``: the model's output) or on the
predicted label distributions (``target: scores``, ``transform: softmax``).

Metrics (each for ``val_`` and ``test_`` queries against the index of the training
split, labeled or not; relevant = same class, ``extra["classes"]`` when the labels are
finer): ``precision_at_10``, ``recall_at_10``, ``map_at_10``, ``triplet_accuracy`` (see
:mod:`zoo_plugins.tasks.retrieval`), ``accuracy`` (the head's arg-max against the
labels) and ``val_loss`` (the full softmax cross-entropy of the validation items). The
epoch with the best ``val_precision_at_10`` is kept, ties to the lower ``val_loss``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import torch

import zoo
from zoo.run import default_file_mode
from zoo.schema import Ge
from zoo_plugins.tasks.retrieval import retrieval_metrics
from zoo_plugins.tasks.sampled_softmax import ClassifierHead

# Above this many classes the head's gradients are sparse by default (sparse: null):
# a dense gradient and Adam update over every class row would dominate each step.
SPARSE_ABOVE = 100_000


class Embedding:
    """Learn an item embedding: a classifier head (full or sampled softmax) and retrieval metrics.

    Args:
        embedding_size: width of the embedding (the model's output).
        num_sampled: classes sampled per step for the sampled softmax (with the log-Q
            correction); null, or at least the number of classes, trains the full
            softmax.
        sampler: proposal of the sampled classes: 'uniform' or 'log_uniform' (Zipfian:
            assumes classes numbered by decreasing frequency).
        remove_accidental_hits: mask sampled classes that equal a row's true class.
        sparse: sparse gradients for the class weights (only the sampled rows are
            touched; the optimizer then updates them with sparse Adam); null: when
            there are more than 100,000 classes.
        k: the cutoff of the retrieval metrics (precision_at_<k>...).
        map_points: test items drawn on the 2-D map (t-SNE) written to the run folder;
            0 draws none.
    """

    mode: Literal["max", "min"] = "max"
    tie_break = "val_loss"

    def __init__(self, *, embedding_size: Annotated[int, Ge(1)] = 64,
                 num_sampled: Annotated[int, Ge(1)] | None = None,
                 sampler: Literal["uniform", "log_uniform"] = "log_uniform",
                 remove_accidental_hits: bool = True, sparse: bool | None = None,
                 k: Annotated[int, Ge(1)] = 10,
                 map_points: Annotated[int, Ge(0)] = 2000) -> None:
        self.embedding_size, self.num_sampled, self.sampler = embedding_size, num_sampled, sampler
        self.remove_accidental_hits, self.sparse = remove_accidental_hits, sparse
        self.k, self.map_points = k, map_points
        self.monitor = f"val_precision_at_{k}"
        self.report = (f"test_precision_at_{k}", f"test_map_at_{k}", "test_accuracy")

    def output_size(self, data: zoo.GraphData) -> int:
        """The embedding's width."""
        return self.embedding_size

    def head(self, data: zoo.GraphData, dim: int) -> ClassifierHead:
        """Class weights over the dataset's label space, scored from the embedding."""
        sparse = self.sparse if self.sparse is not None else data.num_classes > SPARSE_ABOVE
        return ClassifierHead(dim, int(data.num_classes), num_sampled=self.num_sampled,
                              sampler=self.sampler,
                              remove_accidental_hits=self.remove_accidental_hits,
                              sparse=sparse)

    @staticmethod
    def _head(output: zoo.ModelOutput) -> ClassifierHead:
        if output.head is None:
            raise zoo.ContractError("task 'embedding' got a model output without its "
                                    "classifier head; build models with zoo's build_model")
        return output.head

    def loss(self, output: zoo.ModelOutput, batch: zoo.Batch) -> torch.Tensor:
        """Softmax cross-entropy (sampled in training when ``num_sampled`` is set) of the
        batch's ``loss_rows``: their mean, or their sum over ``loss_norm``."""
        rows = batch.loss_rows
        head = self._head(output)
        if batch.loss_norm is None:
            return head.loss(output.logits[rows], batch.labels[rows])
        return head.loss(output.logits[rows], batch.labels[rows],
                         reduction="sum") / batch.loss_norm

    def embed(self, output: zoo.ModelOutput) -> torch.Tensor:
        """The vectors an image search indexes: the embeddings (the model's output)."""
        return output.logits

    def evaluate(self, output: zoo.ModelOutput, data: zoo.GraphData) -> dict[str, torch.Tensor]:
        """Retrieval metrics of the validation and test items against the training
        split, the head's accuracy on each split and the validation loss."""
        head, emb = self._head(output), output.logits
        classes = data.extra.get("classes", data.labels).to(emb.device)
        index = data.extra.get("train_items", data.train_mask).to(emb.device)
        metrics: dict[str, torch.Tensor] = {}
        for split, mask in (("val", data.val_mask), ("test", data.test_mask)):
            found = retrieval_metrics(emb[mask], classes[mask], emb[index], classes[index],
                                      k=self.k)
            metrics.update({f"{split}_{name}": v for name, v in found.items()})
        for split, mask in (("train", data.train_mask), ("val", data.val_mask),
                            ("test", data.test_mask)):
            labels = data.labels[mask]
            metrics[f"{split}_accuracy"] = ((head.predict(emb[mask]) == labels).float().mean()
                                            if labels.numel() else emb.new_zeros(()))
        val = data.val_mask
        metrics["val_loss"] = (full_cross_entropy(head, emb[val], data.labels[val])
                               if val.any() else emb.new_zeros(()))
        return metrics

    def write_files(self, output: zoo.ModelOutput, data: zoo.GraphData,
                    folder: Path) -> list[Path]:
        """``embedding_map.png``: a t-SNE map of the test embeddings, coloured by class."""
        if self.map_points == 0 or not data.test_mask.any():
            return []
        classes = data.extra.get("classes", data.labels)
        test = data.test_mask.nonzero().squeeze(1)
        generator = torch.Generator().manual_seed(0)
        if test.numel() > self.map_points:
            test = test[torch.randperm(test.numel(), generator=generator)[: self.map_points]]
        path = Path(folder) / "embedding_map.png"
        draw_map(output.logits[test].detach().cpu().float().numpy(),
                 classes[test].cpu().numpy(), path,
                 title=f"{data.name}: t-SNE of {test.numel()} test embeddings",
                 names=class_names(data))
        return [path]


def class_names(data: zoo.GraphData) -> list[str] | None:
    """Names of the classes the map colours by: the coarse ones when labels are finer
    (``extra["class_names"]``, or the label names when they name the coarse classes)."""
    names = data.extra.get("label_names")
    if "classes" in data.extra:
        coarse = int(data.extra["classes"].max()) + 1
        names = data.extra.get("class_names", names)
        return list(names) if names is not None and len(names) == coarse else None
    return list(names) if names is not None else None


def full_cross_entropy(head: ClassifierHead, embedding: torch.Tensor, labels: torch.Tensor,
                       chunk: int = 65536) -> torch.Tensor:
    """Mean full-softmax cross-entropy over class chunks (no gradient): a huge label
    space costs ``O(rows x chunk)`` memory."""
    return head.chunked_cross_entropy(embedding, labels, chunk)


def draw_map(points, classes, path: Path, *, title: str, names: list[str] | None) -> None:
    """Write a t-SNE map of ``points`` coloured by ``classes`` to ``path`` (PNG, headless,
    written whole or not at all)."""
    try:
        import matplotlib
        from sklearn.manifold import TSNE
    except ImportError as e:
        raise zoo.ConfigError(f"the embedding map needs {e.name}; install it with "
                              "pip install 'zoo[images]', or set task.map_points=0") from None
    matplotlib.use("Agg")  # headless: no display is needed or used
    import matplotlib.pyplot as plt

    perplexity = min(30.0, max(2.0, (len(points) - 1) / 3))
    xy = TSNE(n_components=2, init="pca", random_state=0, perplexity=perplexity,
              learning_rate="auto").fit_transform(points)
    fig, ax = plt.subplots(figsize=(7, 7), dpi=100)
    scatter = ax.scatter(xy[:, 0], xy[:, 1], c=classes, cmap="tab10" if classes.max() < 10
                         else "tab20", s=6, alpha=0.8)
    handles, labels = scatter.legend_elements(num=None)
    if names is not None:
        labels = [names[int(c)] for c in sorted(set(classes.tolist()))]
    ax.legend(handles, labels, loc="best", fontsize=8, markerscale=1.5, title="class")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", bbox_inches="tight")
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("task", "embedding", Embedding)
