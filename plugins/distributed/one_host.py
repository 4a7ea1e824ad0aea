"""Several DistDGL machines on one host: what DGL 1.1.3 needs to tell them apart.

DistDGL puts partition ``i`` on machine ``i`` (line ``i`` of the ip config) and assumes
one machine per host. Two of its identities are host-wide, so two partitions served from
one host collide:

- **shared memory.** Each server copies its partition's node and edge data into POSIX
  shared memory named after the data (``node~_N~feat-kvdata-``) and its graph structure
  after the graph name; the trainers on the machine map them. Two servers on one host
  write the same segments: the second overwrites the first's features (measured here: a
  trainer read the wrong rows, or failed with ``rpc.cc:484: Check failed: l_id <
  local_data_shape[0]``). Concurrent runs on one host collide the same way.
- **the machine id.** A trainer finds its machine by matching the ip config's addresses
  against the host's interfaces, the first match winning: every trainer on the host
  becomes machine 0, reads partition 0's data as its own and takes a share of partition
  0's training nodes.

The launcher therefore gives each simulated machine its own graph name (in a copy of the
partition config) and sets two variables that this module applies in every process
before DGL starts: ``ZOO_DISTDGL_SHM_TAG`` suffixes the key-value store's shared-memory
names (unique per run and machine) and ``ZOO_DISTDGL_MACHINE_ID`` is a trainer's machine.
Unset, DGL runs untouched, as DGL's ``tools/launch.py`` starts it across hosts.
"""

from __future__ import annotations

import os
from typing import Any

SHM_TAG_ENV, MACHINE_ID_ENV = "ZOO_DISTDGL_SHM_TAG", "ZOO_DISTDGL_MACHINE_ID"

_applied: dict[str, object] = {}


def colocate(machine_id: int | None, shm_tag: str) -> None:
    """Make this process one machine among several on the host: key-value shared memory
    named with ``shm_tag``, and (for a trainer) ``machine_id`` as its machine. Call it
    before ``dgl.distributed.initialize``; calling it again changes the settings."""
    import dgl.distributed.kvstore as kvstore
    import dgl.distributed.rpc_client as rpc_client

    if not shm_tag or not shm_tag.replace("_", "").isalnum():
        raise ValueError(f"shm_tag must be letters, digits and underscores, got {shm_tag!r}")
    empty_shared_mem = _applied.setdefault("empty_shared_mem", kvstore.empty_shared_mem)

    def tagged_shared_mem(name: str, is_create: bool, shape: Any, dtype: str) -> Any:
        return empty_shared_mem(f"{name}{shm_tag}", is_create, shape, dtype)

    kvstore.empty_shared_mem = tagged_shared_mem
    if machine_id is not None:
        _applied.setdefault("get_local_machine_id", rpc_client.get_local_machine_id)
        rpc_client.get_local_machine_id = lambda server_namebook: int(machine_id)


def colocate_from_env() -> bool:
    """Apply :func:`colocate` from the launcher's variables; whether they were set."""
    tag = os.environ.get(SHM_TAG_ENV)
    if not tag:
        return False
    machine = os.environ.get(MACHINE_ID_ENV)
    colocate(int(machine) if machine not in (None, "") else None, tag)
    return True
