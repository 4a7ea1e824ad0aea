"""Launch a DistDGL job on this host: servers and trainers as local processes.

``launch(part_config, num_trainers)`` does on one host what DGL's ``tools/launch.py``
does over ssh: it writes the ip config, starts one group of servers per partition (each
partition a simulated machine, see :mod:`zoo_plugins.distributed.one_host`) and the
trainers with the environment DGL and torch.distributed read, waits, and returns the
metrics rank 0 wrote. If any process fails or the time runs out, it stops every process
it started (each in its own process group) and raises :class:`LaunchError` with the end
of the failed process's log.

From the shell::

    python -m zoo_plugins.distributed.launch --part-config parts/cora.json \\
        --num-trainers 2 --out runs/cora-dist
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, ZooError
from zoo_plugins.distributed.one_host import MACHINE_ID_ENV, SHM_TAG_ENV
from zoo_plugins.distributed.partition import check_out, read_part_config

HOST = "127.0.0.1"
SERVER_GRACE_S = 30.0  # how long servers may take to stop once the trainers are done
LOG_TAIL_LINES = 40


class LaunchError(ZooError):
    """A process of a DistDGL job failed or the job ran out of time (exit code 1)."""

    exit_code = 1


@dataclass
class Process:
    """A server or trainer the launcher started, with its log file."""

    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the process's log."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.rstrip().splitlines()[-lines:])


def free_port_block(count: int, host: str = HOST, tries: int = 200) -> int:
    """A port ``p`` such that ``p .. p+count-1`` are free now (a DGL machine's servers
    listen on consecutive ports)."""
    for _ in range(tries):
        with socket.socket() as s:
            s.bind((host, 0))
            base = s.getsockname()[1]
        if base + count > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise LaunchError(f"found no {count} consecutive free ports on {host}")


def machine_part_config(part_config: Path, meta: dict[str, Any], machine: int, tag: str,
                        folder: Path) -> Path:
    """A copy of the partition config for one simulated machine: its own graph name (the
    name of its graph's shared memory) and absolute paths to the partition files."""
    base = part_config.parent.absolute()

    def absolute(value: Any) -> Any:
        if isinstance(value, str):
            return str(base / value)
        if isinstance(value, dict):
            return {k: absolute(v) for k, v in value.items()}
        return value

    copy = dict(meta)
    copy["graph_name"] = f"{meta['graph_name']}_{tag}m{machine}"
    for key, value in meta.items():
        if key.startswith("part-"):
            copy[key] = absolute(value)
        elif key in ("node_map", "edge_map"):
            copy[key] = absolute(value)  # ranges stay; a non-range partition's files move
    copy["zoo"] = {**{k: absolute(v) if k in ("config", "orig_nids", "orig_eids") else v
                      for k, v in meta["zoo"].items()}, "graph_name": meta["graph_name"]}
    path = folder / f"machine-{machine}.json"
    path.write_text(json.dumps(copy, indent=4) + "\n", encoding="utf-8")
    return path


def stop(processes: list[Process], grace_s: float = 5.0) -> None:
    """SIGTERM each running process's group, then SIGKILL what is left after
    ``grace_s``; reap them all."""
    running = [p for p in processes if p.popen.poll() is None]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.popen.pid, sig)  # its own group: start_new_session=True
        deadline = time.monotonic() + grace_s
        while running and time.monotonic() < deadline:
            running = [p for p in running if p.popen.poll() is None]
            time.sleep(0.05)
        if not running:
            break
    for p in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.popen.wait(timeout=grace_s)


def remove_shared_memory(tag: str) -> list[str]:
    """Remove the shared-memory segments of this run (their names carry ``tag``), which a
    killed server leaves behind; the names removed."""
    shm = Path("/dev/shm")
    removed = []
    if shm.is_dir():
        for entry in shm.iterdir():
            if tag in entry.name:
                entry.unlink(missing_ok=True)
                removed.append(entry.name)
    return removed


