"""Fixtures: a simulator on a background thread (port 0) and a recording callback receiver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from simulator.config import SimulatorConfig
from simulator.server import start_in_thread
from simulator.tests.helpers import FAST, CallbackReceiver, Sim


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def make_sim(receiver: CallbackReceiver):
    """Factory: ``make_sim(**config_overrides)`` starts a simulator (stopped after the test)."""
    started: list[Sim] = []

    def factory(**overrides: Any) -> Sim:
        config = SimulatorConfig(**{**FAST, **overrides})
        server, url = start_in_thread(config=config)
        sim = Sim(server, url, receiver)
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.close()


@pytest.fixture
def sim(make_sim) -> Sim:
    return make_sim()
