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


TWINS = sorted(p for p in CONFIGS if p.stem.endswith("_noreg"))


@pytest.mark.parametrize("twin", TWINS, ids=[p.stem for p in TWINS])
def test_a_noreg_twin_is_its_config_without_the_regularizers(twin):
    """A twin differs from its config in the regularizers alone, so that comparing them
    measures the regularizer and nothing else."""
    config = zoo.build(twin.with_name(twin.name.replace("_noreg", ""))).config
    plain = zoo.build(twin).config
    assert config["regularizers"] and not plain["regularizers"]
    assert {**config, "regularizers": []} == plain
