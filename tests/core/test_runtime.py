"""Devices and ranks: the ``device:`` key, the Runtime seam (no-ops in one process), data
and models on the run's device, and the device code path end to end (on CUDA too, when
the machine has it). Nothing here imports DGL: it also runs where DGL is missing."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.errors import ConfigError
from zoo.registry import PluginRegistrar, Registry
from zoo.runtime import Runtime, resolve_device

CUDA = torch.cuda.is_available()


def test_auto_is_cuda_when_present_else_cpu():
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_one_clear_config_error(spec):
    with pytest.raises(ConfigError, match=f"device: '{spec}' asks for CUDA, but this machine "
                                          "has none .*; use device: auto or cpu"):
        resolve_device(spec)


def test_a_device_that_is_no_device_is_a_config_error():
    with pytest.raises(ConfigError, match="'gpu' is not a device; use auto, cpu, cuda"):
        resolve_device("gpu")
    if CUDA:
        with pytest.raises(ConfigError, match="does not exist"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_single_process_runtime_is_rank_zero_and_its_collectives_are_no_ops():
    rt = Runtime()
    assert (rt.rank, rt.world_size, rt.is_main, rt.distributed) == (0, 1, True, False)
    x = torch.tensor([1.0, 2.0])
    assert rt.reduce(x) is x and rt.reduce(x, "sum") is x
    rt.barrier()
    assert rt.to(None) is None and rt.to(x).device == rt.device


def blobs(*, count: int = 120) -> zoo.GraphData:
    """Three clusters of 4-d points, no graph."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(count) % 3
    features = torch.eye(3, 4)[labels] * 3 + torch.randn(count, 4, generator=gen)
    part = torch.arange(count) % 4
    return zoo.GraphData(None, features, labels, part == 0, part == 1, part >= 2, 3, "blobs")


@pytest.fixture(scope="module")
def registry() -> Registry:
    reg = Registry()
    for comp in zoo.default_registry().list():
        reg.add_component(comp)
    extra = PluginRegistrar("tests", "tests", "0")
    extra.add("dataset", "blobs", blobs)
    extra.commit(reg)
    return reg


DEVICES = ["cpu", *(["cuda"] if CUDA else [])]


@pytest.mark.parametrize("device", DEVICES)
def test_the_device_path_trains_with_data_and_model_on_the_device(registry, device):
    cfg = {"dataset": {"name": "blobs"}, "encoder": {"name": "mlp", "hidden": 16},
           "device": device,
           "trainer": {"name": "supervised", "epochs": 40,
                       "batches": {"name": "items", "batch_size": 32}}}
    exp = zoo.build(cfg, registry=registry)
    assert exp.runtime.device.type == device
    summary = exp.fit(seeds=1)
    assert summary["config"]["device"] == device
    assert summary["metrics"]["test_accuracy"]["mean"] > 0.8
    assert next(exp.model.parameters()).device.type == device
    assert exp.evaluate({"name": "items"})["val_accuracy"] == pytest.approx(
        summary["metrics"]["val_accuracy"]["mean"])


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_and_cpu_reach_the_same_accuracy(registry):
    accs = {}
    for device in ("cpu", "cuda"):
        cfg = {"dataset": {"name": "blobs"}, "encoder": {"name": "mlp", "hidden": 16},
               "device": device, "trainer": {"name": "supervised", "epochs": 40}}
        accs[device] = zoo.build(cfg, registry=registry).fit(seeds=3)["metrics"][
            "test_accuracy"]["mean"]
    assert accs["cuda"] == pytest.approx(accs["cpu"], abs=0.03)
