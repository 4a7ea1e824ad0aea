"""ZOO_DATA_MIRROR layouts: one sub-folder per dataset family, or the files directly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from zoo_plugins.datasets import fetch as fetch_mod
from zoo_plugins.datasets import planetoid as planetoid_mod

from zoo.errors import DataError

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "datasets"
ARGS = {"base_url": "https://invalid.example"}


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("ZOO_DATA_DIR", str(folder))
    monkeypatch.delenv("ZOO_DATA_MIRROR", raising=False)
    return folder


def _put(path: Path, content: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return hashlib.sha256(content).hexdigest()


def test_family_sub_folder_is_preferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        cache: Path) -> None:
    mirror = tmp_path / "mirror"
    in_family = _put(mirror / "fam" / "a.bin", b"from the family folder")
    _put(mirror / "a.bin", b"from the top")
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(mirror))
    path = fetch_mod.fetch("a.bin", in_family, group="fam", **ARGS)
    assert path == cache / "fam" / "a.bin" and path.read_bytes() == b"from the family folder"
    assert fetch_mod.source_for("x", "fam") == str(mirror / "fam")


def test_flat_folder_still_works_for_a_group_without_sub_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    mirror = tmp_path / "flat"
    digest = _put(mirror / "b.bin", b"flat file")
    _put(mirror / "other" / "b.bin", b"another family's file")
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(mirror))
    assert fetch_mod.fetch("b.bin", digest, group="fam", **ARGS).read_bytes() == b"flat file"
    assert fetch_mod.source_for("x", "fam") == str(mirror)
    with pytest.raises(DataError, match=r"cannot read c\.bin from the mirror .*flat"):
        fetch_mod.fetch("c.bin", "0" * 64, group="fam", **ARGS)


def test_unpinned_files_use_the_family_folders_sums(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "sums"
    digest = _put(mirror / "fam2" / "d.bin", b"delta")
    (mirror / "fam2" / "SHA256SUMS").write_text(f"{digest}  d.bin\n")
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(mirror))
    assert fetch_mod.fetch("d.bin", None, group="fam2", **ARGS).read_bytes() == b"delta"


def test_group_placeholder_and_http_mirrors(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert fetch_mod.source_for("https://canon") == "https://canon"
    assert fetch_mod.source_for("https://canon", "fam") == "https://canon"
    monkeypatch.setenv("ZOO_DATA_MIRROR", "https://host/data/{group}")
    assert fetch_mod.source_for("x", "mnist") == "https://host/data/mnist"
    monkeypatch.setenv("ZOO_DATA_MIRROR", "https://host/data")  # never probed
    assert fetch_mod.source_for("x", "mnist") == "https://host/data"
    assert fetch_mod.source_for("x") == "https://host/data"
    digest = _put(tmp_path / "store-fam" / "e.bin", b"echo")
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(tmp_path / "store-{group}"))
    assert fetch_mod.fetch("e.bin", digest, group="fam", **ARGS).read_bytes() == b"echo"


@pytest.mark.skipif(not (SHARED / "planetoid" / "ind.cora.x").is_file(),
                    reason="shared dataset mirror not present")
def test_planetoid_reads_a_family_layout_mirror(monkeypatch: pytest.MonkeyPatch,
                                                cache: Path) -> None:
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(SHARED))
    data = planetoid_mod.planetoid(subset="cora")
    assert data.num_nodes == 2708
    assert (cache / "planetoid" / "ind.cora.x").is_file()
