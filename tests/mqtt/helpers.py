"""Helpers for the MQTT tests: an outbox-fed uplink, a collecting subscriber, polling."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetwin.config.schema import MqttConfig
from edgetwin.core.types import Alarm, Quality, TwinBatch
from edgetwin.storage.outbox import Outbox
from edgetwin.uplink.codec import Birth, Frame, PointInfo, encode_birth, encode_frame
from edgetwin.uplink.session import Connector, MqttUplink

STATUS = "test/gw-1/status"
COMMAND = "test/gw-1/cmd/rebirth"


async def wait_until(predicate: Callable[[], bool], limit: float = 20.0) -> None:
    """Poll ``predicate`` until true; fail after ``limit`` seconds (a "did not happen" bound)."""
    async with asyncio.timeout(limit):
        while not predicate():
            await asyncio.sleep(0.02)


@dataclass
class Harness:
    """An open outbox with its writer and an uplink delivering from it."""

    outbox: Outbox
    uplink: MqttUplink
    run: asyncio.Task[None]
    commands: list[tuple[str, bytes]] = field(default_factory=list)

    async def put(self, topic: str, payloads: Sequence[bytes]) -> None:
        """Queue and commit messages."""
        for p in payloads:
            self.outbox.put(topic, p)
        await self.outbox.flush()

    async def stop(self, grace: float = 5.0) -> None:
        """Drain the uplink within ``grace`` seconds and wait for it."""
        if not self.run.done():
            self.uplink.drain(grace)
        await asyncio.wait_for(self.run, grace + 15)


@contextlib.asynccontextmanager
async def running_uplink(
    cfg: MqttConfig, db: Path, *, client_id: str = "gw-1", window: int | None = None
) -> AsyncIterator[Harness]:
    """An uplink from an on-disk outbox to ``cfg``'s broker; drained and closed at the end."""
    outbox = Outbox(db, commit_interval=0.02)
    await outbox.open()
    writer = asyncio.create_task(outbox.run_writer(), name="test-outbox-writer")
    commands: list[tuple[str, bytes]] = []
    uplink = MqttUplink(
        cfg,
        outbox,
        client_id=client_id,
        status_topic=STATUS,
        command_topics=[COMMAND],
        online_payload=b"online",
        offline_payload=b"offline",
        on_command=lambda t, p: commands.append((t, p)),
        window=window,
    )
    run = asyncio.create_task(uplink.run(), name="test-uplink")
    harness = Harness(outbox, uplink, run, commands)
    try:
        yield harness
    finally:
        try:
            await harness.stop(grace=0.5)
        finally:
            if not run.done():
                run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            outbox.stop()
            await writer
            await outbox.close()


@contextlib.asynccontextmanager
async def collecting(
    cfg: MqttConfig, topic_filter: str, *, client_id: str | None = None, subscribe: bool = True
) -> AsyncIterator[list[tuple[str, bytes]]]:
    """Messages on ``topic_filter`` as (topic, payload), in arrival order, while inside."""
    got: list[tuple[str, bytes]] = []
    ident = client_id or f"collector-{secrets.token_hex(4)}"
    async with Connector(cfg).client(ident) as client:
        if subscribe:
            await client.subscribe(topic_filter, qos=1)

        async def read() -> None:
            async for m in client.messages:
                payload = m.payload if isinstance(m.payload, bytes) else b""
                got.append((str(m.topic), payload))

        task = asyncio.create_task(read(), name="test-collector")
        try:
            yield got
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def numbered(start: int, count: int) -> list[bytes]:
    """Payloads b"0", b"1", ... that say their own position."""
    return [str(i).encode() for i in range(start, start + count)]


def first_seen(payloads: Sequence[bytes]) -> list[int]:
    """Numbers in order of first arrival (QoS 1 may repeat a message)."""
    return list(dict.fromkeys(int(p) for p in payloads))


def birth_payload(gateway: str, session: str, names: Sequence[str]) -> bytes:
    """A birth with one point per name."""
    points = tuple(
        PointInfo(i, "pump", n, "bar", "float32", "level", 10.0) for i, n in enumerate(names)
    )
    return encode_birth(Birth(gateway, session, "0.0.0", 1000.0, points))


def frame_payload(gateway: str, session: str, seq: int, n_points: int) -> bytes:
    """A frame carrying every point, value = seq."""
    n = n_points
    batch = TwinBatch(
        index=np.arange(n, dtype=np.int64),
        ts=np.full(n, 2000.0 + seq),
        value=np.full(n, float(seq)),
        estimate=np.full(n, float(seq)),
        score=np.full(n, 0.25),
        alarm=np.full(n, Alarm.NORMAL, dtype=np.uint8),
        quality=np.full(n, Quality.GOOD, dtype=np.uint16),
    )
    return encode_frame(Frame(gateway, session, seq, batch))


def config(url: str, **kw: Any) -> MqttConfig:
    """A broker config with a short reconnect cap, so tests see several attempts quickly."""
    kw.setdefault("reconnect_max", 0.3)
    return MqttConfig(url=url, **kw)
