"""Every bundled config validates against the installed components and carries its header."""

from __future__ import annotations

from pathlib import Path

import pytest

import zoo

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_bundled_config_validates_and_says_what_it_measures(path):
    exp = zoo.build(path)
    assert exp.config["dataset"]["name"]
    header = path.read_text().split("\n\n")[0]
    assert header.startswith("#") and "Measured here:" in path.read_text()
