"""Benchmark: gcn_cora's training epoch in the zoo against a bare DGL loop, same run.

The bare loop is the usual DGL/PyG example: dense features, dropout over the dense
2708 x 1433 matrix, two GraphConv layers, Adam. The zoo runs configs/gcn_cora.yaml
(sparse features, dropout on the non-zeros). Both time forward + backward + step of
each training epoch (evaluation excluded) and report test accuracy at the
best-validation epoch. Prints the median epoch times and their ratio.

    python benchmarks/bench_gcn.py [--seeds 3] [--epochs 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("DGLBACKEND", "pytorch")

import dgl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from dgl.nn import GraphConv  # noqa: E402

import zoo  # noqa: E402
from zoo.engine import seed_everything  # noqa: E402


class BareGCN(torch.nn.Module):
    """Kipf & Welling's GCN as the DGL example writes it (dense input dropout)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = GraphConv(in_dim, hidden, activation=F.relu)
        self.conv2 = GraphConv(hidden, out_dim)
        self.p = dropout

    def forward(self, g: dgl.DGLGraph, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(x, self.p, self.training)
        x = self.conv1(g, x)
        x = F.dropout(x, self.p, self.training)
        return self.conv2(g, x)


def bare_dgl(data, seed: int, epochs: int) -> tuple[float, list[float]]:
    """Train the bare GCN; return (test accuracy at best validation, epoch times in ms)."""
    seed_everything(seed)
    g = dgl.add_self_loop(dgl.remove_self_loop(data.graph))
    x = data.features.to_dense()
    y = data.labels
    model = BareGCN(x.shape[1], 16, data.num_classes, 0.5)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    best_val, best_test, times = -1.0, 0.0, []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(model(g, x)[data.train_mask], y[data.train_mask])
        loss.backward()
        opt.step()
        times.append((time.perf_counter() - start) * 1000)
        model.eval()
        with torch.no_grad():
            pred = model(g, x).argmax(1)
        val = float((pred[data.val_mask] == y[data.val_mask]).float().mean())
        if val > best_val:
            best_val = val
            best_test = float((pred[data.test_mask] == y[data.test_mask]).float().mean())
    return best_test, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=200)
    args = parser.parse_args()

    exp = zoo.build("gcn_cora", trainer={"epochs": args.epochs})
    data = exp.data
    bare_acc, bare_ms = [], []
    # Alternate the two per seed so that load from elsewhere on the machine hits both.
    zoo_ms, zoo_acc = [], []
    for seed in range(args.seeds):
        summary = exp.fit(seeds=[seed])
        zoo_ms.append(summary["timing"]["epoch_ms_median"])
        zoo_acc.append(summary["metrics"]["test_accuracy"]["mean"])
        acc, times = bare_dgl(data, seed, args.epochs)
        bare_acc.append(acc)
        bare_ms.extend(times[1:])  # the first epoch pays one-off allocation costs
    zoo_median = statistics.median(zoo_ms)
    bare_median = statistics.median(bare_ms)
    print(f"threads: {torch.get_num_threads()}, seeds: {args.seeds}, epochs: {args.epochs}")
    print(f"bare DGL loop : median epoch {bare_median:7.2f} ms, test accuracy "
          f"{statistics.mean(bare_acc):.4f} ± {statistics.pstdev(bare_acc):.4f}")
    print(f"zoo gcn_cora  : median epoch {zoo_median:7.2f} ms, test accuracy "
          f"{statistics.mean(zoo_acc):.4f} ± {statistics.pstdev(zoo_acc):.4f}")
    print(f"speed-up (bare / zoo): {bare_median / zoo_median:.1f}x")


if __name__ == "__main__":
    main()