def supervise(servers: list[Process], trainers: list[Process], timeout: float) -> None:
    """Wait for the trainers to finish and the servers to stop; a LaunchError (after
    stopping everything) when a process fails or time runs out."""
    deadline = time.monotonic() + timeout
    trainers_done_at: float | None = None
    while True:
        # Every failure seen at once: a trainer blocked on a crashed one fails right
        # after it, and the cause must not hide behind the consequence.
        failed = [(p, code) for p in trainers + servers
                  if (code := p.popen.poll()) not in (None, 0)]
        if failed:
            stop(servers + trainers)
            which = ", ".join(f"{p.name} exited with code {code}" for p, code in failed)
            logs = "\n".join(f"The end of {p.log}:\n{p.tail()}" for p, _ in failed)
            raise LaunchError(f"{which}; the other processes were stopped.\n{logs}")
        if all(p.popen.poll() == 0 for p in trainers):
            trainers_done_at = trainers_done_at or time.monotonic()
            if all(p.popen.poll() is not None for p in servers):
                return
            if time.monotonic() - trainers_done_at > SERVER_GRACE_S:
                stop(servers)  # the trainers are done: the work is complete
                return
        if time.monotonic() > deadline:
            stop(servers + trainers)
            waiting = ", ".join(p.name for p in trainers + servers if p.popen.poll() is None)
            raise LaunchError(f"the job ran past its {timeout:.0f} s timeout and was stopped "
                              f"(still running: {waiting}); logs in {trainers[0].log.parent}")
        time.sleep(0.1)


