"""Where a run computes: its device, its CPU threads, and its rank among the processes
of a run.

One :class:`Runtime` travels in every training context. In a single process it is rank 0
of 1, its :meth:`Runtime.reduce` returns its input and :meth:`Runtime.barrier` does
nothing. Under ``torchrun`` (or ``zoo run --nproc N``, which launches it) the process
joins the group the launcher describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...;
gloo on CPUs, NCCL on GPUs, each rank on the GPU of its ``LOCAL_RANK``), and these become
the collective operations: the engine wraps the model in ``DistributedDataParallel``,
batch sources give each rank its share of the seeds, metrics are averaged over the
ranks so that every rank takes the same early-stopping decision, and only rank 0
writes the run folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from zoo.errors import ConfigError
from zoo.threads import ThreadPolicy

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def resolve_device(spec: str) -> torch.device:
    """The device a config's ``device:`` names; a ConfigError if this machine lacks it.

    ``auto`` is the first CUDA device when there is one, else the CPU.
    """
    spec = str(spec).strip().lower()
    if not DEVICE_PATTERN.match(spec):
        raise ConfigError(f"device: '{spec}' is not a device; use auto, cpu, cuda or cuda:N")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no visible GPU"
            raise ConfigError(f"device: '{spec}' asks for CUDA, but this machine has none "
                              f"(torch {torch.__version__}, {build}); use device: auto or cpu")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device: '{spec}' does not exist; this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s), cuda:0 to "
                              f"cuda:{torch.cuda.device_count() - 1}")
        return torch.device("cuda", index)
    if spec == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        raise ConfigError("device: 'mps' asks for Apple's GPU, which this machine lacks; "
                          "use device: auto or cpu")
    return torch.device(spec)


def launched_world_size() -> int:
    """The number of processes a launcher (torchrun) started for this run, 1 if none
    (a launcher sets WORLD_SIZE, RANK and MASTER_ADDR; WORLD_SIZE alone is not one)."""
    if not all(os.environ.get(k) for k in ("WORLD_SIZE", "RANK", "MASTER_ADDR")):
        return 1
    try:
        return max(1, int(os.environ["WORLD_SIZE"]))
    except ValueError:
        return 1


def join_process_group(device: torch.device) -> None:
    """Join the ``torch.distributed`` group a launcher describes, once per process."""
    import torch.distributed as dist

    if launched_world_size() == 1 or not dist.is_available() or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend)


def leave_process_group() -> None:
    """Leave the process group, if this process joined one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@dataclass
class Runtime:
    """Device, rank and world size of this process, with collective helpers.

    Attributes:
        device: where data, graph and models live.
        rank: this process's rank (0 in a single process).
        world_size: number of processes training together (1 in a single process).
        threads: the CPU thread policy (:mod:`zoo.threads`) training runs under.
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world_size: int = 1
    threads: ThreadPolicy = field(default_factory=ThreadPolicy)

    @classmethod
    def from_config(cls, device: str = "auto", threads: object = None) -> Runtime:
        """The runtime for a config's ``device:`` and ``threads:``, with the rank and
        world size of an initialised ``torch.distributed`` process group, if any."""
        resolved = resolve_device(device)
        if launched_world_size() > 1 and resolved.type == "cuda" and resolved.index in (
                None, 0) and str(device).strip().lower() in ("auto", "cuda"):
            # One GPU per process: the launcher's LOCAL_RANK says which.
            local = int(os.environ.get("LOCAL_RANK", "0"))
            resolved = torch.device("cuda", local % max(torch.cuda.device_count(), 1))
        join_process_group(resolved)
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        return cls(resolved, rank, world, ThreadPolicy.from_setting(threads))

    @property
    def is_main(self) -> bool:
        """Whether this process writes run output (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def to(self, value: Any) -> Any:
        """``value`` (a tensor, a module, a DGL graph, a dataset...) on this device."""
        if value is None or not hasattr(value, "to"):
            return value
        return value.to(self.device)

    def reduce(self, tensor: torch.Tensor, op: str = "mean") -> torch.Tensor:
        """``tensor`` reduced over all ranks by ``op`` ('sum', 'mean', 'max', 'min');
        the tensor itself in a single process."""
        if not self.distributed:
            return tensor
        out = tensor.detach().clone()
        ops = {"sum": torch.distributed.ReduceOp.SUM, "mean": torch.distributed.ReduceOp.SUM,
               "max": torch.distributed.ReduceOp.MAX, "min": torch.distributed.ReduceOp.MIN}
        torch.distributed.all_reduce(out, op=ops[op])
        return out / self.world_size if op == "mean" else out

    def reduce_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Float metrics averaged over the ranks (the same keys on every rank), so that
        every rank records and decides on the same numbers."""
        if not self.distributed or not metrics:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64,
                              device=self.device if self.device.type == "cuda" else "cpu")
        reduced = dict(zip(keys, self.reduce(values).tolist()))
        return {k: reduced[k] for k in metrics}

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in ``DistributedDataParallel`` when several processes train (its
        gradients all-reduced in the backward pass), else ``model`` itself."""
        if not self.distributed or not any(p.requires_grad for p in model.parameters()):
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for in a single process)."""
        if self.distributed:
            torch.distributed.barrier()
