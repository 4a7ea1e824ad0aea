"""Benchmark: the zoo against bare DGL loops on a large synthetic graph, same run.

The graph is the ``sbm`` dataset (planted communities; default 1,000,000 nodes and
10,000,000 directed edges, 32 features, 5 classes), with a training split of 10% of the
nodes (validation 5%, test 10%). Two parts, each a zoo run (``zoo.build`` then ``fit``)
against the bare DGL loop a user would write, on the same features, labels and masks
(the bare loops call the same dataset function with the same parameters):

1. **Full-batch GCN** (2 layers, 16 hidden, dropout 0.5, Adam 0.01 with weight decay
   5e-4): the zoo's ``gcn`` with the ``supervised`` trainer against two
   ``dgl.nn.GraphConv`` on the graph with self-loops. The time is the median training
   epoch (forward + backward + step; the zoo's ``summary["timing"]["epoch_ms_median"]``).
2. **Neighbour-sampled GraphSAGE** (2 layers, 16 hidden, mean aggregator, fanouts
   [10, 10], batches of 1024 training nodes): the zoo's ``sage`` with the
   ``neighbor_sampler`` batch source against ``dgl.dataloading.NeighborSampler`` +
   ``DataLoader`` + ``dgl.nn.SAGEConv``. The time is one epoch over the training nodes,
   sampling included; also reported as seed (training) nodes per second.

Both variants of a part evaluate once, after their last epoch, on the whole graph (the
zoo's default, ``eval_every`` set to the epochs; evaluation is not in the epoch time),
so that they do the same work and their test accuracies can be compared. Each variant
runs in a fresh subprocess so that its peak resident memory (``ru_maxrss``) is its own;
a process that only generates the graph gives the ``data only`` row, and "above data"
is a variant's peak minus that one (the memory the training itself adds).

    python benchmarks/bench_scale.py [--nodes 1000000] [--avg-degree 10 | --edges N]
        [--epochs 10] [--sage-epochs 1] [--threads 1] [--repeat 1] [--quick]
        [--only gcn|sage] [--ddp WORLD_SIZE]

``--quick`` sizes everything to finish in a few minutes on 2 cores (100,000 nodes,
1,000,000 directed edges, 5 epochs). ``--ddp N`` adds part 3: part 2's zoo run as 1, 2,
... N data-parallel processes (``torch.distributed``, launched by torchrun), reported as
training seed nodes per second and against the single process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("DGLBACKEND", "pytorch")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HIDDEN, DROPOUT, LR, WEIGHT_DECAY = 16, 0.5, 0.01, 5e-4
FANOUTS, BATCH_SIZE = [10, 10], 1024


def peak_mib() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dataset_params(nodes: int, avg_degree: float, num_classes: int = 5) -> dict[str, Any]:
    """The sbm section both variants use: 10% of the nodes train, 5% validate, 10% test."""
    return {"num_nodes": nodes, "avg_degree": avg_degree, "num_classes": num_classes,
            "num_features": 32, "train_per_class": nodes // (10 * num_classes),
            "val_size": nodes // 20, "test_size": nodes // 10, "seed": 0}


def load_data(spec: dict) -> Any:
    """The sbm dataset of ``spec``, built as the zoo builds it (same function, same
    parameters: the same graph, features and masks bit for bit)."""
    from zoo_plugins.datasets.sbm import sbm

    return sbm(**spec["data"])


def accuracy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> float:
    return float((logits[mask].argmax(1) == labels[mask]).float().mean())


# -- the data alone ------------------------------------------------------------------
def data_only(spec: dict) -> dict:
    """Generate the graph: its time and the process's peak memory with it."""
    start = time.perf_counter()
    data = load_data(spec)
    seconds = time.perf_counter() - start
    return {"generate_s": seconds, "peak_mib": peak_mib(), "describe": data.describe(),
            "edges": data.graph.num_edges(), "train": int(data.train_mask.sum())}


# -- part 1: full-batch GCN ----------------------------------------------------------
def zoo_config(spec: dict, model: dict, epochs: int, batches: dict | None = None) -> dict:
    trainer: dict[str, Any] = {"name": "supervised", "epochs": epochs, "eval_every": epochs,
                               "optimizer": {"name": "adam", "lr": LR,
                                             "weight_decay": WEIGHT_DECAY}}
    if batches is not None:
        trainer["batches"] = batches
    return {"dataset": {"name": "sbm", **spec["data"]}, "model": model, "trainer": trainer,
            "seeds": 1}


