"""A DistDGL trainer (or server) process: ``python -m zoo_plugins.distributed.train``.

Every process of a DistDGL job runs this command; ``DGL_ROLE`` says which part it plays
(DGL's ``tools/launch.py`` and :func:`zoo_plugins.distributed.launch.launch` set it):

- ``server``: ``dgl.distributed.initialize`` serves its machine's partition (graph
  structure for sampling, node data in the key-value store) until the trainers finish.
- ``client`` (a trainer): connects to every server, joins the torch.distributed group
  (``gloo``; ``MASTER_ADDR``/``MASTER_PORT``/``RANK``/``WORLD_SIZE`` from the launcher),
  takes its share of the training nodes (``node_split``), samples blocks from the
  distributed graph (``DistNodeDataLoader`` with DGL's ``NeighborSampler``), reads the
  input rows from the key-value store (``g.ndata['feat'][input_nodes]``) and trains the
  zoo model the partition's config describes, wrapped in ``DistributedDataParallel``.
  Validation and test accuracy are computed on each trainer's share of those nodes
  with every neighbour, and the counts summed over trainers; rank 0 alone prints them
  and writes ``metrics.json`` and ``model.pt`` (the weights of the best validation
  epoch) into ``--out``.

A trainer that fails exits at once (``os._exit``), skipping DGL's exit barrier, which
would wait forever for trainers blocked on the failed one; the launcher then stops the
rest.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("DGLBACKEND", "pytorch")

from zoo.errors import ConfigError, DivergedError, ZooError  # noqa: E402
from zoo_plugins.distributed.one_host import colocate_from_env  # noqa: E402

EVAL_BATCH_SIZE = 1024


def parse_fanouts(text: str) -> list[int]:
    """``'10,10'`` -> ``[10, 10]``."""
    try:
        return [int(f) for f in text.split(",") if f.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}"
                                         ) from None


def parser() -> argparse.ArgumentParser:
    """The command line of a trainer (or server) process."""
    p = argparse.ArgumentParser(
        prog="python -m zoo_plugins.distributed.train",
        description="One process of a DistDGL job on partitions written by `zoo partition` "
                    "(DGL_ROLE=server: serve a partition; otherwise: a trainer).")
    p.add_argument("--part-config", type=Path, required=True,
                   help="the partition config, DIR/<graph>.json")
    p.add_argument("--ip-config", type=Path, required=True,
                   help="DGL's ip config: one 'IP PORT' line per machine")
    p.add_argument("--out", type=Path, help="where rank 0 writes metrics.json and model.pt")
    p.add_argument("--epochs", type=int, help="override the config's trainer.epochs")
    p.add_argument("--batch-size", type=int, help="override trainer.batches.batch_size")
    p.add_argument("--fanouts", type=parse_fanouts,
                   help="override trainer.batches.fanouts, e.g. 10,10")
    p.add_argument("--seed", type=int, default=0, help="seed of the model and the sampling")
    p.add_argument("--net-type", choices=("socket", "tensorpipe"), default="socket",
                   help="DGL's RPC transport")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="seconds a torch.distributed collective may wait")
    return p


@dataclass
class TrainerSetup:
    """What a trainer needs before it connects: the partition config, the experiment
    rebuilt from the stored zoo config (no data loaded) and the training plan."""

    part_config: Path
    meta: dict[str, Any]
    exp: Any
    plan: Any

    @classmethod
    def load(cls, args: argparse.Namespace) -> TrainerSetup:
        """Read and check everything; a ConfigError before any connection is made."""
        import zoo
        from zoo_plugins.distributed.partition import read_part_config, zoo_file
        from zoo_plugins.distributed.plan import TrainingPlan

        meta = read_part_config(args.part_config)
        exp = zoo.build(str(zoo_file(args.part_config, meta, "config")))
        plan = TrainingPlan.from_config(exp.config).replace_settings(
            epochs=args.epochs, batch_size=args.batch_size, fanouts=args.fanouts)
        model = exp.build_classifier(8, 3)  # probe sizes, as zoo.build checks models
        plan.check_layers(getattr(model.node_model, "num_layers", None),
                          exp.config["model"]["name"])
        return cls(args.part_config, meta, exp, plan)


def annotate_blocks(g: Any, blocks: list[Any]) -> list[Any]:
    """Give sampled blocks what the node-model contract promises, read from the key-value
    store: whole-graph in-degrees (``srcdata``/``dstdata["in_degree"]``) and edge weights."""
    import dgl

    for block in blocks:
        degree = g.ndata["in_degree"][block.srcdata[dgl.NID]]
        block.srcdata["in_degree"] = degree
        block.dstdata["in_degree"] = degree[: block.num_dst_nodes()]
        block.edata["weight"] = g.edata["weight"][block.edata[dgl.EID]]
    return blocks


def evaluate(model: Any, g: Any, nids: Any, num_layers: int) -> Any:
    """``[correct, loss sum, count]`` over ``nids`` (this trainer's share), every neighbour
    used, as a float64 tensor to be summed over trainers."""
    import dgl
    import torch
    import torch.nn.functional as F

    totals = torch.zeros(3, dtype=torch.float64)
    if len(nids) == 0:
        return totals
    sampler = dgl.dataloading.MultiLayerFullNeighborSampler(num_layers)
    loader = dgl.dataloading.DistNodeDataLoader(g, nids, sampler, batch_size=EVAL_BATCH_SIZE,
                                                shuffle=False, drop_last=False)
    model.eval()
    with torch.no_grad():
        for input_nodes, seeds, blocks in loader:
            logits = model(annotate_blocks(g, blocks), g.ndata["feat"][input_nodes]).logits
            labels = g.ndata["label"][seeds]
            totals += torch.tensor([float((logits.argmax(-1) == labels).sum()),
                                    float(F.cross_entropy(logits, labels, reduction="sum")),
                                    float(len(seeds))], dtype=torch.float64)
    return totals


def check_finite_loss(loss: float, epoch: int, optimizer_path: str = "trainer.optimizer"
                      ) -> None:
    """A DivergedError when an epoch's mean training loss (the same sum on every trainer,
    so all stop together) is NaN or infinite, as the core engine stops a run."""
    if not math.isfinite(loss):
        raise DivergedError(
            f"training diverged at epoch {epoch} (loss is {loss}); lower "
            f"{optimizer_path}.lr and check the inputs for NaN or huge values")


def rates(totals: Any) -> tuple[float, float]:
    """(accuracy, mean loss) from summed ``[correct, loss sum, count]``."""
    count = max(float(totals[2]), 1.0)
    return float(totals[0]) / count, float(totals[1]) / count


def train(setup: TrainerSetup, args: argparse.Namespace) -> dict[str, Any] | None:
    """Train on the distributed graph; rank 0 returns (and writes) the metrics."""
    import dgl
    import torch
    import torch.distributed as td
    from torch.nn.parallel import DistributedDataParallel

    import zoo
    from zoo.run import atomic_write

    start = time.perf_counter()
    rank, world = td.get_rank(), td.get_world_size()
    plan, exp, meta = setup.plan, setup.exp, setup.meta
    g = dgl.distributed.DistGraph(meta["graph_name"], part_config=str(setup.part_config))
    book = g.get_partition_book()
    split = {name: dgl.distributed.node_split(g.ndata[f"{name}_mask"], book, force_even=True)
             for name in ("train", "val", "test")}

    zoo.seed_everything(args.seed)  # one initial model (DDP broadcasts rank 0's anyway)
    model = exp.build_classifier(int(meta["zoo"]["num_features"]),
                                 int(meta["zoo"]["num_classes"]))
    ddp = DistributedDataParallel(model)
    optimizer = exp.registry.build("optimizer", plan.optimizer, list(ddp.parameters()),
                                   path="trainer.optimizer")
    torch.manual_seed(args.seed * 1000 + rank)  # each trainer its own shuffles and dropout

    sampler = dgl.dataloading.NeighborSampler(list(plan.fanouts), replace=plan.replace)
    loader = dgl.dataloading.DistNodeDataLoader(g, split["train"], sampler,
                                                batch_size=plan.batch_size, shuffle=True,
                                                drop_last=False)
    # DDP all-reduces gradients at every step: every trainer takes as many steps as the
    # trainer with the fewest batches (the shares differ by at most one node).
    steps = torch.tensor([math.ceil(len(split["train"]) / plan.batch_size)])
    td.all_reduce(steps, op=td.ReduceOp.MIN)
    steps_per_epoch = int(steps)
    if steps_per_epoch == 0:
        raise ConfigError(f"some trainer has no training node ({world} trainers); use fewer "
                          "trainers")
    me = {"rank": rank, "machine": int(book.partid), "host": socket.gethostname(),
          "pid": os.getpid(), "dgl_rank": int(dgl.distributed.role.get_trainer_rank()),
          **{f"{k}_nodes": len(v) for k, v in split.items()}}
    print(f"trainer {rank}/{world} on machine {me['machine']}: {me['train_nodes']} training "
          f"nodes, {steps_per_epoch} steps per epoch", flush=True)

    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    best_state: dict[str, Any] | None = None
    steps_done = 0
    num_layers = len(plan.fanouts)
    for epoch in range(1, plan.epochs + 1):
        ddp.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros(1, dtype=torch.float64)
        for _, (input_nodes, seeds, blocks) in zip(range(steps_per_epoch), loader):
            x = g.ndata["feat"][input_nodes]
            labels = g.ndata["label"][seeds]
            output = ddp(annotate_blocks(g, blocks), x)
            rows = torch.arange(len(seeds))
            batch = zoo.Batch(graph=blocks, inputs=x, node_ids=seeds, labels=labels,
                              labeled=torch.ones(len(seeds), dtype=torch.bool), loss_rows=rows)
            loss = exp.task.loss(output, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach())
            steps_done += 1
        td.all_reduce(loss_sum)
        record: dict[str, Any] = {"epoch": epoch,
                                  "loss": float(loss_sum) / (steps_per_epoch * world),
                                  "epoch_s": time.perf_counter() - t0}
        check_finite_loss(record["loss"], epoch)  # before evaluating a broken model
        if epoch % plan.eval_every == 0 or epoch == plan.epochs:
            totals = torch.stack([evaluate(model, g, split[s], num_layers)
                                  for s in ("val", "test")])
            td.all_reduce(totals)
            record["val_accuracy"], record["val_loss"] = rates(totals[0])
            record["test_accuracy"] = rates(totals[1])[0]
            if best is None or (record["val_accuracy"], -record["val_loss"]) > (
                    best["val_accuracy"], -best["val_loss"]):
                best, best_state = record, copy.deepcopy(model.state_dict())
        history.append(record)
        if rank == 0:
            shown = "  ".join(f"{k} {record[k]:.4f}" for k in
                              ("loss", "val_accuracy", "test_accuracy") if k in record)
            print(f"epoch {epoch}: {shown}", flush=True)
        if plan.patience is not None and best and epoch - best["epoch"] >= plan.patience:
            break  # every trainer sees the same summed metrics: all stop together

    trainers: list[Any] = [None] * world
    td.all_gather_object(trainers, {**me, "steps": steps_done})
    assert best is not None  # the last epoch is always evaluated
    metrics = {
        "graph_name": meta["zoo"].get("graph_name", meta["graph_name"]),
        "experiment": meta["zoo"].get("experiment"),
        "num_parts": int(meta["num_parts"]), "world_size": world,
        "epochs": len(history), "best_epoch": best["epoch"],
        "val_accuracy": best["val_accuracy"], "val_loss": best["val_loss"],
        "test_accuracy": best["test_accuracy"],
        "final_test_accuracy": history[-1]["test_accuracy"],
        "settings": {"fanouts": list(plan.fanouts), "batch_size": plan.batch_size,
                     "epochs": plan.epochs, "seed": args.seed, "optimizer": plan.optimizer},
        "trainers": trainers, "history": history,
        "wall_s": time.perf_counter() - start, "written_by_rank": rank,
    }
    td.barrier()
    if rank != 0:
        return None
    print(f"test_accuracy {metrics['test_accuracy']:.4f} (val {metrics['val_accuracy']:.4f}, "
          f"epoch {metrics['best_epoch']}) with {world} trainers", flush=True)
    if args.out is not None:
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
        torch.save(best_state, out / ".model.pt.tmp")
        os.replace(out / ".model.pt.tmp", out / "model.pt")
        atomic_write(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Run one DistDGL process: a server when ``DGL_ROLE=server``, else a trainer."""
    args = parser().parse_args(argv)
    try:
        import dgl

        if os.environ.get("DGL_ROLE", "client") == "server":
            colocate_from_env()
            dgl.distributed.initialize(str(args.ip_config), net_type=args.net_type)
            return 0  # initialize serves, then exits the process
        colocate_from_env()
        dgl.distributed.initialize(str(args.ip_config), net_type=args.net_type)
        import torch.distributed as td

        # DGL first, then the trainers' group (DGL's order), then the experiment: zoo.build
        # finds the group initialised and joins no other (the launcher checked the config
        # before starting anything).
        td.init_process_group("gloo", timeout=datetime.timedelta(seconds=args.timeout))
        setup = TrainerSetup.load(args)
        train(setup, args)
        td.destroy_process_group()
        return 0
    except SystemExit as e:
        if e.code in (None, 0):
            raise  # a server's initialize() ends the process this way
        hard_exit(e.code if isinstance(e.code, int) else 1)
    except ZooError as e:
        print(f"zoo: error: {e}", file=sys.stderr)
        hard_exit(e.exit_code)
    except BaseException:  # noqa: BLE001 - exit now: DGL's exit barrier would hang
        traceback.print_exc()
        hard_exit(1)
    return 1


def hard_exit(code: int) -> None:
    """Exit at once with ``code``, skipping the ``atexit`` handlers (DGL's exit barrier
    waits for every trainer, and the others may be blocked on this one)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
