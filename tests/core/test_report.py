"""Training curves (zoo.plots) and the HTML report (zoo.report), checked as text and, where
Chromium and playwright are installed, in a real headless browser."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

import zoo
from zoo import plots
from zoo.cli import main
from zoo.errors import ConfigError
from zoo.report import write_report
from zoo_plugins.datasets.fetch import mirror_file

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
needs_cora = pytest.mark.skipif(
    mirror_file("ind.cora.x", "planetoid") is None,
    reason="needs the local Cora mirror")


@pytest.fixture(scope="module")
def gcn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-seed gcn_cora run, a few epochs long."""
    out = tmp_path_factory.mktemp("report") / "gcn_cora"
    zoo.build("gcn_cora", ["trainer.epochs=12"]).fit(seeds=2, out=out)
    return out


@pytest.fixture(scope="module")
def gam_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real GAM run: two iterations of short classifier and agreement training."""
    out = tmp_path_factory.mktemp("report") / "gam_cora"
    zoo.build("gam_cora", ["trainer.max_iterations=2", "trainer.steps=50",
                           "trainer.agreement.steps=50"]).fit(seeds=1, out=out)
    return out


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of a run folder without its weights or drawn figures."""
    return Path(shutil.copytree(run, dest, ignore=shutil.ignore_patterns(
        "weights", "*.png", "*.html")))


