"""Tests of the image datasets: split, labeled subset, fine labels, loaders, errors."""

from __future__ import annotations

import gzip
import logging
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from zoo_plugins.datasets import fetch as fetch_mod
from zoo_plugins.datasets import images as images_mod
from zoo_plugins.datasets.images import digits, image_folder, mnist, read_idx

from zoo.errors import ConfigError, DataError
from zoo.plugins import default_manager

REPO = Path(__file__).resolve().parents[2]
MIRROR = REPO.parent / "shared" / "datasets"
needs_mnist = pytest.mark.skipif(not (MIRROR / "mnist" / "SHA256SUMS").is_file(),
                                 reason="MNIST mirror folder not present")


@pytest.fixture(autouse=True)
def data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZOO_DATA_DIR", str(cache))
    return cache


def _masks(data) -> torch.Tensor:
    return torch.stack([data.extra["train_items"], data.val_mask, data.test_mask])


# --- split ------------------------------------------------------------------------------
def test_split_is_stratified_disjoint_and_covers_everything() -> None:
    data = digits()
    masks = _masks(data)
    assert torch.equal(masks.sum(0), torch.ones(data.num_nodes, dtype=torch.long))
    for c in range(10):
        members = data.labels == c
        n = int(members.sum())
        assert int((data.val_mask & members).sum()) == round(n * 0.1)
        assert int((data.test_mask & members).sum()) == round(n * 0.2)
    assert torch.equal(data.train_mask, data.extra["train_items"])  # labeled_fraction 1
    assert data.graph is None and data.features.shape == (1797, 1, 8, 8)
    assert data.features.dtype == torch.float32 and data.labels.dtype == torch.int64


def test_split_depends_on_split_seed_only() -> None:
    a, b, c = digits(), digits(), digits(split_seed=1)
    assert torch.equal(_masks(a), _masks(b))
    assert not torch.equal(_masks(a), _masks(c))
    assert torch.equal(_masks(a), _masks(digits(labeled_fraction=0.3, fine_labels=2)))


def test_normalization_uses_the_training_split() -> None:
    data = digits(split_seed=3)
    train = data.features[data.extra["train_items"]]
    assert abs(float(train.mean())) < 1e-4 and abs(float(train.std()) - 1) < 1e-3
    norm = data.extra["normalization"]
    assert norm["max_value"] == 16.0 and len(norm["mean"]) == len(norm["std"]) == 1


def test_fractions_that_leave_no_training_split_are_refused() -> None:
    with pytest.raises(ConfigError, match="leaves no training split"):
        digits(val_fraction=0.5, test_fraction=0.5)


def test_callers_get_fresh_tensors() -> None:
    first = digits()
    first.features[:] = 0
    first.labels[:] = -1
    second = digits()
    assert second.features.abs().sum() > 0 and int(second.labels.min()) == 0


# --- labeled subset -------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.001, 0.1, 0.5])
def test_labeled_fraction_is_a_stratified_subset_of_the_training_split(fraction: float) -> None:
    data = digits(labeled_fraction=fraction)
    train_items, labeled = data.extra["train_items"], data.train_mask
    assert not (labeled & ~train_items).any()
    per_class = torch.bincount(data.labels[labeled], minlength=10)
    assert int(per_class.min()) >= 1
    assert abs(int(labeled.sum()) - fraction * int(train_items.sum())) <= 10
    if fraction == 0.001:
        assert per_class.tolist() == [1] * 10
    assert data.describe().endswith(f"split {int(labeled.sum())}/{int(data.val_mask.sum())}/"
                                    f"{int(data.test_mask.sum())}")


def test_smaller_labeled_fractions_are_nested() -> None:
    small, large = digits(labeled_fraction=0.1), digits(labeled_fraction=0.4)
    assert not (small.train_mask & ~large.train_mask).any()


