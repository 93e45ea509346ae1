"""The reference consumer: subscribes to gateways' topics and feeds a Mirror."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

import aiomqtt

from edgetwin.cloud.mirror import Mirror, PointUpdate
from edgetwin.config.schema import MqttConfig
from edgetwin.uplink.topics import Topics

log = logging.getLogger(__name__)


async def follow(
    url: str,
    on_update: Callable[[PointUpdate], None],
    stop: asyncio.Event,
    *,
    prefix: str = "edgetwin/v1",
    gateway: str = "+",
    protocol: str = "5",
    mirror: Mirror | None = None,
    on_ready: Callable[[], None] | None = None,
) -> Mirror:
    """Follow gateways until ``stop`` is set; gaps and unknown sessions ask for a rebirth."""
    broker = MqttConfig(url=url, topic_prefix=prefix, protocol=protocol)
    rebirths: asyncio.Queue[str] = asyncio.Queue()
    mirror = mirror or Mirror(prefix=prefix, on_rebirth_needed=rebirths.put_nowait)
    client = aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=f"edgetwin-tail-{secrets.token_hex(4)}",
        protocol=aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311,
    )
    async with client:
        if gateway == "+":
            filters = mirror.subscriptions()
        else:
            t = Topics(prefix, gateway)
            filters = [t.birth, t.status, t.events, t.frames]
        for topic_filter in filters:
            await client.subscribe(topic_filter, qos=1)
        if on_ready is not None:
            on_ready()

        async def read() -> None:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                for update in mirror.feed(str(message.topic), payload):
                    on_update(update)

        async def ask() -> None:
            while True:
                gw = await rebirths.get()
                log.info("asking gateway %s for a rebirth", gw)
                await client.publish(Topics(prefix, gw).rebirth, b"", qos=1)

        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(read(), name="tail-read")
            asker = tg.create_task(ask(), name="tail-rebirth")
            await stop.wait()
            reader.cancel()
            asker.cancel()
    return mirror
