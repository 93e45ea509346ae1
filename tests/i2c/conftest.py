"""Fixtures for the I2C tests: an emulated bus behind a real I2cBus, and a leak check."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from edgetwin.transports.i2c import I2cBus
from firmware_stubs.i2c import FakeSMBus


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a bus worker thread running."""
    before = set(threading.enumerate())
    yield
    extra = [t for t in threading.enumerate() if t not in before]
    for t in extra:
        t.join(timeout=2.0)
    alive = [t for t in extra if t.is_alive()]
    assert not alive, f"threads left behind: {alive}"


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks behind."""
    yield
    me = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    assert not left, f"tasks left behind: {left}"


@pytest.fixture
def fake() -> FakeSMBus:
    """An empty emulated bus; tests attach chips to ``fake.chips``."""
    return FakeSMBus()


@pytest.fixture
async def bus(fake: FakeSMBus, no_leaked_tasks: None) -> AsyncIterator[I2cBus]:
    """The real transport over the emulated bus, closed after the test."""
    i2c = I2cBus(1, timeout=1.0, opener=fake.opener)
    try:
        yield i2c
    finally:
        i2c.close()
