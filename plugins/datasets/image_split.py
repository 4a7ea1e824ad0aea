"""Splits, label options and normalization shared by the image datasets.

:func:`assemble` turns decoded images (uint8 or small-integer pixels, ``(N, C, H, W)``)
and their class labels into the :class:`zoo.GraphData` every image dataset returns
(see :mod:`zoo_plugins.datasets.images` for the conventions). Everything here is
deterministic given ``split_seed`` and uses numpy's own generator and a k-means written
out below, so a dataset config gives the same split and labels on every machine and
library version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.contracts import GraphData
from zoo.errors import ConfigError, DataError

INSTALL_HINT = "pip install 'zoo[images]'"
KMEANS_ITERATIONS = 25
_STD_FLOOR = 1e-6  # a constant channel (an all-black training split) is left unscaled


def stratified_split(classes: np.ndarray, val_fraction: float, test_fraction: float,
                     seed: int) -> np.ndarray:
    """Assign each item to 0 (train), 1 (validation) or 2 (test), class by class.

    Each class gives ``round(n * fraction)`` of its items to validation and to test and
    keeps at least one for training; which ones is a seeded permutation per class.
    """
    if val_fraction + test_fraction >= 1:
        raise ConfigError(f"val_fraction + test_fraction is {val_fraction + test_fraction:g}, "
                          "which leaves no training split; make their sum less than 1")
    rng = np.random.default_rng(seed)
    part = np.zeros(len(classes), dtype=np.int8)
    for c in np.unique(classes):
        members = rng.permutation(np.flatnonzero(classes == c))
        n = len(members)
        n_val, n_test = round(n * val_fraction), round(n * test_fraction)
        while n_val + n_test > n - 1 and n_val + n_test > 0:  # keep one training item
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        part[members[:n_val]] = 1
        part[members[n_val:n_val + n_test]] = 2
    return part


def labeled_subset(labels: np.ndarray, train_items: np.ndarray, fraction: float,
                   seed: int) -> np.ndarray:
    """Mark ``fraction`` of each label's training items (at least one) as labeled.

    The choice is a prefix of a seeded permutation per label, so for one seed a
    smaller fraction labels a subset of what a larger one labels.
    """
    rng = np.random.default_rng([seed, 1])  # a stream of its own: the split stays put
    labeled = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels[train_items]):
        members = rng.permutation(np.flatnonzero(train_items & (labels == c)))
        labeled[members[:max(1, round(len(members) * fraction))]] = True
    return labeled


def kmeans(points: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Centroids ``(k, D)`` of ``points`` by k-means++ and Lloyd iterations.

    No cluster is left empty (see :func:`_fill_empty`); needs ``k`` distinct points.
    """
    rng = np.random.default_rng(seed)
    x = points.astype(np.float64)
    centroids = [x[rng.integers(len(x))]]
    closest = ((x - centroids[0]) ** 2).sum(1)
    for _ in range(1, k):  # k-means++: far points are likelier seeds
        pick = rng.choice(len(x), p=closest / closest.sum()) if closest.sum() > 0 \
            else rng.integers(len(x))
        centroids.append(x[pick])
        closest = np.minimum(closest, ((x - x[pick]) ** 2).sum(1))
    c = np.stack(centroids)
    for _ in range(KMEANS_ITERATIONS):
        assign = _fill_empty(x, c)
        moved = np.stack([x[assign == j].mean(0) for j in range(k)])
        if np.allclose(moved, c):
            break
        c = moved
    _fill_empty(x, c)
    return c


