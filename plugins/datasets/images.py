"""Image datasets: ``digits`` (scikit-learn's 8x8 digits), ``mnist`` and ``image_folder``.

They are sets of items without a graph (``graph`` is None; graph builders such as
session co-occurrence or kNN make one) and share one layout, built by
:func:`zoo_plugins.datasets.image_split.assemble`:

- ``features``: float32 ``(N, C, H, W)``. Pixels are scaled to ``[0, 1]`` (divided by
  the source's maximum: 16 for digits, 255 otherwise), then standardized per channel
  by the mean and standard deviation of the training split (all its items, labeled or
  not; never validation or test items). The values used are in
  ``extra["normalization"]``.
- ``labels``: ``(N,)`` int64 in ``0..num_classes-1``.
- Split: seeded by ``split_seed`` alone (not by the run's seed: the split is part of
  the dataset config) and stratified by class: each class gives ``val_fraction`` of
  its items (default 0.1) to ``val_mask`` and ``test_fraction`` (default 0.2) to
  ``test_mask``, rounded per class; the rest is the training split.
- ``labeled_fraction`` (default 1): the share of each label's training items whose
  label may be trained on (at least one per label), the only ones in ``train_mask``.
  The other training items keep their true label in ``labels``, for evaluation, but
  are never in ``train_mask``. For one ``split_seed`` a smaller fraction labels a
  subset of the items a larger one labels.
- The labels option, ``fine_labels`` (default 1), builds a large label space on a small
  dataset, for testing huge label spaces: with ``fine_labels = k > 1`` each class is
  split into ``k`` visually coherent sub-classes by k-means (seeded by ``split_seed``)
  on the class's training-split pixels, and every item of the class, in any split,
  joins its nearest centroid. ``labels`` become ``class * k + cluster``,
  ``num_classes`` is ``classes * k``, every fine label has training items, and the
  labeled subset is drawn per fine label.

``extra`` holds:

- ``train_items``: bool ``(N,)`` tensor, the whole training split (labeled or not),
  for session generators and retrieval indexes;
- ``ids``: N stable string ids (digits, mnist: the index in the source file, ``"0"``...;
  image_folder: the relative POSIX path ``"class/file.png"``);
- ``classes``: int64 ``(N,)`` tensor, each item's class (equal to ``labels`` when
  ``fine_labels`` is 1); ``class_names``: the class names;
- ``label_names``: a name per label (the class names, or ``"3/17"``: class 3,
  sub-class 17);
- ``image_shape``: ``(C, H, W)``; ``normalization``: ``{"max_value", "mean", "std"}``;
- ``load_image``: ``load_image(path) -> (1, C, H, W)`` tensor, a PNG or JPEG file read
  with Pillow, converted to grey or RGB, resized to ``(H, W)`` and normalized exactly as
  ``features`` (an 8-bit value ``v`` stands for ``v / 255`` of the source's maximum:
  ``v * 16 / 255`` for digits, so digits written as PNG with ``p * 255 / 16`` read
  back to within rounding). Digits and MNIST are light strokes on black. A missing or
  unreadable file raises :class:`zoo.errors.DataError`.

These extras stay on the CPU when the zoo moves the data to a device.
"""

from __future__ import annotations

import functools
import gzip
import logging
import math
import os
import zlib
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import numpy as np
from zoo_plugins.datasets import fetch as fetch_mod
from zoo_plugins.datasets.image_split import INSTALL_HINT, assemble, read_image

import zoo
from zoo.contracts import GraphData
from zoo.errors import ConfigError, DataError
from zoo.schema import Ge, Gt, Le, Lt

log = logging.getLogger(__name__)

SplitFraction = Annotated[float, Ge(0), Lt(1)]
LabeledFraction = Annotated[float, Gt(0), Le(1)]
FineLabels = Annotated[int, Ge(1)]
Side = Annotated[int, Ge(1)]