def zoo_run(config: dict) -> dict:
    import zoo

    summary = zoo.build(config).fit(seeds=[0])
    return {"epoch_ms": summary["timing"]["epoch_ms_median"], "peak_mib": peak_mib(),
            "test_accuracy": summary["metrics"]["test_accuracy"]["mean"]}


def zoo_gcn(spec: dict) -> dict:
    """The zoo's gcn, full graph, ``spec["epochs"]`` epochs."""
    model = {"name": "gcn", "hidden": HIDDEN, "layers": 2, "dropout": DROPOUT,
             "self_loops": True}
    return zoo_run(zoo_config(spec, model, spec["epochs"]))


def bare_gcn(spec: dict) -> dict:
    """Two GraphConv layers on the graph with self-loops, as the DGL example writes it."""
    import dgl
    from dgl.nn import GraphConv

    from zoo.engine import seed_everything

    class BareGCN(torch.nn.Module):
        def __init__(self, in_dim: int, out_dim: int) -> None:
            super().__init__()
            self.conv1 = GraphConv(in_dim, HIDDEN, activation=F.relu)
            self.conv2 = GraphConv(HIDDEN, out_dim)

        def forward(self, g: dgl.DGLGraph, x: torch.Tensor) -> torch.Tensor:
            x = self.conv1(g, F.dropout(x, DROPOUT, self.training))
            return self.conv2(g, F.dropout(x, DROPOUT, self.training))

    data = load_data(spec)
    seed_everything(0)
    g = dgl.add_self_loop(dgl.remove_self_loop(data.graph))
    data.graph = None  # a script keeps only the graph it trains on
    x, y, train = data.features, data.labels, data.train_mask
    model = BareGCN(x.shape[1], data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    times = []
    for _ in range(spec["epochs"]):
        start = time.perf_counter()
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(g, x)[train], y[train]).backward()
        opt.step()
        times.append((time.perf_counter() - start) * 1000)
    model.eval()
    with torch.no_grad():
        logits = model(g, x)
    return {"epoch_ms": statistics.median(times), "peak_mib": peak_mib(),
            "test_accuracy": accuracy(logits, y, data.test_mask)}


# -- part 2: neighbour-sampled GraphSAGE ---------------------------------------------
def zoo_sage(spec: dict) -> dict:
    """The zoo's sage on neighbor_sampler blocks, ``spec["sage_epochs"]`` epochs."""
    model = {"name": "sage", "hidden": HIDDEN, "layers": 2, "dropout": DROPOUT,
             "aggregator": "mean"}
    batches = {"name": "neighbor_sampler", "fanouts": FANOUTS, "batch_size": BATCH_SIZE,
               "seeds": "labeled"}
    return zoo_run(zoo_config(spec, model, spec["sage_epochs"], batches))


def bare_sage(spec: dict) -> dict:
    """DGL's NeighborSampler, DataLoader and two SAGEConv layers, as DGL's example."""
    import dgl
    from dgl.nn import SAGEConv

    from zoo.engine import seed_everything

    class BareSAGE(torch.nn.Module):
        def __init__(self, in_dim: int, out_dim: int) -> None:
            super().__init__()
            self.convs = torch.nn.ModuleList([SAGEConv(in_dim, HIDDEN, "mean"),
                                              SAGEConv(HIDDEN, out_dim, "mean")])

        def forward(self, blocks: list, x: torch.Tensor) -> torch.Tensor:
            for i, (conv, block) in enumerate(zip(self.convs, blocks)):
                x = conv(block, F.dropout(x, DROPOUT, self.training))
                if i == 0:
                    x = F.relu(x)
            return x

    data = load_data(spec)
    seed_everything(0)
    g, x, y = data.graph, data.features, data.labels
    train_ids = data.train_mask.nonzero().squeeze(1)
    sampler = dgl.dataloading.NeighborSampler(FANOUTS)
    loader = dgl.dataloading.DataLoader(g, train_ids, sampler, batch_size=BATCH_SIZE,
                                        shuffle=True, drop_last=False)
    model = BareSAGE(x.shape[1], data.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    times = []
    for _ in range(spec["sage_epochs"]):
        start = time.perf_counter()
        model.train()
        for input_nodes, output_nodes, blocks in loader:
            opt.zero_grad()
            F.cross_entropy(model(blocks, x[input_nodes]), y[output_nodes]).backward()
            opt.step()
        times.append((time.perf_counter() - start) * 1000)
    model.eval()
    with torch.no_grad():
        logits = model([g, g], x)
    return {"epoch_ms": statistics.median(times), "peak_mib": peak_mib(),
            "test_accuracy": accuracy(logits, y, data.test_mask)}


# -- part 3: data-parallel sampled GraphSAGE ------------------------------------------
def ddp(spec: dict) -> dict:
    """``zoo_sage``'s run in ``spec["world_size"]`` processes (torchrun, gloo, one thread
    each): each rank trains on its share of every batch of training nodes, gradients
    all-reduced by DDP. The epoch time is rank 0's (the ranks step together); the peak
    memory is the sum over the processes."""
    import tempfile

    world = spec["world_size"]
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"] or 1),
               "ZOO_THREADS": str(spec["threads"] or 1)}
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                               f"--nproc-per-node={world}", __file__, "--ddp-rank",
                               json.dumps({**spec, "folder": folder})],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip()[-2000:])
        ranks = [json.loads(open(os.path.join(folder, f"rank-{r}.json")).read())
                 for r in range(world)]
    return {"epoch_ms": ranks[0]["epoch_ms"], "test_accuracy": ranks[0]["test_accuracy"],
            "peak_mib": sum(r["peak_mib"] for r in ranks)}