def launch(part_config: str | Path, num_trainers: int, num_servers: int = 1, *,
           out: str | Path | None = None, epochs: int | None = None,
           batch_size: int | None = None, fanouts: list[int] | None = None, seed: int = 0,
           timeout: float = 600.0, net_type: str = "socket", python: str | None = None,
           env: dict[str, str] | None = None) -> dict[str, Any]:
    """Train on the partitions of ``part_config`` with DistDGL on this host and return
    rank 0's metrics.

    Each partition is a machine with ``num_servers`` servers (more than one only for a
    single partition: DGL's backup servers find their machine's graph by a name that
    several machines on one host cannot share); ``num_trainers`` trainers in all, the
    same number per partition. ``epochs``, ``batch_size`` and ``fanouts`` override the
    stored config's. ``out`` (absent or empty) receives ``metrics.json`` and ``model.pt``
    from rank 0 and ``launch/`` (the ip config, the per-machine partition configs and one
    log per process); without it everything goes to a temporary folder, removed at the
    end. ``python`` is the interpreter of the processes (default: this one); ``env``
    adds variables to theirs. Raises ConfigError before starting anything for settings
    that cannot run, LaunchError when a process fails or ``timeout`` seconds pass.
    """
    from zoo_plugins.distributed.train import TrainerSetup

    part_config = Path(part_config).expanduser().absolute()
    meta = read_part_config(part_config)
    parts = int(meta["num_parts"])
    if isinstance(num_trainers, bool) or not isinstance(num_trainers, int) or (
            num_trainers < 1 or num_trainers % parts):
        raise ConfigError(f"num_trainers: expected a multiple of the {parts} partition(s) "
                          f"(the same number of trainers on each), got {num_trainers!r}")
    if num_servers < 1 or (parts > 1 and num_servers != 1):
        raise ConfigError(f"num_servers: {num_servers} servers per partition; on one host "
                          f"with {parts} partitions give 1 (backup servers need a machine "
                          "per host)")
    if net_type not in ("socket", "tensorpipe"):
        raise ConfigError(f"net_type: expected 'socket' or 'tensorpipe', got {net_type!r}")
    if timeout <= 0:
        raise ConfigError(f"timeout: expected seconds > 0, got {timeout}")
    # The trainers' checks, once, before any process starts.
    TrainerSetup.load(argparse.Namespace(part_config=part_config, epochs=epochs,
                                         batch_size=batch_size, fanouts=fanouts))

    keep = out is not None
    if keep:
        out = Path(out).expanduser().absolute()
        check_out(out)
        out.mkdir(parents=True, exist_ok=True)
        work = out / "launch"
        work.mkdir()
    else:
        work = Path(tempfile.mkdtemp(prefix="zoo-distdgl-"))
        out = work / "result"
    logs = work / "logs"
    logs.mkdir()
    tag = f"zoo{secrets.token_hex(4)}"
    machine_configs = [machine_part_config(part_config, meta, m, tag, work)
                       for m in range(parts)]
    ip_config = work / "ip_config.txt"
    ip_config.write_text("".join(f"{HOST} {free_port_block(num_servers)}\n"
                                 for _ in range(parts)), encoding="utf-8")
    per_machine = num_trainers // parts

    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith("DGL_") and k not in (SHM_TAG_ENV, MACHINE_ID_ENV)}
    base_env.update({"DGLBACKEND": "pytorch", "PYTHONUNBUFFERED": "1",
                     "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    base_env.update(env or {})
    dgl_env = {"DGL_IP_CONFIG": str(ip_config), "DGL_NUM_SERVER": str(num_servers),
               "DGL_NUM_CLIENT": str(num_trainers), "DGL_NUM_SAMPLER": "0",
               "DGL_GRAPH_FORMAT": "csc"}
    command = [python or sys.executable, "-m", "zoo_plugins.distributed.train",
               "--ip-config", str(ip_config), "--net-type", net_type]

    def start(name: str, machine: int, role_env: dict[str, str], args: list[str]) -> Process:
        log = logs / f"{name.replace(' ', '-')}.log"
        proc_env = {**base_env, **dgl_env, **role_env,
                    "DGL_CONF_PATH": str(machine_configs[machine]),
                    SHM_TAG_ENV: f"{tag}m{machine}"}
        with open(log, "wb") as f:
            popen = subprocess.Popen(
                [*command, "--part-config", str(machine_configs[machine]), *args],
                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=proc_env,
                start_new_session=True)
        return Process(name, popen, log)

    servers: list[Process] = []
    trainers: list[Process] = []
    try:
        for server_id in range(parts * num_servers):
            servers.append(start(f"server {server_id}", server_id // num_servers,
                                 {"DGL_ROLE": "server", "DGL_SERVER_ID": str(server_id)}, []))
        master_port = free_port_block(1)
        options = ["--out", str(out), "--seed", str(seed), "--timeout", str(timeout)]
        options += ["--epochs", str(epochs)] if epochs is not None else []
        options += ["--batch-size", str(batch_size)] if batch_size is not None else []
        options += ["--fanouts", ",".join(map(str, fanouts))] if fanouts is not None else []
        for rank in range(num_trainers):
            machine = rank // per_machine
            trainers.append(start(f"trainer {rank}", machine, {
                "DGL_ROLE": "client", "DGL_DIST_MODE": "distributed", "DGL_GROUP_ID": "0",
                MACHINE_ID_ENV: str(machine), "MASTER_ADDR": HOST,
                "MASTER_PORT": str(master_port), "RANK": str(rank),
                "WORLD_SIZE": str(num_trainers), "LOCAL_RANK": str(rank % per_machine),
            }, options))
        supervise(servers, trainers, timeout)
        metrics_file = out / "metrics.json"
        if not metrics_file.is_file():
            raise LaunchError(f"the trainers finished but rank 0 wrote no {metrics_file}; "
                              f"the end of its log:\n{trainers[0].tail()}")
        return json.loads(metrics_file.read_text(encoding="utf-8"))
    finally:
        stop(servers + trainers)
        remove_shared_memory(tag)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m zoo_plugins.distributed.launch``: run :func:`launch` from the shell."""
    from zoo_plugins.distributed.train import parse_fanouts

    p = argparse.ArgumentParser(prog="python -m zoo_plugins.distributed.launch",
                                description="Train with DistDGL on this host, one simulated "
                                            "machine per partition.")
    p.add_argument("--part-config", type=Path, required=True,
                   help="the partition config `zoo partition` wrote, DIR/<graph>.json")
    p.add_argument("--num-trainers", type=int, required=True,
                   help="trainers in all (a multiple of the number of partitions)")
    p.add_argument("--num-servers", type=int, default=1, help="servers per partition")
    p.add_argument("--out", type=Path, help="run folder (absent or empty)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--fanouts", type=parse_fanouts, help="e.g. 10,10")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds (default 3600)")
    p.add_argument("--net-type", choices=("socket", "tensorpipe"), default="socket")
    args = p.parse_args(argv)
    try:
        metrics = launch(args.part_config, args.num_trainers, args.num_servers, out=args.out,
                         epochs=args.epochs, batch_size=args.batch_size, fanouts=args.fanouts,
                         seed=args.seed, timeout=args.timeout, net_type=args.net_type)
    except ZooError as e:
        print(f"zoo: error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"test_accuracy {metrics['test_accuracy']:.4f} (val {metrics['val_accuracy']:.4f}, "
          f"epoch {metrics['best_epoch']}) with {metrics['world_size']} trainers on "
          f"{metrics['num_parts']} partition(s), {metrics['wall_s']:.1f} s")
    if args.out is not None:
        print(f"run saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