# torchvision's first MNIST mirror: it serves the original gz files unchanged over https
# (yann.lecun.com is often unreachable).
MNIST_BASE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist"
MNIST_GROUP = "mnist"
MNIST_FILES = {  # part -> (images, labels)
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
}
# t10k: copied from the SHA256SUMS of the project's dataset mirror. train: not verified
# here (the mirror lacks those files, no network at build time); these are the values
# TensorFlow Datasets' MNIST builder pins and many public projects repeat, and those
# same lists agree with the mirror on both t10k files.
MNIST_SHA256: dict[str, str | None] = {
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
}
DOWNLOAD_TIMEOUT_S = 60.0
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DIGIT_NAMES = tuple(str(d) for d in range(10))


def digits(*, val_fraction: SplitFraction = 0.1, test_fraction: SplitFraction = 0.2,
           labeled_fraction: LabeledFraction = 1.0, fine_labels: FineLabels = 1,
           split_seed: int = 0) -> GraphData:
    """scikit-learn's 8x8 handwritten digits (1797 grey images, 10 classes; no download).

    Args:
        val_fraction: share of each class in the validation split.
        test_fraction: share of each class in the test split.
        labeled_fraction: share of each label's training items whose label may be
            trained on (at least one per label); the rest are unlabeled training items.
        fine_labels: split each class into this many k-means sub-classes (labels become
            class * fine_labels + sub-class); 1 keeps the 10 classes.
        split_seed: seed of the split, the labeled subset and the sub-classes.
    """
    images, targets = _digits_cached()
    return assemble(images[:, None], 16.0, targets, DIGIT_NAMES,
                    [str(i) for i in range(len(targets))], "digits",
                    val_fraction=val_fraction, test_fraction=test_fraction,
                    labeled_fraction=labeled_fraction, fine_labels=fine_labels,
                    split_seed=split_seed)


# zoo.testing's conformance check may build it as is: scikit-learn ships the images.
digits.sample_config = {}


def mnist(*, part: Literal["test", "train"] = "test", limit: Side | None = None,
          val_fraction: SplitFraction = 0.1, test_fraction: SplitFraction = 0.2,
          labeled_fraction: LabeledFraction = 1.0, fine_labels: FineLabels = 1,
          split_seed: int = 0) -> GraphData:
    """MNIST handwritten digits (grey 28x28, 10 classes), one of its two IDX files.

    The files are fetched from torchvision's public mirror
    (https://ossci-datasets.s3.amazonaws.com/mnist) or ``ZOO_DATA_MIRROR``, verified
    against pinned SHA-256 values and cached. The zoo's train/validation/test split is
    drawn within the chosen part.

    Args:
        part: which published file pair to load: 'test' (t10k, 10,000 images) or
            'train' (60,000 images).
        limit: keep only the first this many images of the file (null: all).
        val_fraction: share of each class in the validation split.
        test_fraction: share of each class in the test split.
        labeled_fraction: share of each label's training items whose label may be
            trained on (at least one per label); the rest are unlabeled training items.
        fine_labels: split each class into this many k-means sub-classes (labels become
            class * fine_labels + sub-class); 1 keeps the 10 classes.
        split_seed: seed of the split, the labeled subset and the sub-classes.
    """
    if part not in MNIST_FILES:
        raise ConfigError(f"unknown mnist part {part!r}; valid parts are test, train")
    images, labels = _mnist_cached(part, fetch_mod.source_for(MNIST_BASE_URL, MNIST_GROUP),
                                   str(fetch_mod.cache_root()))
    n = len(labels) if limit is None else min(int(limit), len(labels))
    return assemble(images[:n, None], 255.0, labels[:n].astype(np.int64), DIGIT_NAMES,
                    [str(i) for i in range(n)], f"mnist-{part}",
                    val_fraction=val_fraction, test_fraction=test_fraction,
                    labeled_fraction=labeled_fraction, fine_labels=fine_labels,
                    split_seed=split_seed)