# --- fine labels ------------------------------------------------------------------------
def test_fine_labels_split_each_class_into_coherent_sub_classes() -> None:
    k = 7
    data = digits(fine_labels=k)
    classes = data.extra["classes"]
    assert data.num_classes == 70 and len(data.extra["label_names"]) == 70
    assert data.extra["label_names"][3 * k + 5] == "3/5"
    assert torch.equal(data.labels // k, classes)
    assert torch.equal(classes, digits().labels)
    train_counts = torch.bincount(data.labels[data.extra["train_items"]], minlength=70)
    assert int(train_counts.min()) >= 1
    assert int(torch.bincount(data.labels[data.train_mask], minlength=70).min()) >= 1
    assert torch.equal(data.labels, digits(fine_labels=k).labels)
    # Sub-classes are tighter than their class: the mean within-cluster spread is lower.
    x = data.features.flatten(1)
    spread_fine = torch.stack([x[data.labels == j].var(0).sum() for j in range(70)]).mean()
    spread_coarse = torch.stack([x[classes == c].var(0).sum() for c in range(10)]).mean()
    assert spread_fine < 0.8 * spread_coarse


def test_without_fine_labels_classes_equal_labels() -> None:
    data = digits()
    assert torch.equal(data.extra["classes"], data.labels)
    assert data.extra["label_names"] == data.extra["class_names"] == [str(d) for d in range(10)]
    assert data.extra["ids"][:3] == ["0", "1", "2"] and data.extra["ids"][-1] == "1796"
    assert data.extra["image_shape"] == (1, 8, 8)


def test_too_many_fine_labels_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fine_labels=500 is more than"):
        digits(fine_labels=500)


# --- load_image -------------------------------------------------------------------------------
def test_digits_image_round_trips_through_png(tmp_path: Path) -> None:
    data = digits()
    raw = images_mod._digits_cached()[0][42]  # 0..16
    path = tmp_path / "digit.png"
    Image.fromarray(np.round(raw * 255 / 16).astype(np.uint8), mode="L").save(path)
    loaded = data.extra["load_image"](path)
    assert loaded.shape == (1, 1, 8, 8) and loaded.dtype == torch.float32
    std = data.extra["normalization"]["std"][0]
    assert torch.allclose(loaded[0], data.features[42], atol=0.6 / 255 / std)


def test_load_image_errors_name_the_file(tmp_path: Path) -> None:
    load = digits().extra["load_image"]
    with pytest.raises(DataError, match=r"nowhere\.png does not exist"):
        load(tmp_path / "nowhere.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"cannot read the image file .*bad\.png"):
        load(str(bad))


# --- image_folder ---------------------------------------------------------------------------
def _write_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for cls, names in {"cat": ["b.png", "a.png", "c.png"], "dog": ["z.png", "y.PNG"]}.items():
        (root / cls).mkdir(parents=True)
        for name in names:
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(
                root / cls / name)
    Image.fromarray(rng.integers(0, 256, (9, 9), dtype=np.uint8)).save(root / "dog" / "x.JPG")
    (root / "dog" / "notes.txt").write_text("not an image")
    Image.new("RGB", (4, 4)).save(root / "loose.png")


def test_image_folder_reads_classes_ids_and_channels(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "pets"
    _write_folder(root)
    with caplog.at_level(logging.WARNING):
        data = image_folder(root=str(root), size=8, val_fraction=0.0, test_fraction=0.0)
    assert "ignoring 1 image(s) directly in" in caplog.text
    assert data.extra["ids"] == ["cat/a.png", "cat/b.png", "cat/c.png",
                                 "dog/x.JPG", "dog/y.PNG", "dog/z.png"]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.extra["label_names"] == ["cat", "dog"] and data.name == "pets"
    assert data.features.shape == (6, 3, 8, 8) and data.extra["image_shape"] == (3, 8, 8)
    grey = image_folder(root=str(root), size=[6, 5], channels=1)
    assert grey.features.shape == (6, 1, 6, 5) and grey.extra["ids"] == data.extra["ids"]
    again = data.extra["load_image"](root / "cat" / "b.png")
    assert torch.allclose(again[0], data.features[1], atol=1e-5)


def test_image_folder_rereads_an_edited_file(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    _write_folder(root)
    before = image_folder(root=str(root), size=4)
    Image.new("RGB", (20, 20), (255, 0, 0)).save(root / "cat" / "a.png")
    after = image_folder(root=str(root), size=4)
    assert not torch.equal(before.features, after.features)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing is not an existing folder"):
        image_folder(root=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no class sub-folders"):
        image_folder(root=str(tmp_path / "empty"))
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(DataError, match=r"class folder .*cls holds no \.png"):
        image_folder(root=str(tmp_path / "empty"))
    root = tmp_path / "pets"
    _write_folder(root)
    (root / "dog" / "broken.jpeg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match=r"cannot read the image file .*dog/broken\.jpeg"):
        image_folder(root=str(root))


# --- MNIST: IDX parsing on synthetic files, then the real mirror ---------------------------
def _idx(path: Path, magic: int, array: np.ndarray) -> Path:
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))
    return path


def test_read_idx_refuses_malformed_files(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    good = _idx(tmp_path / "good.gz", 2051, images)
    assert np.array_equal(read_idx(good, magic=2051, ndim=3), images)
    with pytest.raises(DataError, match=r"good\.gz has the IDX magic number 2051, not 2049"):
        read_idx(good, magic=2049, ndim=1)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(gzip.decompress(good.read_bytes())[:-1]))
    with pytest.raises(DataError, match=r"short\.gz holds 23 values where its header 2x3x4"):
        read_idx(short, magic=2051, ndim=3)
    plain = tmp_path / "plain.gz"
    plain.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"plain\.gz is not a readable gzip file"):
        read_idx(plain, magic=2051, ndim=3)


def _fake_mnist(folder: Path, n_images: int, n_labels: int,
                monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    names = images_mod.MNIST_FILES["test"]
    (folder / "mnist").mkdir(parents=True)
    _idx(folder / "mnist" / names[0], 2051, rng.integers(0, 256, (n_images, 28, 28)))
    _idx(folder / "mnist" / names[1], 2049, np.arange(n_labels) % 10)
    for name in names:
        monkeypatch.setitem(images_mod.MNIST_SHA256, name,
                            fetch_mod.sha256_of(folder / "mnist" / name))
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(folder))


def test_mnist_from_a_small_synthetic_mirror(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_mnist(tmp_path / "fake", 40, 40, monkeypatch)
    data = mnist(limit=30, labeled_fraction=0.5)
    assert data.features.shape == (30, 1, 28, 28) and data.name == "mnist-test"
    assert data.labels.tolist() == [i % 10 for i in range(30)]
    assert data.extra["normalization"]["max_value"] == 255.0


def test_mnist_image_and_label_counts_must_agree(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_mnist(tmp_path / "fake", 40, 39, monkeypatch)
    with pytest.raises(DataError, match="holds 40 images but t10k-labels-idx1-ubyte.gz 39"):
        mnist()


@needs_mnist
def test_mnist_through_the_family_layout_mirror(monkeypatch: pytest.MonkeyPatch,
                                                data_env: Path) -> None:
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(MIRROR))
    data = mnist(limit=500)
    assert data.features.shape == (500, 1, 28, 28) and data.num_classes == 10
    assert int(data.labels.min()) >= 0 and int(data.labels.max()) <= 9
    assert len(torch.unique(data.labels)) == 10
    assert (data_env / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()


@needs_mnist
def test_truncated_mnist_file_is_a_data_error(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror" / "mnist"
    mirror.mkdir(parents=True)
    for path in (MIRROR / "mnist").iterdir():
        shutil.copyfile(path, mirror / path.name)
    victim = mirror / "t10k-labels-idx1-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:1000])
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        mnist(limit=10)


# --- registration and optional dependencies ---------------------------------------------
def test_every_dataset_builds_through_the_registry(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    registry = default_manager().registry
    data = registry.build("dataset", {"name": "digits", "labeled_fraction": 0.1})
    assert int(data.train_mask.sum()) < int(data.extra["train_items"].sum())
    _write_folder(tmp_path / "pets")
    data = registry.build("dataset", {"name": "image_folder", "root": str(tmp_path / "pets"),
                                      "size": 4, "channels": 1})
    assert data.features.shape == (6, 1, 4, 4)
    _fake_mnist(tmp_path / "fake", 20, 20, monkeypatch)
    data = registry.build("dataset", {"name": "mnist", "limit": 20})
    assert data.num_nodes == 20
    with pytest.raises(ConfigError, match="labeled_fraction"):
        registry.build("dataset", {"name": "digits", "labeled_fraction": 0})


def test_missing_optional_packages_name_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    load = digits().extra["load_image"]
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ConfigError, match=r"pip install 'zoo\[images\]'"):
        load(tmp_path / "x.png")
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    images_mod._digits_cached.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"needs scikit-learn.*pip install 'zoo\[images\]'"):
            digits()
    finally:
        images_mod._digits_cached.cache_clear()
