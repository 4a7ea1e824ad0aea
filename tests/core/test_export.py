"""``zoo export``: the script it writes is plain Python (no registry, no config), passes
ruff, and trains to the very numbers ``zoo run`` reaches, seed for seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from zoo_plugins.datasets.fetch import mirror_file

import zoo
from zoo.cli import main
from zoo.errors import ConfigError
from zoo.export import Imports, export_script
from zoo.model import Classifier

REPO = Path(__file__).resolve().parents[2]
CORA_FILE = mirror_file("ind.cora.x", "planetoid")
needs_cora = pytest.mark.skipif(CORA_FILE is None or not Path(CORA_FILE).is_file(),
                                reason="needs the local Cora mirror")
# Runs a script as `python train.py ARGS` does, then prints the zoo modules it imported.
WRAPPER = """
import json, runpy, sys
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
print("MODULES " + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "zoo")))
"""
# What a standalone script must not need: config loading, the registry's users, plugins.
FORBIDDEN = ("zoo.api", "zoo.config", "zoo.plugins")
# One thread in both: a thread count chosen by the machine's load could round otherwise.
ONE_THREAD = "threads=1"


@pytest.fixture(autouse=True)
def _fixed_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZOO_THREADS", raising=False)


def export(tmp_path: Path, config: str, *overrides: str) -> Path:
    out = tmp_path / f"{config}.py"
    assert main(["export", config, *overrides, "--out", str(out)]) == 0
    return out


def run_script(script: Path, seeds: int) -> tuple[str, list[str], dict]:
    """Run ``script`` in a fresh interpreter: its output, zoo modules and summary."""
    out = script.with_suffix(".run")
    env = {k: v for k, v in os.environ.items() if k != "ZOO_THREADS"}
    proc = subprocess.run([sys.executable, "-c", WRAPPER, str(script), "--seeds", str(seeds),
                           "--out", str(out)], capture_output=True, text=True,
                          env={**env, "DGLBACKEND": "pytorch"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stdout, _, modules = proc.stdout.rpartition("MODULES ")
    return stdout, json.loads(modules), json.loads((out / "summary.json").read_text())


def check_standalone(script: Path, modules: list[str]) -> None:
    """No registry, config or plugin manager in the source, nor loaded while it ran."""
    source = script.read_text()
    for name in ("zoo.registry", *FORBIDDEN, "zoo.build", "import zoo\n"):
        assert name not in source, name
    # zoo.registry itself is loaded, by zoo.engine and zoo.model (for the labels of their
    # error messages); no Registry is made and no plugin is loaded through it.
    assert not set(FORBIDDEN) & set(modules), modules
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--config",
                           str(REPO / "pyproject.toml"), str(script)],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    compiled = subprocess.run([sys.executable, "-m", "py_compile", str(script)])
    assert compiled.returncode == 0


def assert_same_per_seed(run: dict, script: dict, names: tuple[str, ...]) -> None:
    for name in names:
        assert script["metrics"][name]["values"] == pytest.approx(
            run["metrics"][name]["values"], abs=1e-6), name


@needs_cora
def test_gcn_cora_script_gives_zoo_runs_numbers_per_seed(tmp_path: Path) -> None:
    overrides = ["trainer.epochs=30", ONE_THREAD]
    run = zoo.build("gcn_cora", overrides).fit(seeds=2)
    script = export(tmp_path, "gcn_cora", *overrides)
    stdout, modules, summary = run_script(script, seeds=2)
    check_standalone(script, modules)
    # The same code paths in the same order: equal, not merely close.
    assert_same_per_seed(run, summary, ("test_accuracy", "val_accuracy", "val_loss",
                                        "train_accuracy", "best_epoch"))
    assert summary["seeds"] == [0, 1]
    first = run["metrics"]["test_accuracy"]["values"][0]
    assert f"seed 0: test_accuracy {first:.4f}" in stdout
    assert "test_accuracy: " in stdout and " ± " in stdout
    assert (script.with_suffix(".run") / "weights" / "seed-1.pt").is_file()
    text = script.read_text()
    assert "from zoo_plugins.node_models.gcn import GCN" in text
    assert "adam(params, lr=0.01, weight_decay=0.0005)" in text
    assert "for epoch in range(EPOCHS):" in text and "EPOCHS = 30" in text


@needs_cora
@pytest.mark.parametrize("config, overrides, names", [
    # An encoder alone (no graph in the model).
    ("mlp_cora", ["trainer.epochs=30"], ("test_accuracy", "val_accuracy")),
    # A regularizer, and the baseline trained first from the same seed.
    ("graphreg_mlp_cora", ["trainer.epochs=20"],
     ("test_accuracy", "baseline_test_accuracy", "baseline_val_accuracy", "gain")),
])
def test_encoder_and_regularizer_scripts_match_zoo_run(
        tmp_path: Path, config: str, overrides: list[str], names: tuple[str, ...]) -> None:
    overrides = [*overrides, ONE_THREAD]
    run = zoo.build(config, overrides).fit(seeds=2)
    script = export(tmp_path, config, *overrides)
    _, modules, summary = run_script(script, seeds=2)
    check_standalone(script, modules)
    assert_same_per_seed(run, summary, names)


@needs_cora
def test_gam_script_runs_the_trainer_on_a_hand_built_context(tmp_path: Path) -> None:
    overrides = ["trainer.max_iterations=1", "trainer.steps=20", "trainer.agreement.steps=20"]
    run = zoo.build("gam_cora", overrides).fit(seeds=1)
    script = export(tmp_path, "gam_cora", *overrides)
    stdout, modules, summary = run_script(script, seeds=1)
    check_standalone(script, modules)
    text = script.read_text()
    assert "from zoo_plugins.trainers.gam import GAM" in text
    assert 'optimizer=section("optimizer", "adam", adam, lr=0.01, weight_decay=0.0005)' in text
    assert "agreement=AgreementOptions(" in text and "TrainContext(" in text
    assert "seed 0: test_accuracy 0." in stdout
    assert_same_per_seed(run, summary, ("test_accuracy", "baseline_test_accuracy",
                                        "agreement_accuracy"))


def test_only_parameters_that_differ_from_defaults_are_written() -> None:
    exp = zoo.build("gcn_cora", ["model.hidden=32", "model.norm=right"])
    text = export_script(exp, "zoo export gcn_cora")
    assert 'GCN(data.num_features, out_dim, hidden=32, norm="right")' in text
    assert "data = planetoid()" in text  # subset cora is planetoid's default
    every = export_script(exp, "zoo export gcn_cora", all_params=True)
    assert 'planetoid(subset="cora", self_loops=False)' in every
    assert "dropout=0.5" in every and "EVAL_EVERY = 1" in every


def test_refuses_an_existing_out_unless_forced(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "train.py"
    out.write_text("mine\n")
    assert main(["export", "gcn_cora", "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "mine\n"
    assert main(["export", "gcn_cora", "trainer.epochs=7", "--out", str(out), "--force"]) == 0
    assert "EPOCHS = 7" in out.read_text()
    assert "# Made with:  zoo export gcn_cora trainer.epochs=7 --out" in out.read_text()


def test_unknown_config_and_no_out(capsys: pytest.CaptureFixture) -> None:
    assert main(["export", "gcn_coraa", "--out", "never.py"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: ") and "gcn_cora" in err
    assert not Path("never.py").exists()
    assert main(["export", "gcn_cora"]) == 0  # no --out: printed
    assert "def train_one_seed(seed, data, graph, task, epoch_ms):" in capsys.readouterr().out


def test_a_factory_that_cannot_be_imported_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot be imported by name"):
        Imports().of(lambda: None, "model (node_model 'mine')")
    imports = Imports()
    assert imports.of(Classifier, "x") == "Classifier"
    assert imports.add("elsewhere", "Classifier") == "Classifier_2"  # a clash: aliased
    assert "from elsewhere import Classifier as Classifier_2" in imports.lines()
