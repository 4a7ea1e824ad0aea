"""Property-based hostile configs and command-line overrides (hypothesis).

Whatever a stranger writes into a config or onto the command line, ``zoo validate``
answers with exit 0 or with exit 2 and one ``zoo: error:`` line: never a traceback, a
C++ stack or a hang. Values are drawn from what breaks parsers and schemas: huge and
negative integers, NaN and infinities, wrong types, broken brackets, YAML tags, anchors
and aliases (a "billion laughs" among them), interpolations (``${...}``, resolvers) and
``_target_``-style keys. The examples are derandomized, so CI sees the same ones.

Then the cases of the issue, one test each.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CONFIG = "gcn_cora"
# Keys of gcn_cora's resolved config, whole sections, list items and keys no schema has.
KEYS = ["model.hidden", "model.layers", "model.dropout", "model.name", "model.norm", "model",
        "model.self_loops", "trainer.epochs", "trainer.patience", "trainer.eval_every",
        "trainer.optimizer.lr", "trainer.optimizer", "trainer.optimizer.name", "trainer.name",
        "trainer.batches", "trainer.batches.batch_size", "trainer", "dataset.subset",
        "dataset.name", "dataset", "seeds", "device", "threads", "checkpoint",
        "checkpoint.epochs", "checkpoint.seconds", "regularizers", "regularizers.0",
        "regularizers.0.multiplier", "loggers", "task", "task.name", "graph", "encoder",
        "description", "_target_", "model._target_", "trainer._target_", "model.hidden.x",
        "a..b", "model.[0]", "regularizers.-1", "regularizers.99", "model.hidden[0]",
        "${model}", "model.${x}", "dataset.name.name", "[", "]", ".", "..", "a.",
        ".a", "a[", "a[0", "regularizers[0].multiplier", "model[0]", "[0].name", " ", "+"]


def _bomb(levels: int) -> str:
    """A "billion laughs" in YAML flow style: 10 ** levels values from ~10 * levels."""
    parts = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    parts += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


NASTY = [
    "9223372036854775808", "-9223372036854775809", "1" + "0" * 30, "-1" + "0" * 30,
    "1" * 5000, "1e400", "-1e400", ".nan", ".NaN", ".inf", "-.inf", "1e-400", "0x7fffffff",
    "0o777", "0b1", "1_000", "true", "no", "null", "~", "", "''", "'", '"', "[", "]", "{",
    "}", "[1,", "{a: 1", "[[[[[[[[[[", "- 1", "a: b: c", "? [1, 2]\n: x", ":", "*a",
    "&a [1, *a]", "[&a 1, *a, *a]", "&x {name: adam, lr: *x}", _bomb(7), _bomb(3),
    "${model.hidden}", "${model}", "${trainer}", "${.hidden}", "${..model}", "${oc.env:HOME}",
    "${oc.env:HOME}${oc.env:HOME}", "${oc.decode:'[1, 2]'}", "${oc.create:{a: 1}}",
    "${oc.select:model.hidden}", "${oc.deprecated:model.hidden}", "${foo:1}", "${xx}",
    "${${x}}", "${model}${model}", "${", "$}", "\\${oc.decode:1}", "${model.hidden:1}",
    "!!python/object/apply:os.system ['true']", "!!python/name:os.system", "!!binary aGk=",
    "!!set {a}", "!!omap [a: 1]", "!!timestamp 2001-12-14", "!!float 1", "!!str 3",
    "!!int 1e3", "{_target_: os.system, _args_: [true]}", "{name: gcn, _target_: os.system}",
    "{name: adam, lr: .nan}", "{name: adam, lr: 1e30}", "{name: '../../etc/passwd'}",
    "[{name: distance}]", "{name: full_graph, batch_size: -1}", "cuda:99", "cpu", "auto",
    "\x00", "\ud7ff", "é", "a\nb", "\t", "'\\x00'", "\"\\ud800\"",
]
INTS = st.one_of(st.integers(-100, 100), st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64,
                                                         -(2**63) - 1, 10**30, -(10**30)]))
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
SCALARS = st.one_of(INTS, FLOATS, st.booleans(), st.none(), st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(["name", "_target_", "lr", "hidden"]),
                              st.text(max_size=8)), inner, max_size=4)), max_leaves=12)
VALUE_TEXT = st.one_of(
    st.sampled_from(NASTY),
    VALUES.map(lambda v: yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()),
    st.text(max_size=30),
    st.lists(st.sampled_from(NASTY[:40]), min_size=2, max_size=4).map(", ".join)
    .map(lambda s: f"[{s}]"),
)
# Words starting with "-" are options to argparse, whose own errors are not the config's.
OVERRIDES = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS) | st.text(max_size=12).filter(
        lambda k: not k.startswith("-")), VALUE_TEXT),
    st.builds(lambda k, v: f"{k}+={v}", st.sampled_from(KEYS), VALUE_TEXT),
    st.builds(lambda k: f"~{k}", st.sampled_from(KEYS) | st.text(min_size=1, max_size=12)),
)
FUZZ = settings(max_examples=1500, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.fixture(scope="module", autouse=True)
def _plugins_loaded() -> None:
    """Load the plugins once, so that the time limits below measure the config alone."""
    import zoo.cli

    assert zoo.cli.main(["validate", CONFIG]) == 0


@FUZZ
@given(overrides=st.lists(OVERRIDES, min_size=1, max_size=3))
def test_random_overrides_are_valid_or_one_clean_error(overrides, zoo_main, outcome):
    start = time.monotonic()
    code, _, err = zoo_main("validate", CONFIG, *overrides)
    outcome(code, err)
    assert time.monotonic() - start < 5, overrides  # refused fast, never expanded


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("configs") / "fuzzed.yaml"


BASE = {"dataset": {"name": "planetoid", "subset": "cora"},
        "model": {"name": "gcn", "hidden": 16}, "trainer": {"name": "supervised", "epochs": 5}}
SECTIONS = ["dataset", "model", "trainer", "task", "graph", "encoder", "regularizers",
            "loggers", "seeds", "device", "threads", "checkpoint", "description", "_target_",
            "defaults", "hydra"]


def _config_text(changes: list[tuple[str, str | None, object]]) -> str:
    """gcn_cora-like YAML with sections set, keys set and keys removed."""
    config = {k: dict(v) for k, v in BASE.items()}
    for section, key, value in changes:
        current = config.get(section)
        if key is None:
            config[section] = value
        elif isinstance(current, dict):
            current[key] = value
        else:
            config[section] = {key: value}
    return yaml.safe_dump(config, width=10**6)


RAW_TEXT = st.one_of(
    st.sampled_from(NASTY).map(lambda v: f"dataset: {{name: planetoid}}\nmodel: {v}\n"),
    st.sampled_from(NASTY).map(lambda v: f"{v}\n"),
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin1")),
)
CONFIGS = st.one_of(
    st.lists(st.tuples(st.sampled_from(SECTIONS),
                       st.none() | st.sampled_from(["name", "hidden", "epochs", "lr", "subset",
                                                    "_target_", "patience", "layers"]),
                       VALUES), max_size=4).map(_config_text),
    RAW_TEXT,
)


@FUZZ
@given(text=CONFIGS)
def test_random_config_files_are_valid_or_one_clean_error(text, config_file, zoo_main,
                                                          outcome):
    config_file.write_text(text, encoding="utf-8", errors="surrogatepass")
    start = time.monotonic()
    code, _, err = zoo_main("validate", str(config_file))
    outcome(code, err)
    assert time.monotonic() - start < 5, text[:200]


# -- the cases of the issue, each its own test -----------------------------------------


def test_broken_yaml_inside_an_override(zoo_main, refusal):
    code, out, err = zoo_main("validate", CONFIG, "model.hidden=[1,")
    line = refusal(code, err)
    assert "model.hidden=[1," in line and "not valid YAML" in line
    assert out == ""


def test_anchor_bomb_in_an_override_is_refused_fast(zoo_main, refusal):
    start = time.monotonic()
    code, _, err = zoo_main("validate", CONFIG, f"description={_bomb(9)}")
    assert "more than 10000 values" in refusal(code, err)
    assert time.monotonic() - start < 2


def test_anchor_bomb_in_a_config_file_is_refused_fast(tmp_path, zoo_main, refusal):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(f"dataset: {{name: planetoid}}\ndescription: {_bomb(9)}\n")
    start = time.monotonic()
    code, _, err = zoo_main("validate", str(bomb))
    assert "aliases" in refusal(code, err)
    assert time.monotonic() - start < 2


def test_interpolation_bomb_is_refused_fast(tmp_path, zoo_main, refusal):
    lines = ["dataset: {name: planetoid}", "description:", "  a0: [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    for i in range(1, 10):
        reference = "'${description.a" + str(i - 1) + "}'"
        lines.append(f"  a{i}: [{', '.join([reference] * 10)}]")
    bomb = tmp_path / "interpolations.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    code, _, err = zoo_main("validate", str(bomb))
    assert "interpolations expand the config" in refusal(code, err)
    assert time.monotonic() - start < 2


def test_self_reference_is_refused(zoo_main, refusal):
    code, _, err = zoo_main("validate", CONFIG, "model.hidden=${model}")
    assert "refers to itself" in refusal(code, err)


def test_deep_nesting_is_refused(zoo_main, refusal):
    code, _, err = zoo_main("validate", CONFIG, "description=" + "[" * 500 + "]" * 500)
    assert "deeper than" in refusal(code, err)


@pytest.mark.parametrize("value", ["1" + "0" * 30, "9223372036854775808", "1" * 5000])
def test_huge_integer_is_refused_without_a_cpp_stack(value, zoo_main, refusal):
    code, _, err = zoo_main("validate", CONFIG, f"model.hidden={value}")
    line = refusal(code, err)
    assert "model.hidden" in line and len(line) < 300


def test_negative_patience_is_refused(zoo_main, refusal):
    code, _, err = zoo_main("validate", CONFIG, "trainer.patience=-1")
    assert "trainer.patience" in refusal(code, err)


def test_zero_seeds_is_refused_and_writes_nothing(tmp_path, zoo_main, refusal):
    out = tmp_path / "run"
    code, _, err = zoo_main("run", CONFIG, "--seeds", "0", "--quiet", "--out", str(out))
    assert "--seeds" in refusal(code, err)
    assert not out.exists()


def _zoo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True,
                          text=True, env=dict(os.environ), timeout=timeout)


def test_run_etc_passwd_quotes_at_most_an_excerpt(tmp_path, refusal):
    """A text file that is not YAML mapping: one line, never the file's content."""
    secret = tmp_path / "notes.txt"
    lines = [f"user{i}:x:{i}:{i}:secret-{i}:/home/user{i}:/bin/sh" for i in range(50)]
    secret.write_text("\n".join(lines) + "\n")
    for path in (secret, Path("/etc/passwd")):
        if not path.is_file():
            continue
        proc = _zoo("run", str(path), "--out", str(tmp_path / "run"))
        line = refusal(proc.returncode, proc.stderr)
        assert "must be a YAML mapping" in line
        assert "secret-1" not in line and "/bin/sh" not in line and "root:x" not in line
    assert not (tmp_path / "run").exists()


def test_bomb_and_broken_yaml_through_a_real_process(refusal):
    proc = _zoo("validate", CONFIG, f"description={_bomb(9)}", timeout=60)
    assert "more than 10000 values" in refusal(proc.returncode, proc.stderr)
    proc = _zoo("validate", CONFIG, "model.hidden=[1,", timeout=60)
    assert "not valid YAML" in refusal(proc.returncode, proc.stderr)
    assert proc.stderr.startswith("usage: zoo validate")