def summary_of(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


# -- curves ---------------------------------------------------------------------------


def test_metrics_reader_tolerates_nan_and_broken_lines(tmp_path):
    lines = ['{"seed": 0, "phase": "train", "epoch": 0, "loss": NaN}', "{not json",
             "[1, 2]", '{"seed": 0, "phase": "train", "epoch": 1, "loss": 0.5}', ""]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    records = plots.read_metrics(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [0, 1]
    assert records[0]["loss"] != records[0]["loss"]  # NaN


def test_curves_with_many_seeds_draw_a_band(tmp_path):
    records = [{"seed": s, "phase": "train", "epoch": e, "loss": 1.0 / (e + 1 + s),
                "reg_distance": 0.1, **({"val_accuracy": 0.5 + e / 100} if e % 2 else {})}
               for s in range(5) for e in range(10)]
    text = "\n".join(json.dumps(r) for r in records) + "\n{truncated"
    (tmp_path / "metrics.jsonl").write_text(text)
    assert plots.write_curves(tmp_path) == [tmp_path / plots.CURVES]
    assert is_png(tmp_path / plots.CURVES)
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed away
    groups = plots.epoch_groups(records)
    assert list(groups) == ["train"] and len(groups["train"]) == 5


def test_curves_without_matplotlib_draw_nothing(tmp_path, monkeypatch):
    (tmp_path / "metrics.jsonl").write_text('{"seed": 0, "phase": "train", "epoch": 0}\n')
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if missing
    assert plots.write_curves(tmp_path) == []
    assert plots.curve_files(tmp_path) == []


def test_loss_and_eval_keys():
    assert all(map(plots.is_loss_key, ["loss", "reg_distance", "val_loss", "agreement_loss"]))
    assert all(map(plots.is_eval_key, ["val_accuracy", "test_map_at_10",
                                       "agreement_val_accuracy"]))
    assert not any(map(plots.is_eval_key, ["val_loss", "train_accuracy", "epoch_ms"]))


@needs_cora
def test_curves_of_a_supervised_run(gcn_run, tmp_path):
    run = copy_run(gcn_run, tmp_path / "run")
    assert plots.write_curves(run) == [run / plots.CURVES]
    assert is_png(run / plots.CURVES) and plots.curve_files(run) == [run / plots.CURVES]


@needs_cora
def test_curves_of_a_gam_run(gam_run, tmp_path):
    run = copy_run(gam_run, tmp_path / "run")
    written = plots.write_curves(run)
    assert written == [run / plots.CURVES, run / plots.ITERATIONS]
    assert all(map(is_png, written))
    groups = plots.epoch_groups(plots.read_metrics(run / "metrics.jsonl"))
    assert set(groups) == {"classifier", "agreement"}


# -- report ---------------------------------------------------------------------------


@needs_cora
def test_report_holds_config_metrics_and_inline_images(gcn_run, tmp_path):
    run = copy_run(gcn_run, tmp_path / "run")
    with open(run / "config.yaml", "a") as f:
        f.write('# note: <b>bold</b> & "quoted"\n')
    summary = summary_of(run)
    summary["provenance"] = {"git": "<dirty>", "packages": {"torch": "2.x"}}
    (run / "summary.json").write_text(json.dumps(summary))

    html = write_report([run], tmp_path / "report.html").read_text()
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;" in html
    assert "<b>bold</b>" not in html and "&lt;dirty&gt;" in html
    acc = summary["metrics"]["test_accuracy"]
    assert f"{acc['mean']:.4f} ± {acc['std']:.4f}" in html
    assert all(f"<td>{v:.4f}</td>" in html for v in acc["values"])
    # The reported metrics come first in the table.
    assert html.index(">test_accuracy<") < html.index(">train_accuracy<")
    assert is_png(run / plots.CURVES)  # drawn because the run had none
    assert html.count('src="data:image/png;base64,') == 1
    assert "http://" not in html and "https://" not in html and "<script" not in html


@needs_cora
def test_report_inlines_the_task_figures_from_the_run_only(gcn_run, tmp_path):
    run = copy_run(gcn_run, tmp_path / "run")
    shutil.copy(plots.write_curves(run)[0], run / "embedding_map.png")
    shutil.copy(run / "embedding_map.png", tmp_path / "outside.png")
    summary = summary_of(run)
    summary["files"] = ["embedding_map.png", "../outside.png", "gone.png"]
    (run / "summary.json").write_text(json.dumps(summary))
    html = write_report([run], tmp_path / "r.html").read_text()
    assert html.count('src="data:image/png;base64,') == 2  # curves + embedding map
    assert "<figcaption>embedding_map.png</figcaption>" in html
    assert "../outside.png (not an image in the run folder)" in html
    assert "gone.png (not an image in the run folder)" in html


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(ConfigError, match="is not a run folder: a run folder holds "
                                          "summary.json"):
        write_report([tmp_path], tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


@needs_cora
def test_report_command(gcn_run, gam_run, tmp_path, capsys):
    run = copy_run(gcn_run, tmp_path / "run")
    assert main(["report", str(run)]) == 0
    assert (run / "report.html").is_file()
    assert main(["report", str(run), str(gam_run)]) == 2
    assert "give --out" in capsys.readouterr().err
    assert main(["report", str(run), str(gam_run), "--out", str(tmp_path / "both.html")]) == 0
    html = (tmp_path / "both.html").read_text()
    assert 'href="#run-1"' in html and html.count('src="data:image/png;base64,') == 3


# -- in a real browser ----------------------------------------------------------------


def find_browser() -> str | None:
    """A Chromium-family browser on PATH (Debian's `chromium` package, or Chrome)."""
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    return next((path for path in map(shutil.which, names) if path), None)


@needs_cora
def test_report_renders_in_a_browser(gcn_run, tmp_path):
    browser_path = find_browser()
    if browser_path is None:
        pytest.skip("needs a Chromium browser: apt-get install chromium")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs playwright: pip install -e '.[dev]'")
    run = copy_run(gcn_run, tmp_path / "run")
    report = write_report([run], tmp_path / "report.html")
    acc = summary_of(run)["metrics"]["test_accuracy"]

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, headless=True)
        try:
            page = browser.new_page()
            page.goto(report.resolve().as_uri(), wait_until="load")
            text = page.inner_text("body")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        finally:
            browser.close()
    assert f"{acc['mean']:.4f} ± {acc['std']:.4f}" in text
    assert "test_accuracy" in text and "curves.png" in text
    assert images and all(done and width > 0 for done, width in images), images