def image_folder(*, root: str, size: Side | tuple[Side, Side] = 32,
                 channels: Literal[1, 3] = 3, val_fraction: SplitFraction = 0.1,
                 test_fraction: SplitFraction = 0.2, labeled_fraction: LabeledFraction = 1.0,
                 fine_labels: FineLabels = 1, split_seed: int = 0) -> GraphData:
    """A folder of class sub-folders of PNG/JPEG images, one class per sub-folder.

    Classes are the sub-folder names, sorted; an image belongs to the class folder it
    is in (at any depth below it). Files with the extensions .png, .jpg or .jpeg (any
    case) count; other files and hidden names are skipped, and images directly in
    ``root`` are ignored with a warning. Item ids are the sorted relative POSIX paths.

    Args:
        root: the folder holding one sub-folder of images per class.
        size: side of the square the images are resized to, or [height, width].
        channels: 1 (grey) or 3 (RGB); images are converted to it.
        val_fraction: share of each class in the validation split.
        test_fraction: share of each class in the test split.
        labeled_fraction: share of each label's training items whose label may be
            trained on (at least one per label); the rest are unlabeled training items.
        fine_labels: split each class into this many k-means sub-classes (labels become
            class * fine_labels + sub-class); 1 keeps one label per folder.
        split_seed: seed of the split, the labeled subset and the sub-classes.
    """
    hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    folder = Path(root).expanduser()
    class_names, files = scan_image_folder(folder)
    fingerprint = tuple((rel, *_stat(folder / rel)) for rel, _ in files)
    pixels = _decode_folder(str(folder.resolve()), hw, int(channels), fingerprint)
    classes = np.array([c for _, c in files], dtype=np.int64)
    return assemble(pixels, 255.0, classes, class_names, [rel for rel, _ in files],
                    folder.resolve().name or str(folder), val_fraction=val_fraction,
                    test_fraction=test_fraction, labeled_fraction=labeled_fraction,
                    fine_labels=fine_labels, split_seed=split_seed)


@zoo.hookimpl
def zoo_register(registry: Any) -> None:
    """Register the ``digits``, ``mnist`` and ``image_folder`` datasets."""
    registry.add("dataset", "digits", digits)
    registry.add("dataset", "mnist", mnist)
    registry.add("dataset", "image_folder", image_folder)


def clear_cache() -> None:
    """Forget the images decoded in this process."""
    for cached in (_digits_cached, _mnist_cached, _decode_folder):
        cached.cache_clear()


# -- digits ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _digits_cached() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigError("the digits dataset needs scikit-learn, which is not installed; "
                          f"run {INSTALL_HINT}") from None
    bunch = load_digits()
    images, targets = bunch.images.astype(np.float32), bunch.target.astype(np.int64)
    images.setflags(write=False)  # shared by every call: callers get copies
    targets.setflags(write=False)
    return images, targets


# -- MNIST -------------------------------------------------------------------------------
# Keyed by source and cache folder, so a changed ZOO_DATA_MIRROR or ZOO_DATA_DIR (as in
# tests) never serves another source's data.
@functools.lru_cache(maxsize=2)
def _mnist_cached(part: str, source: str, cache_dir: str) -> tuple[np.ndarray, np.ndarray]:
    paths = [fetch_mod.fetch(name, MNIST_SHA256.get(name), group=MNIST_GROUP,
                             base_url=MNIST_BASE_URL, timeout=DOWNLOAD_TIMEOUT_S)
             for name in MNIST_FILES[part]]
    images = read_idx(paths[0], magic=2051, ndim=3)
    labels = read_idx(paths[1], magic=2049, ndim=1)
    if len(images) != len(labels):
        raise DataError(f"{paths[0].name} holds {len(images)} images but {paths[1].name} "
                        f"{len(labels)} labels; delete both from {paths[0].parent} to fetch "
                        "them again")
    if len(labels) and labels.max() > 9:
        _bad_idx(paths[1], f"holds the label {int(labels.max())}, outside 0..9")
    images.setflags(write=False)  # shared by every call: callers get copies
    labels.setflags(write=False)
    return images, labels


