"""The thread policy: a fixed count, ``auto`` following the machine's load, the
environment variable, and what the config accepts."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

import zoo
from zoo import threads as threads_mod
from zoo.errors import ConfigError
from zoo.threads import ThreadPolicy, parse_threads


class FakeMachine:
    """/proc/stat and this process's CPU time as a test says: others keep ``others``
    cores busy."""

    def __init__(self, monkeypatch, others: float) -> None:
        self.others, self.t = others, 0.0
        monkeypatch.setattr(threads_mod.time, "monotonic", lambda: self.t)
        monkeypatch.setattr(threads_mod.time, "process_time", lambda: 0.5 * self.t)
        monkeypatch.setattr(threads_mod, "busy_seconds",
                            lambda cpus: (self.others + 0.5) * self.t)

    def wait(self, seconds: float) -> None:
        self.t += seconds


@pytest.mark.parametrize(("others", "expected"), [(0.0, 4), (0.2, 4), (0.3, 3), (1.0, 3),
                                                  (2.9, 1), (7.0, 1)])
def test_auto_leaves_the_cores_others_use(monkeypatch, others, expected):
    machine = FakeMachine(monkeypatch, others)
    policy = ThreadPolicy()
    policy.cap = 4
    machine.wait(1.0)
    assert policy.choose() == expected


def test_auto_follows_the_load_between_steps(monkeypatch):
    machine = FakeMachine(monkeypatch, 0.0)
    monkeypatch.setattr(threads_mod.time, "sleep", machine.wait)
    previous = torch.get_num_threads()
    policy = ThreadPolicy(interval=1.0)
    policy.cap = 2
    try:
        policy.begin()
        assert torch.get_num_threads() == 2
        machine.others = 1.0  # a competitor starts
        machine.wait(0.5)
        policy.tick()  # too soon to look again
        assert torch.get_num_threads() == 2
        machine.wait(0.6)
        policy.tick()
        assert torch.get_num_threads() == 1
        machine.others = 0.0  # and stops
        machine.wait(1.1)
        policy.tick()
        assert torch.get_num_threads() == 2
        assert policy.history == [2, 1, 2]
    finally:
        policy.end()
    assert torch.get_num_threads() == previous


def test_a_real_competitor_takes_a_core():
    policy = ThreadPolicy()
    if policy.cap < 2 or threads_mod.busy_seconds(None) is None:
        pytest.skip("needs two cores and /proc/stat")
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        policy.others()  # start a window with the competitor running
        time.sleep(0.5)
        assert policy.choose() <= policy.cap - 1
    finally:
        spin.kill()
        spin.wait()


def test_fixed_count_env_and_config(monkeypatch):
    monkeypatch.delenv("ZOO_THREADS", raising=False)
    assert ThreadPolicy.from_setting(3).fixed == 3
    assert ThreadPolicy.from_setting("auto").fixed is None
    monkeypatch.setenv("ZOO_THREADS", "2")
    assert ThreadPolicy.from_setting("auto").fixed == 2
    assert ThreadPolicy.from_setting(5).fixed == 2  # the machine's setting wins
    monkeypatch.setenv("ZOO_THREADS", "many")
    with pytest.raises(ConfigError, match="ZOO_THREADS .*expected auto or a whole number"):
        ThreadPolicy.from_setting()
    for bad in (0, -1, 1.5, True, "x"):
        with pytest.raises(ConfigError, match="threads: expected auto or a whole number"):
            parse_threads(bad)


def test_a_run_uses_the_config_threads_and_restores_torch(monkeypatch):
    monkeypatch.delenv("ZOO_THREADS", raising=False)
    seen: list[int] = []
    previous = torch.get_num_threads()
    config = {"dataset": {"name": "planetoid", "subset": "cora"},
              "encoder": {"name": "mlp", "hidden": 8},
              "trainer": {"name": "supervised", "epochs": 3}, "threads": 1}
    exp = zoo.build(config)
    original = exp.task.loss

    def loss(output, batch):
        seen.append(torch.get_num_threads())
        return original(output, batch)

    exp.task.loss = loss
    exp.fit(seeds=1)
    assert set(seen) == {1}
    assert torch.get_num_threads() == previous
    assert exp.config["threads"] == 1
