"""Configs cannot run code.

Every attempt below would create a marker file (or import a module that does) if the
zoo let a config reach code: OmegaConf resolvers beyond interpolation (``oc.decode``,
``oc.create``, a resolver someone registered), Hydra-style ``_target_`` keys, YAML
tags that build Python objects, and component names that look like import paths. Each
must end in one clean ``zoo: error:`` line (exit 2) with the marker absent and the
module never imported. Interpolation itself, and ``${oc.env:NAME}``, keep working.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

CONFIG = "gcn_cora"
EVIL_MODULE = "zoo_hostile_evil"


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A marker path, a module that creates it when imported, and a resolver that
    creates it when called; none may ever run."""
    path = tmp_path / "ran"
    (tmp_path / f"{EVIL_MODULE}.py").write_text(
        f"import pathlib\npathlib.Path({str(path)!r}).touch()\n\ndef thing(*a, **k):\n"
        f"    pathlib.Path({str(path)!r}).touch()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # register_resolver in OmegaConf 2.4, register_new_resolver before.
    register = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
    register("zoo_hostile_touch", lambda *_: path.touch() or 1, replace=True)
    yield path
    OmegaConf.clear_resolver("zoo_hostile_touch")
    assert EVIL_MODULE not in sys.modules


def _touch(marker: Path) -> str:
    return f"touch {marker}"


ATTEMPTS = {
    "oc.decode": lambda m: ["description=${oc.decode:'!!python/object/apply:os.system "
                            f"[\"{_touch(m)}\"]'}}"],
    "oc.create": lambda m: ['description="${oc.create:{a: 1}}"'],
    "custom resolver": lambda m: ["model.hidden=${zoo_hostile_touch:}"],
    "custom resolver nested in oc.env": lambda m: [
        "description=${oc.env:ZOO_HOSTILE_UNSET,${zoo_hostile_touch:}}"],
    "dynamic resolver name": lambda m: ["description=${${model.name}:1}"],
    "_target_ key": lambda m: [f"model._target_={EVIL_MODULE}.thing"],
    "_target_ section": lambda m: [f"model={{_target_: os.system, _args_: ['{_touch(m)}']}}"],
    "_target_ top level": lambda m: ["_target_=os.system", f"_args_=['{_touch(m)}']"],
    "python tag": lambda m: [f"description=!!python/object/apply:os.system ['{_touch(m)}']"],
    "python name tag": lambda m: [f"model.activation=!!python/name:{EVIL_MODULE}.thing"],
    "module path as name": lambda m: [f"model.name={EVIL_MODULE}.thing"],
    "module:attr as name": lambda m: [f"model.name={EVIL_MODULE}:thing"],
    "nested module name": lambda m: [f"trainer.optimizer.name={EVIL_MODULE}.thing"],
}


def test_the_attempts_are_real(marker):
    """Outside the zoo the resolver and the module do run, so the checks below mean
    something."""
    OmegaConf.to_container(OmegaConf.create({"a": "${zoo_hostile_touch:}"}), resolve=True)
    assert marker.exists()
    marker.unlink()
    importlib.import_module(EVIL_MODULE)
    assert marker.exists()
    marker.unlink()
    del sys.modules[EVIL_MODULE]


@pytest.mark.parametrize("attempt", sorted(ATTEMPTS))
def test_an_override_cannot_run_code(attempt, marker, zoo_main, refusal):
    code, out, err = zoo_main("validate", CONFIG, *ATTEMPTS[attempt](marker))
    refusal(code, err)
    assert out == ""
    assert not marker.exists()
    assert EVIL_MODULE not in sys.modules


FILES = {
    "oc.decode": "description: ${oc.decode:'[1, 2]'}\n",
    "custom resolver": "description: ${zoo_hostile_touch:}\n",
    "_target_": "model: {_target_: os.system, _args_: ['touch MARKER']}\n",
    "python tag": "description: !!python/object/apply:os.system ['touch MARKER']\n",
    "python object": "model: !!python/object:zoo_hostile_evil.Thing {a: 1}\n",
    "import path name": "model: {name: zoo_hostile_evil.thing}\n",
}


@pytest.mark.parametrize("attempt", sorted(FILES))
def test_a_config_file_cannot_run_code(attempt, marker, tmp_path, zoo_main, refusal):
    body = FILES[attempt].replace("MARKER", str(marker))
    if not body.startswith("model:"):
        body = "model: {name: gcn}\n" + body
    config = tmp_path / "attempt.yaml"
    config.write_text("dataset: {name: planetoid}\ntrainer: {name: supervised}\n" + body)
    code, out, err = zoo_main("validate", str(config))
    refusal(code, err)
    assert not marker.exists()
    assert EVIL_MODULE not in sys.modules


def test_resolvers_are_named_in_the_error(marker, zoo_main, refusal):
    code, _, err = zoo_main("validate", CONFIG, "description=${oc.decode:'[1]'}")
    line = refusal(code, err)
    assert "resolver 'oc.decode'" in line and "${oc.env:NAME}" in line


def test_target_is_an_unknown_key(marker, zoo_main, refusal):
    code, _, err = zoo_main("validate", CONFIG, "model._target_=os.system")
    assert "model._target_: unknown key" in refusal(code, err)


def test_interpolation_and_environment_variables_still_work(monkeypatch, zoo_main):
    monkeypatch.setenv("ZOO_HOSTILE_NOTE", "from the environment")
    code, out, err = zoo_main("validate", CONFIG, "model.layers=${model.hidden}",
                              "model.hidden=3", "description=${oc.env:ZOO_HOSTILE_NOTE}")
    assert code == 0, err
    resolved = OmegaConf.create(out)
    assert resolved.model.layers == 3
    assert resolved.description == "from the environment"