def read_idx(path: Path, *, magic: int, ndim: int) -> np.ndarray:
    """Parse a gzip-compressed IDX file of uint8 values (magic 2051: images, 2049: labels).

    The header is the big-endian uint32 magic, then one uint32 per dimension; the
    payload must hold exactly their product of bytes. No more than that is decompressed
    (a small gzip file can unpack to gigabytes).
    """
    header = 4 * (1 + ndim)
    try:
        with gzip.open(path, "rb") as handle:
            head = handle.read(header)
            if len(head) < header:
                _bad_idx(path, "is shorter than its IDX header")
            found, *dims = (int(v) for v in np.frombuffer(head, dtype=">u4"))
            if found != magic:
                _bad_idx(path, f"has the IDX magic number {found}, not {magic}")
            size = math.prod(dims)
            if size > fetch_mod.MAX_BYTES:
                _bad_idx(path, f"has a header ({'x'.join(map(str, dims))}) that promises "
                               f"more than {fetch_mod.MAX_BYTES:,} values")
            payload = handle.read(size + 1)
    except (OSError, EOFError, zlib.error) as err:
        _bad_idx(path, f"is not a readable gzip file ({str(err)[:80]})")
    if len(payload) != size:
        _bad_idx(path, f"holds {'more' if len(payload) > size else len(payload)} values "
                       f"where its header {'x'.join(map(str, dims))} promises {size}")
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims).copy()


def _bad_idx(path: Path, problem: str) -> NoReturn:
    raise DataError(f"the MNIST file {path} {problem}: it is corrupt; delete it to fetch "
                    "it again, or replace it in the mirror")


# -- image folders -----------------------------------------------------------------------
def scan_image_folder(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sorted sub-folders) and ``(relative POSIX path, class)`` per image,
    sorted by path."""
    if not root.is_dir():
        raise ConfigError(f"image_folder root {root} is not an existing folder; set root to "
                          "a folder with one sub-folder of images per class")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    loose = [p.name for p in entries if p.is_file() and _is_image(p)]
    if loose:
        log.warning("image_folder: ignoring %d image(s) directly in %s (such as %s): "
                    "images must sit in a class sub-folder", len(loose), root, loose[0])
    class_names = [p.name for p in entries if p.is_dir()]
    if not class_names:
        raise DataError(f"{root} holds no class sub-folders; put each class's images in a "
                        "sub-folder named after the class")
    files: list[tuple[str, int]] = []
    for label, name in enumerate(class_names):
        found = [p.relative_to(root).as_posix() for p in (root / name).rglob("*")
                 if _is_image(p) and p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(root).parts)]
        if not found:
            raise DataError(f"the class folder {root / name} holds no .png, .jpg or .jpeg "
                            "image; add images to it or remove it")
        files += [(rel, label) for rel in found]
    return class_names, sorted(files)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _stat(path: Path) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except OSError as err:
        raise DataError(f"cannot read the image file {path}: {err.strerror or err}; fix its "
                        "permissions or remove it") from None
    return stat.st_size, stat.st_mtime_ns


# Keyed by every file's path, size and modification time: an edited folder is read again.
@functools.lru_cache(maxsize=2)
def _decode_folder(root: str, size: tuple[int, int], channels: int,
                   fingerprint: tuple[tuple[str, int, int], ...]) -> np.ndarray:
    pixels = np.empty((len(fingerprint), channels, *size), dtype=np.uint8)
    for i, (rel, *_) in enumerate(fingerprint):
        pixels[i] = read_image(Path(root) / rel, channels, size)
    pixels.setflags(write=False)
    return pixels
