"""Benchmark: where one seed of a GAM config spends its time, against the plain classifier.

Runs a GAM config (default: configs/gam_cora.yaml) and prints its wall time per seed,
the share of each phase the ``gam`` trainer times (classifier training, agreement-model
training, self-labeling, evaluation; the rest is data loading, model building and
logging) and, as the bare baseline of the same run, the time of iteration 0 (the plain
classifier, trained exactly as the baseline is): the ratio says what co-training costs.

    python benchmarks/bench_gam.py [--config gam_cora] [--seeds 1] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DGLBACKEND", "pytorch")

import torch  # noqa: E402

import zoo  # noqa: E402

PHASES = ("classifier", "agreement", "self_label", "evaluation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="gam_cora")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides")
    args = parser.parse_args()

    exp = zoo.build(args.config, args.overrides)
    _ = exp.graph  # load the dataset outside the timed part, as every run does once
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = exp.fit(seeds=args.seeds, out=Path(tmp) / "run")
        wall = (time.perf_counter() - start) / args.seeds
        records = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").open()]
    metrics = {k: v["mean"] for k, v in summary["metrics"].items()}
    iterations = [r for r in records if r.get("phase") == "gam"]
    baseline_s = statistics.mean(r["seconds"] for r in iterations if r["iteration"] == 0)

    print(f"config: {args.config}, seeds: {args.seeds}, torch threads outside the trainer: "
          f"{torch.get_num_threads()}")
    print(f"wall time per seed       : {wall:8.1f} s")
    timed = 0.0
    for phase in PHASES:
        seconds = metrics.get(f"seconds_{phase}", 0.0)
        timed += seconds
        print(f"  {phase:<22} : {seconds:8.1f} s  {100 * seconds / wall:5.1f} %")
    print(f"  {'other':<22} : {wall - timed:8.1f} s  {100 * (wall - timed) / wall:5.1f} %")
    print(f"plain classifier (iter 0): {baseline_s:8.1f} s  -> GAM costs "
          f"{wall / baseline_s:.1f}x the plain classifier")
    print(f"iterations {metrics['iterations']:.1f}, labeled {metrics['labeled']:.0f}; test "
          f"accuracy {metrics['test_accuracy']:.4f} (baseline "
          f"{metrics['baseline_test_accuracy']:.4f})")


if __name__ == "__main__":
    main()
