"""scripts/config_table.py: the README's table of configs, made from results/*/summary.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location(
        "config_table", REPO / "scripts" / "config_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


config_table = load_script()


def fake_summary(test: list[float], val: float = 0.8, wall: float = 6.0,
                 report: str = "test_accuracy", monitor: str = "val_accuracy") -> dict:
    mean = sum(test) / len(test)
    std = (sum((v - mean) ** 2 for v in test) / (len(test) - 1)) ** 0.5 if len(test) > 1 else 0
    return {"config": {}, "seeds": list(range(len(test))),
            "task": {"name": "node_classification", "monitor": monitor, "mode": "max",
                     "report": [report, monitor]},
            "metrics": {report: {"mean": mean, "std": std, "values": test},
                        monitor: {"mean": val, "std": 0.0, "values": [val] * len(test)}},
            "timing": {"epoch_ms_median": 5.84, "wall_s": wall}}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fake checkout: configs with headers, two results records, a README with markers."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "gcn_cora.yaml").write_text(
        "# GCN on Cora | reproduces Kipf & Welling, \"Semi-Supervised\n#   Classification\" "
        "(ICLR 2017).\n"
        "model: {name: gcn}\n")
    (tmp_path / "configs" / "gam_cora.yaml").write_text("model: {name: gcn}\n")
    for name, summary in [("gcn_cora", fake_summary([0.81, 0.83], wall=6.0)),
                          ("gam_cora", fake_summary([0.84], val=0.82, wall=90.0))]:
        (tmp_path / "results" / name).mkdir(parents=True)
        (tmp_path / "results" / name / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "README.md").write_text(
        f"# zoo\n\n## Configs\n\n{config_table.START}\nold table\n{config_table.END}\n\nmore\n")
    return tmp_path


def run(project: Path, *args: str) -> int:
    return config_table.main([*args, "--readme", str(project / "README.md"),
                              "--results", str(project / "results"),
                              "--configs", str(project / "configs")])


def test_table_from_summaries(project):
    assert run(project) == 0
    readme = (project / "README.md").read_text()
    expected = "\n".join([
        config_table.HEADER,
        "| `gam_cora` | — | test_accuracy 0.840 ± 0.000 | 1 | val_accuracy 0.820 | 5.8 | 90.0 |",
        "| `gcn_cora` | GCN on Cora \\| reproduces Kipf & Welling, \"Semi-Supervised … "
        "| test_accuracy 0.820 ± 0.014 | 2 | val_accuracy 0.800 | 5.8 | 3.0 |",
    ])
    assert readme == (f"# zoo\n\n## Configs\n\n{config_table.START}\n{expected}\n"
                      f"{config_table.END}\n\nmore\n")
    assert run(project) == 0 and (project / "README.md").read_text() == readme  # idempotent


def test_check_reports_a_stale_readme(project, capsys):
    assert run(project, "--check") == 1
    assert "stale" in capsys.readouterr().err
    assert "old table" in (project / "README.md").read_text()  # --check changes nothing
    assert run(project) == 0 and run(project, "--check") == 0
    summary = fake_summary([0.5, 0.6])
    (project / "results" / "gcn_cora" / "summary.json").write_text(json.dumps(summary))
    assert run(project, "--check") == 1


def test_from_copies_only_the_records(project):
    src = project / "runs" / "gcn_cora-20240131-235959-2"
    (src / "weights").mkdir(parents=True)
    (src / "summary.json").write_text(json.dumps(fake_summary([0.7, 0.7, 0.7])))
    (src / "config.yaml").write_text("model: {name: gcn}\n")
    (src / "metrics.jsonl").write_text("{}\n")
    assert run(project, "--from", str(src)) == 0
    dest = project / "results" / "gcn_cora"
    assert sorted(p.name for p in dest.iterdir()) == ["config.yaml", "summary.json"]
    assert "test_accuracy 0.700 ± 0.000 | 3 |" in (project / "README.md").read_text()


def test_from_drops_the_machine_local_provenance(project):
    src = project / "runs" / "gcn_cora"
    src.mkdir(parents=True)
    summary = fake_summary([0.7])
    summary["provenance"] = {
        "zoo": "0.2.0", "packages": {"torch": "2.13.0"},
        "command": "zoo run gcn_cora --out /home/someone/runs/gcn_cora",
        "cwd": "/home/someone/zoo",
        "host": {"hostname": "lab-7", "cpu": "AMD EPYC", "cores": 2}}
    (src / "summary.json").write_text(json.dumps(summary))
    assert run(project, "--from", str(src)) == 0
    kept = json.loads((project / "results" / "gcn_cora" / "summary.json").read_text())
    assert kept["provenance"] == {"zoo": "0.2.0", "packages": {"torch": "2.13.0"},
                                  "host": {"cpu": "AMD EPYC", "cores": 2}}
    assert kept["metrics"] == summary["metrics"]


def test_clear_errors(project, capsys):
    unknown = project / "runs" / "my_experiment"
    unknown.mkdir(parents=True)
    (unknown / "summary.json").write_text(json.dumps(fake_summary([0.5])))
    known = project / "runs" / "gcn_cora"
    known.mkdir()
    (known / "summary.json").write_text(json.dumps(fake_summary([0.1])))
    before = (project / "results" / "gcn_cora" / "summary.json").read_text()
    assert run(project, "--from", str(known), str(unknown)) == 2
    assert "cannot tell which config" in capsys.readouterr().err
    # Every folder is checked before any is copied.
    assert (project / "results" / "gcn_cora" / "summary.json").read_text() == before
    (project / "README.md").write_text("# zoo\n")
    assert run(project) == 2
    assert "put the two markers" in capsys.readouterr().err


def test_readme_table_is_in_sync_with_results():
    if not list((REPO / "results").glob("*/summary.json")):
        pytest.skip("results/ holds no summary.json yet")
    assert config_table.main(["--check"]) == 0, (
        "README.md's configs table differs from results/: run python scripts/config_table.py")
