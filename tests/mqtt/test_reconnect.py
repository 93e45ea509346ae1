"""A broker restart: the uplink reconnects with backoff and delivers everything, in order."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.mqtt.helpers import collecting, config, first_seen, numbered, running_uplink, wait_until
from tests.support.mosquitto import Mosquitto


async def test_broker_restart_loses_nothing_and_keeps_the_order(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgetwin")
    # A persistent consumer: the broker queues everything for it, across its own restart.
    consumer = config(mosquitto.url, clean_start=False, session_expiry=600, client_id="backend")
    async with collecting(consumer, "data/#", client_id="backend"):
        pass
    cfg = config(mosquitto.url, reconnect_max=0.5)
    async with running_uplink(cfg, tmp_path / "outbox.db", window=16) as h:
        await h.put("data/x", numbered(0, 100))
        await wait_until(lambda: h.uplink.published == 100)

        mosquitto.stop()
        await wait_until(lambda: not h.uplink.connected)
        await h.put("data/x", numbered(100, 150))  # committed while the broker is down
        await wait_until(lambda: h.uplink.failures >= 2)
        assert h.uplink.published == 100
        assert h.outbox.stats().depth == 150
        delay = h.uplink.last_delay
        assert delay is not None
        assert 0 < delay <= 0.5

        mosquitto.start()
        await wait_until(lambda: h.outbox.stats().depth == 0)
        assert h.uplink.connects == 2
        assert h.uplink.failures == 0
    async with collecting(consumer, "data/#", client_id="backend", subscribe=False) as got:
        await wait_until(lambda: len(first_seen([p for _, p in got])) == 250)
    assert first_seen([p for _, p in got]) == list(range(250))
    messages = [r.getMessage() for r in caplog.records if r.name == "edgetwin.uplink.session"]
    assert sum("connected again" in m for m in messages) == 1