def ddp_rank(spec: dict) -> None:
    """One torchrun process of :func:`ddp`: the zoo joins the group torchrun describes."""
    result = zoo_sage(spec)
    rank = int(os.environ.get("RANK", "0"))
    with open(os.path.join(spec["folder"], f"rank-{rank}.json"), "w") as f:
        json.dump(result, f)
    # End as `zoo run` ends a rank (see zoo.cli.run_rank): together, without the process
    # group's C++ teardown, which can abort at exit. A world of one joins no group.
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    os._exit(0)


VARIANTS: dict[str, Callable[[dict], dict]] = {
    "data": data_only, "zoo_gcn": zoo_gcn, "bare_gcn": bare_gcn,
    "zoo_sage": zoo_sage, "bare_sage": bare_sage,
    **{f"ddp{n}": ddp for n in range(1, 65)},
}


# -- driver ----------------------------------------------------------------------------
def measure(spec: dict) -> dict:
    """Run one variant in this process."""
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    result = VARIANTS[spec["variant"]](spec)
    return {**result, "threads": torch.get_num_threads()}


def run_variant(spec: dict) -> dict | None:
    """``measure(spec)`` in a fresh Python process (None, with the reason, if it died)."""
    env = dict(os.environ)
    if spec["threads"]:  # DGL's OpenMP kernels too, not only torch's
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        print(f"  {spec['variant']} failed (exit {proc.returncode}): {reason[0][-300:]}",
              flush=True)
        return None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=None, help="default 1000000")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--avg-degree", type=float, default=None,
                      help="neighbours per node (default 10)")
    size.add_argument("--edges", type=int, default=None,
                      help="directed edges (both directions of each undirected edge)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="full-batch GCN epochs (default 10)")
    parser.add_argument("--sage-epochs", type=int, default=1,
                        help="sampled SAGE epochs over the training nodes")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and OpenMP threads per variant (0: torch's default); "
                             "1 by default: on a shared machine more threads mostly wait")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of the zoo and bare variants (alternating their order); "
                             "each variant's fastest round is reported")
    parser.add_argument("--quick", action="store_true",
                        help="100,000 nodes, 1,000,000 edges, 5 epochs (unless given)")
    parser.add_argument("--only", choices=("gcn", "sage"), help="run one part")
    parser.add_argument("--ddp", type=int, metavar="WORLD_SIZE",
                        help="also run part 2's zoo run in 1..WORLD_SIZE processes (DDP)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--ddp-rank", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return
    if args.ddp_rank:
        spec = json.loads(args.ddp_rank)
        if spec["threads"]:
            torch.set_num_threads(spec["threads"])
        ddp_rank(spec)
        return

    nodes = args.nodes or (100_000 if args.quick else 1_000_000)
    avg_degree = (args.edges / nodes if args.edges is not None
                  else args.avg_degree if args.avg_degree is not None else 10.0)
    epochs = args.epochs or (5 if args.quick else 10)
    base = {"data": dataset_params(nodes, avg_degree), "epochs": epochs,
            "sage_epochs": args.sage_epochs, "threads": args.threads or None,
            "repeat": args.repeat}
    parts = [p for p in ("gcn", "sage") if args.only in (None, p)]
    pairs = [f"{who}_{part}" for part in parts for who in ("bare", "zoo")]
    runs: dict[str, list[dict]] = {}
    # Rounds alternate the order of the variants, so that load from elsewhere on the
    # machine falls on both sides of each ratio.
    plan = ["data"] + [v for r in range(args.repeat)
                       for v in (pairs if r % 2 == 0 else pairs[::-1])]
    plan += [f"ddp{n}" for n in range(1, (args.ddp or 0) + 1)]
    for variant in plan:
        print(f"running {variant} ...", file=sys.stderr, flush=True)
        world = int(variant[3:]) if variant.startswith("ddp") else 1
        res = run_variant({**base, "variant": variant, "world_size": world})
        if res is not None:
            runs.setdefault(variant, []).append(res)
    # The least disturbed round's time (as timeit does); memory does not vary by load.
    results = {v: {**rs[0], "epoch_ms": min(r.get("epoch_ms", 0.0) for r in rs),
                   "peak_mib": max(r["peak_mib"] for r in rs),
                   "wall_s": statistics.median(r["wall_s"] for r in rs)}
               for v, rs in runs.items()}
    report(results, base, parts, args.ddp or 0)


def report(results: dict[str, dict], base: dict, parts: list[str], ddp_max: int = 0,
           ) -> None:
    """Print what was measured as a table, then the zoo / bare ratios."""
    data = results.get("data")
    threads = next(iter(results.values()))["threads"] if results else base["threads"]
    params = base["data"]
    print(f"sbm: {params['num_nodes']} nodes, avg degree {params['avg_degree']:g}, "
          f"{params['num_features']} features, {params['num_classes']} classes; "
          f"threads: {threads}; rounds: {base['repeat']}; GCN epochs: {base['epochs']}, "
          f"SAGE epochs: {base['sage_epochs']} (fanouts {FANOUTS}, batch {BATCH_SIZE})")
    if data is not None:
        print(f"data only: {data['describe']}; generated in {data['generate_s']:.2f} s, "
              f"peak {data['peak_mib']:.0f} MiB")
    floor = data["peak_mib"] if data is not None else 0.0
    train = data["train"] if data is not None else params["train_per_class"] * 5
    print(f"{'part':<16}{'variant':<9}{'epoch ms':>11}{'seeds/s':>11}{'peak MiB':>10}"
          f"{'above data':>12}{'test acc':>10}{'wall s':>8}")
    names = {"gcn": "full-batch GCN", "sage": "sampled SAGE",
             **{f"ddp{n}": f"DDP SAGE x{n}" for n in range(1, ddp_max + 1)}}
    rows = [(part, who) for part in parts for who in ("bare", "zoo")]
    rows += [(f"ddp{n}", "zoo") for n in range(1, ddp_max + 1)]
    for part, who in rows:
        res = results.get(part if part.startswith("ddp") else f"{who}_{part}")
        if res is None:
            print(f"{names[part]:<16}{who:<9}{'failed':>11}")
            continue
        rate = f"{train / (res['epoch_ms'] / 1000):.0f}" if part != "gcn" else "-"
        print(f"{names[part]:<16}{who:<9}{res['epoch_ms']:>11.1f}{rate:>11}"
              f"{res['peak_mib']:>10.0f}{res['peak_mib'] - floor:>12.0f}"
              f"{res['test_accuracy']:>10.4f}{res['wall_s']:>8.1f}")
    for part in parts:
        z, b = results.get(f"zoo_{part}"), results.get(f"bare_{part}")
        if z is None or b is None:
            continue
        above = (z["peak_mib"] - floor) / max(b["peak_mib"] - floor, 1.0)
        print(f"zoo / bare, {names[part]}: epoch time {z['epoch_ms'] / b['epoch_ms']:.2f}x"
              + (f", seeds/s {b['epoch_ms'] / z['epoch_ms']:.2f}x" if part != "gcn" else "")
              + f", peak memory {z['peak_mib'] / b['peak_mib']:.2f}x ({above:.2f}x above "
              "data)")
    one = results.get("ddp1")
    for n in range(2, ddp_max + 1):
        res = results.get(f"ddp{n}")
        if one is not None and res is not None:
            print(f"DDP SAGE, {n} processes / 1: seeds/s {one['epoch_ms'] / res['epoch_ms']:.2f}x"
                  f", peak memory (all processes) {res['peak_mib'] / one['peak_mib']:.2f}x")


if __name__ == "__main__":
    main()
