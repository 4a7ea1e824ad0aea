"""Provenance of a run, for ``summary.json``: what code, on what host, from what command."""

from __future__ import annotations

import functools
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any


@functools.lru_cache(maxsize=1)
def source_commit() -> dict[str, Any] | None:
    """The git commit of the zoo's source when it runs from a checkout (and whether the
    checkout has uncommitted changes); None for an installed package."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=5, check=True).stdout.strip()

        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host() -> dict[str, Any]:
    """The machine: CPU model and cores, GPUs (if torch sees any), OS."""
    import torch

    gpus = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available() else [])
    return {"hostname": platform.node(), "os": platform.platform(), "cpu": cpu_model(),
            "cores": os.cpu_count(), "gpus": gpus}


def provenance(argv: list[str] | None = None) -> dict[str, Any]:
    """Versions, commit, command line, host and start time of this process's run."""
    from zoo import __version__

    argv = sys.argv if argv is None else argv
    # `zoo ...`, `python -m zoo ...` and `python -m zoo.cli ...` are all the zoo command.
    program = ("zoo" if argv and Path(argv[0]).name in ("zoo", "__main__.py", "cli.py")
               else (argv[0] if argv else ""))
    command = " ".join(shlex.quote(a) for a in [program, *argv[1:]]) if argv else ""
    return {
        "zoo": __version__,
        "source": source_commit(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in ("torch", "dgl", "numpy", "omegaconf",
                                                       "pluggy")},
        "command": command,
        "cwd": os.getcwd(),
        "host": host(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