def _fill_empty(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Assign points to centroids ``c``, first moving each centroid that would get no
    point onto the point farthest from its own centroid (``c`` is changed in place)."""
    for _ in range(len(c)):
        assign, dist = nearest(x, c)
        empty = np.setdiff1d(np.arange(len(c)), assign)
        if not len(empty):
            break
        for j, far in zip(empty, np.argsort(-dist, kind="stable")):
            c[j] = x[far]
    return assign


def nearest(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each row's nearest centroid, and the squared distance to it."""
    d = (x * x).sum(1)[:, None] - 2 * x @ centroids.T + (centroids * centroids).sum(1)[None]
    assign = d.argmin(1)
    return assign, np.maximum(d[np.arange(len(x)), assign], 0.0)


def fine_split(pixels: np.ndarray, classes: np.ndarray, train_items: np.ndarray,
               class_names: Sequence[str], k: int, seed: int) -> np.ndarray:
    """Fine labels ``class * k + cluster``: k-means on each class's training items.

    Every item of a class (any split) joins its nearest centroid, so every fine label
    has training items.
    """
    flat = pixels.reshape(len(pixels), -1).astype(np.float64)
    fine = np.zeros(len(classes), dtype=np.int64)
    for c in range(len(class_names)):
        members = np.flatnonzero(classes == c)
        train = flat[members[train_items[members]]]
        distinct = len(np.unique(train, axis=0))
        if distinct < k:
            raise ConfigError(f"fine_labels={k} is more than the {distinct} distinct training "
                              f"images of class '{class_names[c]}'; lower fine_labels or "
                              "the validation and test fractions")
        centroids = kmeans(train, k, seed)
        fine[members] = c * k + nearest(flat[members], centroids)[0]
    return fine


@dataclass(frozen=True)
class ImageLoader:
    """Reads one image file as a ``(1, C, H, W)`` tensor normalized like the dataset.

    The file is converted to grey (``L``) or ``RGB``, resized to the dataset's size with
    Pillow's Lanczos filter (it averages when shrinking), scaled to ``[0, 1]`` (an 8-bit
    value ``v`` is ``v / 255``: for digits, ``v * 16 / 255`` on the 0..16 source scale)
    and standardized with the dataset's per-channel ``mean`` and ``std``.
    """

    channels: int
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, path: str | Path) -> torch.Tensor:
        pixels = read_image(Path(path), self.channels, (self.height, self.width))
        return standardize(pixels[None].astype(np.float32) / 255.0, self.mean, self.std)


def require_pillow() -> tuple[Any, Any]:
    """Pillow's ``Image`` and ``ImageOps`` modules, or a ConfigError saying how to get them."""
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise ConfigError(f"the image datasets need Pillow, which is not installed; run "
                          f"{INSTALL_HINT}") from None
    return Image, ImageOps


def read_image(path: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """Decode an image file into uint8 ``(C, H, W)``; DataError naming the file."""
    image_mod, image_ops = require_pillow()
    try:
        with image_mod.open(path) as img:
            img = image_ops.exif_transpose(img).convert("L" if channels == 1 else "RGB")
            if img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), image_mod.Resampling.LANCZOS)
            array = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image file {path} does not exist; check the path") from None
    except (image_mod.UnidentifiedImageError, image_mod.DecompressionBombError, OSError,
            ValueError, SyntaxError) as err:
        raise DataError(f"cannot read the image file {path}: it is not a readable PNG or "
                        f"JPEG image ({err}); replace or remove the file") from None
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def standardize(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel of an ``(N, C, H, W)`` array, as float32."""
    m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return torch.from_numpy(((x - m) / s).astype(np.float32))


def assemble(pixels: np.ndarray, max_value: float, classes: np.ndarray,
             class_names: Sequence[str], ids: Sequence[str], name: str, *,
             val_fraction: float, test_fraction: float, labeled_fraction: float,
             fine_labels: int, split_seed: int) -> GraphData:
    """Build the image dataset's GraphData (split, labels, normalization, extras)."""
    n, channels, height, width = pixels.shape
    classes = classes.astype(np.int64)
    part = stratified_split(classes, val_fraction, test_fraction, split_seed)
    train_items = part == 0
    if fine_labels > 1:
        labels = fine_split(pixels, classes, train_items, class_names, fine_labels, split_seed)
        label_names = [f"{c}/{j}" for c in class_names for j in range(fine_labels)]
    else:
        labels, label_names = classes, list(class_names)
    labeled = labeled_subset(labels, train_items, labeled_fraction, split_seed)

    scaled = pixels.astype(np.float32) / np.float32(max_value)
    train = scaled[train_items].astype(np.float64)
    mean = tuple(float(v) for v in train.mean(axis=(0, 2, 3)))
    std = tuple(max(float(v), _STD_FLOOR) for v in train.std(axis=(0, 2, 3)))
    return GraphData(
        graph=None,
        features=standardize(scaled, mean, std),
        labels=torch.from_numpy(labels.copy()),
        train_mask=torch.from_numpy(labeled),
        val_mask=torch.from_numpy(part == 1),
        test_mask=torch.from_numpy(part == 2),
        num_classes=len(label_names),
        name=name,
        extra={
            "train_items": torch.from_numpy(train_items),
            "ids": list(ids),
            "classes": torch.from_numpy(classes.copy()),
            "class_names": list(class_names),
            "label_names": label_names,
            "image_shape": (channels, height, width),
            "normalization": {"max_value": float(max_value), "mean": mean, "std": std},
            "load_image": ImageLoader(channels, height, width, mean, std),
        },
    )
