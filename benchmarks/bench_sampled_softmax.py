"""Benchmark: sampled softmax at 1M classes against the full softmax a memory budget allows.

One training step is forward (a Linear encoder, then the classifier head) + loss +
backward + optimizer step, on a fixed batch with Zipfian labels. The sampled variant is
a sparse ``ClassifierHead`` (``num_sampled`` log-uniform negatives) trained by the zoo's
``adam``, which splits into Adam + SparseAdam; the full variant is a dense head, full
softmax, plain Adam. Each variant runs in a fresh subprocess so that its peak resident
memory (``ru_maxrss``) is its own; an idle process that runs both variants at a toy
size (64 classes) gives the baseline subtracted in the "above idle" column: the memory
that grows with the problem, without the interpreter's, torch's and its kernels'.

The full softmax runs at the largest power of two below ``--classes`` whose estimated
footprint fits ``--memory-gb`` (GiB), and at ``--classes`` itself when that fits. The
estimate, C·(4·D + 2·B)·4 bytes, counts the weight, its gradient and Adam's two moments
(4·C·D floats) and the logits with their gradient (2·B·C floats); it is an estimate
rather than a try-and-catch, since on Linux an allocation that does not fit is more
often killed by the OOM killer than refused with a MemoryError. The sampled head also
runs at the full softmax's largest class count, so one ratio is like for like.

    python benchmarks/bench_sampled_softmax.py [--classes 1000000] [--dim 128]
        [--batch-size 256] [--num-sampled 8192] [--memory-gb 4] [--steps 20] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from zoo_plugins.optimizers.torch_optim import adam
from zoo_plugins.tasks.sampled_softmax import ClassifierHead, log_uniform_sample

GIB = 2**30


def full_softmax_bytes(classes: int, dim: int, batch: int) -> int:
    """Estimated bytes of a full-softmax step: weight, gradient, two Adam moments, and
    the logits with their gradient (float32)."""
    return classes * (dim * 4 + batch * 2) * 4


def peak_mib() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(spec: dict) -> dict:
    """Run one variant in this process: median step ms and peak MiB."""
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    if spec["variant"] == "idle":
        # Both variants at a toy size: the kernels and libraries they load, not their data.
        for variant in ("sampled", "full"):
            measure({**spec, "variant": variant, "classes": 64, "num_sampled": 8,
                     "steps": 1, "warmup": 0})
        return {"peak_mib": peak_mib()}
    torch.manual_seed(0)
    sampled = spec["variant"] == "sampled"
    classes, dim, batch = spec["classes"], spec["dim"], spec["batch"]
    encoder = torch.nn.Linear(dim, dim)
    head = ClassifierHead(dim, classes, num_sampled=spec["num_sampled"] if sampled else None,
                          sparse=sampled)
    opt = adam([*encoder.parameters(), *head.parameters()], lr=1e-3)
    x, y = torch.randn(batch, dim), log_uniform_sample(batch, classes)
    times = []
    for _ in range(spec["warmup"] + spec["steps"]):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = head.loss(encoder(x), y)
        loss.backward()
        opt.step()
        times.append((time.perf_counter() - start) * 1000)
    return {"step_ms": statistics.median(times[spec["warmup"]:]), "peak_mib": peak_mib(),
            "optimizer": type(opt).__name__, "threads": torch.get_num_threads()}


def run_variant(spec: dict) -> dict | None:
    """``measure(spec)`` in a fresh Python process (None, with the reason, if it died)."""
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  {spec['variant']} at {spec['classes']} classes failed "
              f"(exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-sampled", type=int, default=8192)
    parser.add_argument("--memory-gb", type=float, default=4.0,
                        help="budget (GiB) for the full softmax's estimated footprint")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: torch's")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return

    budget = int(args.memory_gb * GIB)
    dim, batch = args.dim, args.batch_size
    base = {"dim": dim, "batch": batch, "num_sampled": args.num_sampled,
            "steps": args.steps, "warmup": args.warmup, "threads": args.threads}
    ladder = [2**k for k in range(1, args.classes.bit_length()) if 2**k < args.classes]
    fitting = [c for c in ladder if full_softmax_bytes(c, dim, batch) <= budget]
    largest = fitting[-1] if fitting else None
    needed = full_softmax_bytes(args.classes, dim, batch)

    plan = [("sampled", args.classes)]
    if largest is not None:
        plan += [("sampled", largest), ("full", largest)]
    if needed <= budget:
        plan.append(("full", args.classes))
    results: dict[tuple[str, int], dict] = {}
    idle = run_variant({**base, "variant": "idle", "classes": 0})
    idle_mib = idle["peak_mib"] if idle else 0.0
    for variant, classes in plan:
        res = run_variant({**base, "variant": variant, "classes": classes})
        if res is not None:
            results[variant, classes] = res

    threads = next(iter(results.values()))["threads"] if results else args.threads
    print(f"threads: {threads}, batch: {batch}, dim: {dim}, num_sampled: {args.num_sampled}, "
          f"steps: {args.steps} (+{args.warmup} warm-up), budget: {args.memory_gb:g} GiB, "
          f"idle process: {idle_mib:.0f} MiB")
    print(f"{'variant':<9}{'classes':>10}{'optimizer':>16}{'step ms':>11}{'peak MiB':>11}"
          f"{'above idle':>12}{'estimate MiB':>14}")
    for (variant, classes), res in results.items():
        estimate = (f"{full_softmax_bytes(classes, dim, batch) / 2**20:.0f}"
                    if variant == "full" else "-")
        print(f"{variant:<9}{classes:>10}{res['optimizer']:>16}{res['step_ms']:>11.2f}"
              f"{res['peak_mib']:>11.0f}{res['peak_mib'] - idle_mib:>12.0f}{estimate:>14}")
    if needed > budget:
        print(f"full softmax at {args.classes} classes does not fit {args.memory_gb:g} GiB: "
              f"it needs an estimated {needed / GIB:.2f} GiB ({needed} bytes: "
              f"{args.classes} x (4 x {dim} + 2 x {batch}) floats)")
    if largest is None:
        print(f"no power of two below {args.classes} classes fits the full softmax in "
              f"{args.memory_gb:g} GiB")

    def ratio(full: tuple[str, int], sampled: tuple[str, int], what: str) -> None:
        if full not in results or sampled not in results:
            return
        f, s = results[full], results[sampled]
        peak = f["peak_mib"] / s["peak_mib"]
        above = (f["peak_mib"] - idle_mib) / max(s["peak_mib"] - idle_mib, 1.0)
        print(f"full@{full[1]} / sampled@{sampled[1]} ({what}): step time "
              f"{f['step_ms'] / s['step_ms']:.1f}x, peak memory {peak:.2f}x "
              f"({above:.1f}x above idle)")

    ratio(("full", largest), ("sampled", args.classes), "largest full softmax in budget")
    ratio(("full", largest), ("sampled", largest), "same class count")
    ratio(("full", args.classes), ("sampled", args.classes), "same class count")


if __name__ == "__main__":
    main()
