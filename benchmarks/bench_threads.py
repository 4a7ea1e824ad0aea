"""Benchmark: does a run keep its speed when the machine is shared? (the thread policy)

Runs ``zoo run CONFIG --seeds N`` (default gcn_cora, 3 seeds) as separate processes, in
one script run, in three situations, under the default thread policy (``auto``) and
under torch's own default (one thread per core, ``ZOO_THREADS=<cores>``):

- alone on the machine;
- two runs started together (what a sweep does): their wall time against one alone;
- next to a CPU-bound competitor (a process spinning on one core): the median
  training epoch against the idle one.

Prints the wall times, median epochs and the ratios. Run it with the machine otherwise
idle.

    python benchmarks/bench_threads.py [--config gcn_cora] [--seeds 3] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zoo.threads import usable_cores  # noqa: E402

SPIN = "import time\nwhile True:\n    sum(range(10000))\n"


def start_run(config: str, seeds: int, folder: Path, threads: str) -> subprocess.Popen:
    env = {**os.environ, "ZOO_THREADS": threads, "DGLBACKEND": "pytorch"}
    env.pop("OMP_NUM_THREADS", None)
    return subprocess.Popen([sys.executable, "-m", "zoo", "run", config, "--seeds", str(seeds),
                             "--quiet", "--out", str(folder)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, folder: Path) -> float:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"zoo run failed:\n{err[-2000:]}")
    summary = json.loads((folder / "summary.json").read_text())
    return summary["timing"]["epoch_ms_median"]


def situation(kind: str, config: str, seeds: int, threads: str, scratch: Path,
              ) -> tuple[float, list[float]]:
    """(wall seconds, median epoch ms of each run) for 'alone', 'pair' or 'competitor'."""
    folders = [Path(tempfile.mkdtemp(dir=scratch)) / "run" for _ in range(2)]
    spinner = None
    if kind == "competitor":
        spinner = subprocess.Popen([sys.executable, "-c", SPIN])
        time.sleep(1.0)
    try:
        start = time.perf_counter()
        runs = [start_run(config, seeds, folders[i], threads)
                for i in range(2 if kind == "pair" else 1)]
        epochs = [finish(p, f) for p, f in zip(runs, folders)]
        return time.perf_counter() - start, epochs
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="gcn_cora")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each situation "
                        "(the median is reported)")
    args = parser.parse_args()
    cores = usable_cores()
    policies = {"auto (default)": "auto", f"torch default ({cores} threads)": str(cores)}
    print(f"config {args.config}, --seeds {args.seeds}, {cores} cores, "
          f"median of {args.repeats} repeat(s)")
    with tempfile.TemporaryDirectory() as scratch:
        for label, threads in policies.items():
            results: dict[str, tuple[float, float]] = {}
            for kind in ("alone", "pair", "competitor"):
                walls, epochs = [], []
                for _ in range(args.repeats):
                    wall, ms = situation(kind, args.config, args.seeds, threads, Path(scratch))
                    walls.append(wall)
                    epochs.append(max(ms))
                results[kind] = (statistics.median(walls), statistics.median(epochs))
            alone_wall, alone_ms = results["alone"]
            pair_wall, pair_ms = results["pair"]
            comp_wall, comp_ms = results["competitor"]
            print(f"\nthreads: {label}")
            print(f"  alone          : wall {alone_wall:6.1f} s, median epoch {alone_ms:7.2f} ms")
            print(f"  two together   : wall {pair_wall:6.1f} s, median epoch {pair_ms:7.2f} ms"
                  f"   -> wall {pair_wall / alone_wall:.2f}x one alone"
                  f" ({pair_wall / (2 * alone_wall):.2f}x two in sequence)")
            print(f"  with competitor: wall {comp_wall:6.1f} s, median epoch {comp_ms:7.2f} ms"
                  f"   -> epoch {comp_ms / alone_ms:.2f}x idle")


if __name__ == "__main__":
    main()
