"""Store-and-forward with real parts: broker outages, gateway crashes, a tiny outbox budget.

A persistent-session consumer (the same Mirror across reconnects) stands in for the cloud.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections import defaultdict
from pathlib import Path

import aiomqtt
import pytest

from edgetwin.cloud.mirror import Mirror
from edgetwin.cloud.subscriber import follow
from edgetwin.errors import ConnectionLostError
from edgetwin.uplink.codec import decode_event
from tests.support.mosquitto import Mosquitto
from tests.support.procs import gateway_config, start_gateway, start_pump

SCALE = float(os.environ.get("EDGETWIN_SOAK_SCALE", "1.0"))


class Cloud:
    """Follows the broker through outages with one persistent session and one Mirror."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seqs: dict[str, list[int]] = defaultdict(list)  # session → seqs in arrival order
        self.mirror = Mirror(on_rebirth_needed=lambda gw: None)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        seen: set[tuple[str, int]] = set()

        def on_update(u) -> None:  # type: ignore[no-untyped-def]
            if (u.session, u.seq) not in seen:
                seen.add((u.session, u.seq))
                self.seqs[u.session].append(u.seq)

        while not self.stop.is_set():
            try:
                await follow(
                    self.url,
                    on_update,
                    self.stop,
                    mirror=self.mirror,
                    client_id="edgetwin-test-cloud",
                    session_expiry=3600,
                )
            except ConnectionLostError:
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        self.stop.set()
        await self.task


def assert_complete(cloud: Cloud, sessions: list[str]) -> None:
    """Every frame of every session arrived once, in seq order, none missing, all decoded."""
    stats = cloud.mirror.stats()
    assert stats.undecodable == 0, stats
    assert stats.gaps == 0, stats
    for s in sessions:
        seqs = cloud.seqs[s]
        assert seqs == list(range(len(seqs))), f"session {s}: {seqs[:20]}..."


async def wait_until(predicate, limit: float) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(limit):
        while not predicate():
            await asyncio.sleep(0.1)


@pytest.mark.soak
async def test_broker_outage_loses_and_duplicates_nothing(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    outage = max(5.0, 30.0 * SCALE)
    pump, port = start_pump(tmp_path)
    cfg = gateway_config(
        tmp_path,
        pump_port=port,
        broker_url=mosquitto.url,
        extra="\n[mqtt]\nreconnect_max = 2.0\n" if False else "",
    )
    cloud = Cloud(mosquitto.url)
    gw = start_gateway(cfg, tmp_path)
    try:
        await asyncio.to_thread(gw.wait_for_output, "uplink: connected")
        await wait_until(
            lambda: len(cloud.seqs) == 1 and len(next(iter(cloud.seqs.values()))) >= 3, 30
        )
        mosquitto.stop()
        await asyncio.sleep(outage)  # the gateway keeps polling into its outbox
        before = len(next(iter(cloud.seqs.values())))
        mosquitto.start()
        await asyncio.to_thread(gw.wait_for_output, "uplink: connected again", 60)
        session = next(iter(cloud.seqs))
        expected = before + int(outage / 0.5) - 2  # frames every 0.5 s while the broker was down
        await wait_until(lambda: len(cloud.seqs[session]) >= expected, 60)
        gw.signal(signal.SIGTERM)
        assert await asyncio.to_thread(gw.wait, 60) == 0, gw.output()
        await wait_until(lambda: cloud.mirror.stats().frames >= len(cloud.seqs[session]), 10)
    finally:
        await cloud.close()
        gw.stop()
        pump.stop()
    assert_complete(cloud, [session])
    assert "stopped; outbox empty" in gw.output()


async def test_sigkill_mid_stream_delivers_everything_committed(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    pump, port = start_pump(tmp_path)
    cfg = gateway_config(tmp_path, pump_port=port, broker_url=mosquitto.url)
    cloud = Cloud(mosquitto.url)
    sessions: list[str] = []
    try:
        for run in range(3):
            gw = start_gateway(cfg, tmp_path, f"gateway-{run}")
            await asyncio.to_thread(gw.wait_for_output, "uplink: connected")
            await asyncio.sleep(1.5 + run)
            gw.signal(signal.SIGKILL)
            await asyncio.to_thread(gw.wait, 10)
            gw.stop()
        gw = start_gateway(cfg, tmp_path, "gateway-final")
        await asyncio.to_thread(gw.wait_for_output, "uplink: connected")
        await wait_until(lambda: len(cloud.seqs) >= 4, 30)
        await asyncio.sleep(1.0)
        gw.signal(signal.SIGTERM)
        assert await asyncio.to_thread(gw.wait, 60) == 0, gw.output()
        assert "stopped; outbox empty" in gw.output()
        await asyncio.sleep(0.5)
        sessions = list(cloud.seqs)
    finally:
        await cloud.close()
        pump.stop()
    assert len(sessions) == 4
    # Killed sessions: what was committed arrived, from seq 0 with no hole (only the last
    # commit interval before each SIGKILL may be missing, at the end of its session).
    assert_complete(cloud, sessions)


async def test_tiny_outbox_budget_drops_are_announced_upstream(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    pump, port = start_pump(tmp_path)
    broker_down = Mosquitto(tmp_path / "late-broker")
    cfg = gateway_config(
        tmp_path,
        pump_port=port,
        broker_url=broker_down.url,
        uplink='report = "full"\nframe_interval = 0.25\nsnapshot_every = 2',
    )
    text, n = re.subn(r"(?m)^max_bytes\s*=.*$", "max_bytes = 8192", cfg.read_text())
    assert n == 1
    cfg.write_text(text)
    gw = start_gateway(cfg, tmp_path)
    events: list[dict[str, object]] = []
    try:
        await asyncio.to_thread(gw.wait_for_output, "outbox dropped", 60)
        broker_down.start()

        async def listen() -> None:
            async with aiomqtt.Client("127.0.0.1", broker_down.port) as client:
                await client.subscribe("edgetwin/v1/+/events", qos=1)
                async for message in client.messages:
                    event = decode_event(bytes(message.payload))  # type: ignore[arg-type]
                    events.append(event)

        tail = asyncio.create_task(listen())
        await wait_until(lambda: any(e.get("type") == "drop" for e in events), 60)
        tail.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tail
        gw.signal(signal.SIGTERM)
        assert await asyncio.to_thread(gw.wait, 60) == 0, gw.output()
    finally:
        gw.stop()
        pump.stop()
        broker_down.stop()
    drops = [e for e in events if e.get("type") == "drop"]
    assert sum(int(e["frames"]) for e in drops) > 0  # type: ignore[call-overload]
    assert all(e["reason"] in {"bytes", "age", "chain"} for e in drops)
    assert "outbox dropped" in gw.output()
