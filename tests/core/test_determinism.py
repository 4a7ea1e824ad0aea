"""Determinism: the same config and seed give identical metrics on the CPU, for every
trainer and batch source, run twice in fresh processes (``zoo run ... threads=1``) and
compared exactly, record for record; tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from zoo_plugins.datasets.fetch import mirror_file

needs_cora = pytest.mark.skipif(mirror_file("ind.cora.x", "planetoid") is None,
                                reason="needs the local Cora mirror")
TIMING = ("epoch_ms", "seconds")  # wall-clock fields: the only ones allowed to differ

CASES = {
    "supervised_full_graph": ["gcn_cora", "trainer.epochs=4", "--seeds", "2"],
    "supervised_neighbor_sampler": ["gcn_cora_sampled", "trainer.epochs=2",
                                    "trainer.batches.batch_size=64"],
    "supervised_packed_neighbors": ["graphreg_mlp_cora", "trainer.epochs=2",
                                    "trainer.baseline=false", "encoder.hidden=32",
                                    "trainer.batches={name: packed_neighbors, batch_size: 128}"],
    "gam": ["gam_cora", "trainer.max_iterations=2", "trainer.steps=20",
            "trainer.agreement.steps=20"],
    "embedding_graph_rise_digits": ["graph_rise_digits", "trainer.epochs=1", "encoder.width=4",
                                    "encoder.stages=1", "--seeds", "1"],
}


def comparable(run: Path) -> tuple[list[str], str]:
    """The run's records and summary metrics without wall-clock fields, as JSON text (so
    that NaN equals NaN and floats compare bit for bit through their repr)."""
    records = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = {k: v for k, v in json.loads(line).items() if k not in TIMING}
        records.append(json.dumps(record, sort_keys=True))
    metrics = json.loads((run / "summary.json").read_text())["metrics"]
    kept = {k: v for k, v in metrics.items() if not k.startswith("seconds_")}
    return records, json.dumps(kept, sort_keys=True)


@needs_cora
@pytest.mark.parametrize("args", list(CASES.values()), ids=list(CASES))
def test_the_same_seed_gives_identical_metrics_in_fresh_processes(tmp_path, args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outs = [tmp_path / "first", tmp_path / "second"]
    # Both at once: two fresh processes, one core each.
    procs = [subprocess.Popen([sys.executable, "-m", "zoo", "run", *args, "threads=1",
                               "--quiet", "--out", str(out)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for out in outs]
    for proc in procs:
        err = proc.communicate(timeout=240)[1]
        assert proc.returncode == 0, err[-2000:]
    (first_records, first_metrics), (second_records, second_metrics) = map(comparable, outs)
    assert first_records and first_metrics != "{}"
    assert first_records == second_records
    assert first_metrics == second_metrics
