"""Cora in two METIS partitions, written once for the DistDGL tests."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIG = "sage_cora_sampled"


@pytest.fixture(scope="session")
def cora_parts(tmp_path_factory: pytest.TempPathFactory, _data_cache: None) -> Path:
    """The partition config of Cora (sage_cora_sampled) in two METIS partitions."""
    from zoo_plugins.distributed.partition import partition

    return partition(CONFIG, 2, tmp_path_factory.mktemp("distdgl") / "cora-2")
