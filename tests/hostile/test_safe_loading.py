"""Safe loading, proven: a malicious pickle never runs.

The payload is a real one: unpickled with :func:`pickle.loads` it creates a marker file
(the first test shows that). It is planted as each of the eight Planetoid files, with a
checksum that does not match (the normal case: refused before parsing), with the
pinned checksum made to match, and with the pin removed and the mirror's own
``SHA256SUMS`` vouching for it (the loader trusts that list, with a warning); then as a
checkpoint (:func:`zoo.checkpoint.load_file`, what ``zoo run --resume`` reads) and as a
run's trained weights (``zoo.load``, ``zoo embed``). Every load is refused with a clear
error and the marker never appears.
"""

from __future__ import annotations

import builtins
import logging
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from zoo_plugins.datasets import fetch as fetch_mod
from zoo_plugins.datasets import planetoid as planetoid_mod
from zoo_plugins.datasets.fetch import mirror_file

import zoo
from zoo.checkpoint import load_file
from zoo.errors import DataError

REPO = Path(__file__).resolve().parents[2]
CORA = mirror_file("ind.cora.x", "planetoid")
needs_cora = pytest.mark.skipif(CORA is None, reason="needs the local Cora mirror")


class Payload:
    """Unpickling this calls ``call(arg)``: what an attacker's file does."""

    def __init__(self, call: object, arg: str) -> None:
        self.call, self.arg = call, arg

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return self.call, (self.arg,)


def payloads(marker: Path) -> dict[str, bytes]:
    """Pickles that create ``marker`` when unpickled: a shell command, Python code."""
    shell = Payload(os.system, f"touch '{marker}'")
    code = Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()")
    return {"os.system, protocol 2": pickle.dumps(shell, protocol=2),
            "exec, protocol 4": pickle.dumps(code, protocol=4),
            "os.system in a list, protocol 5": pickle.dumps([1, shell], protocol=5)}


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a planted pickle ran"


def test_the_payloads_are_real(tmp_path):
    for name, data in payloads(tmp_path / "ran").items():
        pickle.loads(data)  # exactly what a careless loader would do
        assert (tmp_path / "ran").exists(), name
        (tmp_path / "ran").unlink()


# -- Planetoid files --------------------------------------------------------------------
def _planted_mirror(tmp_path: Path, name: str, data: bytes) -> Path:
    """A copy of the Cora mirror with ``name`` replaced by ``data``."""
    mirror = tmp_path / "mirror"
    shutil.copytree(CORA.parent, mirror)
    mirror.chmod(0o755)
    for path in mirror.iterdir():
        path.chmod(0o644)  # the shared files are read-only
    (mirror / name).write_bytes(data)
    return mirror


@needs_cora
@pytest.mark.parametrize("checksum", ["mismatch", "pinned", "mirror sums"])
@pytest.mark.parametrize("part", planetoid_mod.PARTS)
def test_planted_planetoid_pickle_is_refused(part, checksum, tmp_path, marker, monkeypatch,
                                            caplog):
    name = f"ind.cora.{part}"
    data = payloads(marker)["os.system, protocol 2"]
    mirror = _planted_mirror(tmp_path, name, data)
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZOO_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("ZOO_DATA_DIR", str(cache))
    digest = fetch_mod.sha256_of(mirror / name)
    if checksum == "pinned":
        monkeypatch.setitem(planetoid_mod.PINNED_SHA256, name, digest)
    elif checksum == "mirror sums":
        monkeypatch.delitem(planetoid_mod.PINNED_SHA256, name)
        sums = fetch_mod.parse_sums((mirror / "SHA256SUMS").read_text())
        sums[name] = digest
        (mirror / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sums.items()))
    planetoid_mod.clear_cache()
    with caplog.at_level(logging.WARNING), pytest.raises(DataError) as info:
        planetoid_mod.planetoid(subset="cora")
    message = str(info.value)
    if checksum == "mismatch":
        assert f"checksum mismatch for {name}" in message
        assert not (cache / "planetoid" / name).exists()
    elif part == "test.index":  # read as text, never unpickled
        assert f"{name} is not a list of node ids" in message
    else:
        assert f"refusing to load {name}: it asks for posix.system" in message
    if checksum == "mirror sums":
        assert "no pinned checksum" in caplog.text
    assert "\n" not in message
    planetoid_mod.clear_cache()


@pytest.mark.parametrize("kind", ["os.system, protocol 2", "exec, protocol 4",
                                  "os.system in a list, protocol 5"])
def test_safe_load_refuses_every_payload(kind, tmp_path, marker):
    from zoo_plugins.datasets.safe_pickle import safe_load

    path = tmp_path / "ind.cora.x"
    path.write_bytes(payloads(marker)[kind])
    with pytest.raises(DataError, match=r"refusing to load ind\.cora\.x: it asks for "
                                        r"(posix\.system|builtins\.exec)"):
        safe_load(path, what=path.name)


# -- checkpoints and weights --------------------------------------------------------
def _torch_file(path: Path, obj: object) -> Path:
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("kind", ["os.system, protocol 2", "exec, protocol 4",
                                  "os.system in a list, protocol 5", "torch.save"])
def test_planted_checkpoint_is_refused(kind, tmp_path, marker):
    path = tmp_path / "current.pt"
    if kind == "torch.save":  # torch's own zip format, the payload inside a state
        _torch_file(path, {"version": 1, "model": Payload(os.system, f"touch '{marker}'")})
    else:
        path.write_bytes(payloads(marker)[kind])
    with pytest.raises(DataError) as info:
        load_file(path)
    message = str(info.value)
    assert message.startswith((f"refusing to load '{path}'", f"cannot load '{path}'"))
    assert "nothing in it was run" in message and "weights_only" not in message
    if kind == "torch.save":
        assert "it asks for posix.system" in message


@pytest.fixture
def planted_run(tmp_path: Path, marker: Path) -> Path:
    """A run folder whose weights are a malicious pickle."""
    run = tmp_path / "run"
    (run / "weights").mkdir(parents=True)
    shutil.copy(REPO / "configs" / "gcn_cora.yaml", run / "config.yaml")
    _torch_file(run / "weights" / "seed-0.pt",
                {"format": "zoo-weights", "state_dict": Payload(os.system, f"touch '{marker}'")})
    return run


@needs_cora
def test_planted_weights_are_refused_by_zoo_load(planted_run):
    with pytest.raises(DataError, match=r"(cannot|refusing to) load .*seed-0\.pt"):
        zoo.load(planted_run)


@needs_cora
def test_planted_weights_are_refused_by_zoo_embed(planted_run, zoo_main, refusal):
    code, out, err = zoo_main("embed", str(planted_run))
    assert "seed-0.pt" in refusal(code, err, (1,))
    assert not (planted_run / "embeddings.npy").exists()
