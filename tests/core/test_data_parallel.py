"""Data-parallel training with torch.distributed: ``zoo run --nproc 2`` on CPU (gloo),
each rank on its share of the seeds, gradients all-reduced (the ranks' weights stay
equal), metrics averaged, one run folder written by rank 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from zoo_plugins.datasets.fetch import mirror_file

pytestmark = pytest.mark.skipif(mirror_file("ind.cora.x", "planetoid") is None,
                                reason="needs the local Cora mirror")

SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch
    import zoo
    from zoo_plugins.batch_sources import neighbor_sampler

    seen = []
    original = neighbor_sampler.NeighborSampler.blocks

    def blocks(self, seeds, sampler=None):
        if sampler is None:
            seen.append(seeds.tolist())
        return original(self, seeds, sampler)

    neighbor_sampler.NeighborSampler.blocks = blocks
    out = sys.argv[1]
    exp = zoo.build("sage_cora_sampled", ["trainer.epochs=3", "trainer.batches.batch_size=64"])
    summary = exp.fit(seeds=1)
    rank = exp.runtime.rank
    torch.save(exp.model.state_dict(), os.path.join(out, f"weights-{rank}.pt"))
    with open(os.path.join(out, f"rank-{rank}.json"), "w") as f:
        json.dump({"world": exp.runtime.world_size, "seen": seen,
                   "val": summary["metrics"]["val_accuracy"]["mean"]}, f)
    # As `zoo run` ends a rank: together, and without the process group's C++ teardown.
    exp.runtime.barrier()
    torch.distributed.destroy_process_group()
    os._exit(0)
''')


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node=2", *args]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "DGLBACKEND": "pytorch"}


def test_ranks_share_the_seeds_and_keep_equal_weights(tmp_path: Path):
    import torch

    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    done = subprocess.run(torchrun(str(script), str(tmp_path)), env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # Per epoch: 140 labeled seeds, 70 a rank in batches of 32, disjoint, all covered.
    for epoch in range(3):
        batches = [r["seen"][epoch * 3:(epoch + 1) * 3] for r in ranks]
        assert all(len(b) == 3 and sum(map(len, b)) == 70 for b in batches)
        mine = [{s for batch in b for s in batch} for b in batches]
        assert not mine[0] & mine[1] and len(mine[0] | mine[1]) == 140
    # DDP averaged the gradients: both ranks hold the same weights; metrics were averaged.
    w0, w1 = (torch.load(tmp_path / f"weights-{r}.pt", weights_only=True) for r in (0, 1))
    for key in w0:
        torch.testing.assert_close(w0[key], w1[key], rtol=0, atol=1e-6)
    assert ranks[0]["val"] == ranks[1]["val"]


def test_zoo_run_nproc_writes_one_run_folder(tmp_path: Path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "zoo", "run", "sage_cora_sampled", "--nproc",
                           "2", "trainer.epochs=4", "--out", str(out), "--quiet"], env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "curves.png",
                                                     "metrics.jsonl", "summary.json",
                                                     "weights"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]  # rank 0 alone wrote them
    assert done.stdout.count("test_accuracy:") == 1  # and printed the result


def test_a_single_process_trainer_is_refused(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "zoo", "run", "gam_cora", "--nproc", "2",
                           "--out", str(tmp_path / "run")], env=env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert "trainer 'gam' trains in one process" in done.stderr
    assert not (tmp_path / "run").exists()
