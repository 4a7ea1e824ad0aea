"""Benchmark: the zoo's device path — the same graph-free training on the CPU and on CUDA
in one run, and how often the host waits for the device.

A synthetic item set (Gaussian clusters, ``--items`` x ``--features``, 10 classes) is
trained by the ``supervised`` trainer with the ``items`` batch source and an MLP, once per
device. Prints the median epoch time per device and their ratio, the test accuracy (the
two must agree), and, on CUDA, the host synchronisations per training step counted by
``torch.cuda.set_sync_debug_mode`` (the engine reads losses once per epoch, not per step).
Nothing here needs DGL, so it runs where only torch is installed.

    python benchmarks/bench_device.py [--items 200000] [--features 256] [--epochs 5]
"""

from __future__ import annotations

import argparse
import warnings

import torch

import zoo
from zoo.registry import PluginRegistrar, Registry


def clusters(*, items: int = 200_000, features: int = 256, classes: int = 10,
             seed: int = 0) -> zoo.GraphData:
    """Gaussian clusters of items, no graph (a benchmark dataset)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(classes, (items,), generator=gen)
    centers = torch.randn(classes, features, generator=gen)
    x = centers[labels] + 10.0 * torch.randn(items, features, generator=gen)
    part = torch.arange(items) % 10
    return zoo.GraphData(None, x, labels, part < 6, part == 6, part > 6, classes, "clusters")


def registry(items: int, features: int) -> Registry:
    reg = Registry()
    for comp in zoo.default_registry().list():
        reg.add_component(comp)
    extra = PluginRegistrar("bench", "bench", "0")

    def dataset() -> zoo.GraphData:
        """The benchmark's item set."""
        return clusters(items=items, features=features)

    extra.add("dataset", "clusters", dataset)
    extra.commit(reg)
    return reg


def run(reg: Registry, device: str, epochs: int, batch_size: int) -> tuple[float, float, int]:
    """(median epoch ms, test accuracy, training steps) on ``device``."""
    cfg = {"dataset": {"name": "clusters"}, "device": device,
           "encoder": {"name": "mlp", "hidden": 512, "layers": 3, "dropout": 0.1},
           "trainer": {"name": "supervised", "epochs": epochs,
                       "optimizer": {"name": "adam", "lr": 0.001},
                       "batches": {"name": "items", "batch_size": batch_size,
                                   "infer_batch_size": 65536}}}
    exp = zoo.build(cfg, registry=reg)
    summary = exp.fit(seeds=[0])
    steps = epochs * -(-int(exp.data.train_mask.sum()) // batch_size)
    return (summary["timing"]["epoch_ms_median"],
            summary["metrics"]["test_accuracy"]["mean"], steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    reg = registry(args.items, args.features)
    devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    results = {}
    for device in devices:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ms, acc, steps = run(reg, device, args.epochs, args.batch_size)
        if device == "cuda":
            torch.cuda.set_sync_debug_mode(0)
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        results[device] = (ms, acc, steps, syncs)
        extra = (f", {syncs} host synchronisations in {steps} steps and {args.epochs} "
                 f"evaluations ({syncs / steps:.2f} per step)" if device == "cuda" else "")
        print(f"{device:5s}: median epoch {ms:9.2f} ms, test accuracy {acc:.4f}{extra}")
    if "cuda" in results:
        print(f"speed-up (cpu / cuda): {results['cpu'][0] / results['cuda'][0]:.1f}x; "
              f"accuracy difference {abs(results['cpu'][1] - results['cuda'][1]):.4f}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"items {args.items} x {args.features}")


if __name__ == "__main__":
    main()
