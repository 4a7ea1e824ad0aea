"""Shared test set-up: datasets come from the local mirror beside the checkout when it
exists (no network in tests), into a per-session cache folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# One sub-folder per dataset family (planetoid/, mnist/), the layout ZOO_DATA_MIRROR takes.
MIRROR = REPO.parent / "shared" / "datasets"

os.environ.setdefault("DGLBACKEND", "pytorch")
if MIRROR.is_dir():
    os.environ.setdefault("ZOO_DATA_MIRROR", str(MIRROR))



@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One dataset cache for the whole session, unless the caller set ZOO_DATA_DIR."""
    if "ZOO_DATA_DIR" not in os.environ:
        os.environ["ZOO_DATA_DIR"] = str(tmp_path_factory.mktemp("zoo-data"))
