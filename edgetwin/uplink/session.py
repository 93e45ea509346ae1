"""MQTT session: delivers outbox rows in order with QoS 1, reconnecting with backoff.

A row leaves the outbox only after the broker's PUBACK. After a broken link, rows that
were in flight are sent again; subscribers drop the duplicates by (session, seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import aiomqtt
from aiomqtt import MqttError, ProtocolVersion, Will

from edgetwin.config.schema import MqttConfig
from edgetwin.core.backoff import Backoff
from edgetwin.errors import ConfigError, ConfigProblem

log = logging.getLogger(__name__)


class Row(Protocol):
    """One stored message."""

    @property
    def id(self) -> int:
        """Delivery order."""
        ...

    @property
    def topic(self) -> str:
        """MQTT topic."""
        ...

    @property
    def payload(self) -> bytes:
        """Encoded message."""
        ...

    @property
    def retain(self) -> bool:
        """MQTT retain flag."""
        ...


class Source(Protocol):
    """The outbox as the uplink sees it."""

    async def pending(self, limit: int) -> Sequence[Row]:
        """Oldest committed rows first."""
        ...

    async def wait_pending(self) -> None:
        """Return once a committed row exists."""
        ...

    async def ack(self, ids: Sequence[int]) -> None:
        """Forget delivered rows."""
        ...


def read_password(path: Path) -> str:
    """Read a broker password from a file (first line, whitespace stripped)."""
    try:
        return (
            path.read_text(encoding="utf-8").splitlines()[0].strip() if path.stat().st_size else ""
        )
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(str(path), "mqtt.password_file", str(exc))]) from exc


class MqttUplink:
    """Owns the broker connection for one gateway session."""

    def __init__(
        self,
        cfg: MqttConfig,
        source: Source,
        *,
        client_id: str,
        status_topic: str,
        command_topics: Sequence[str],
        online_payload: bytes,
        offline_payload: bytes,
        on_command: Callable[[str, bytes], None],
        window: int = 32,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.client_id = client_id
        self.status_topic = status_topic
        self.command_topics = tuple(command_topics)
        self.online_payload = online_payload
        self.offline_payload = offline_payload
        self.on_command = on_command
        self.window = window
        self.password = read_password(cfg.password_file) if cfg.password_file else None
        self.connected = False
        self.published = 0
        self._drain = asyncio.Event()
        self._deadline: float | None = None

    def drain(self, grace: float) -> None:
        """Deliver what is left within ``grace`` seconds, then say offline and return."""
        self._deadline = asyncio.get_running_loop().time() + grace
        self._drain.set()

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return self._deadline - asyncio.get_running_loop().time()

    def _client(self) -> aiomqtt.Client:
        tls = ssl.create_default_context() if self.cfg.url.startswith("mqtts:") else None
        return aiomqtt.Client(
            self.cfg.host,
            self.cfg.port,
            username=self.cfg.username,
            password=self.password,
            identifier=self.client_id,
            protocol=ProtocolVersion.V5 if self.cfg.protocol == "5" else ProtocolVersion.V311,
            will=Will(self.status_topic, self.offline_payload, qos=1, retain=True),
            keepalive=self.cfg.keepalive,
            timeout=10.0,
            tls_context=tls,
        )

    async def run(self) -> None:
        """Connect, deliver and reconnect until a drain completes or its grace runs out."""
        backoff = Backoff(0.5, self.cfg.reconnect_max)
        lost_logged = False
        while True:
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                log.warning("uplink: grace period over with the broker unreachable")
                return
            try:
                async with self._client() as client:
                    self.connected = True
                    backoff.reset()
                    lost_logged = False
                    log.info("uplink: connected to %s:%d", self.cfg.host, self.cfg.port)
                    await client.publish(self.status_topic, self.online_payload, qos=1, retain=True)
                    for topic in self.command_topics:
                        await client.subscribe(topic, qos=1)
                    await self._session(client)
                    await client.publish(
                        self.status_topic, self.offline_payload, qos=1, retain=True, timeout=2.0
                    )
                    self.connected = False
                    return
            except MqttError as exc:
                self.connected = False
                if not lost_logged:
                    log.warning(
                        "uplink: broker %s:%d unreachable: %s", self.cfg.host, self.cfg.port, exc
                    )
                    lost_logged = True
            await self._pause(backoff.next())

    async def _pause(self, delay: float) -> None:
        """Wait before reconnecting; a drain request cuts the wait short once."""
        remaining = self._remaining()
        if remaining is not None:
            await asyncio.sleep(min(delay, max(remaining, 0.0)))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain.wait(), delay)

    async def _session(self, client: aiomqtt.Client) -> None:
        listener = asyncio.create_task(self._listen(client), name="uplink-commands")
        try:
            await self._deliver(client)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, MqttError):
                await listener

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            try:
                self.on_command(str(message.topic), payload)
            except Exception:  # a bad command must not end the session
                log.exception("uplink: command on %s failed", message.topic)

    async def _deliver(self, client: aiomqtt.Client) -> None:
        while True:
            rows = await self.source.pending(self.window)
            if not rows:
                if self._drain.is_set():
                    return
                await self._wait_for_rows()
                continue
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                log.warning("uplink: grace period over, %d+ rows stay queued", len(rows))
                return
            timeout = remaining if remaining is not None else None
            results = await asyncio.gather(
                *(
                    client.publish(r.topic, r.payload, qos=1, retain=r.retain, timeout=timeout)
                    for r in rows
                ),
                return_exceptions=True,
            )
            done = [r.id for r, res in zip(rows, results, strict=True) if res is None]
            if done:
                await self.source.ack(done)
                self.published += len(done)
            for res in results:
                if isinstance(res, BaseException):
                    raise res

    async def _wait_for_rows(self) -> None:
        waiters = {
            asyncio.create_task(self.source.wait_pending(), name="uplink-wait-rows"),
            asyncio.create_task(self._drain.wait(), name="uplink-wait-drain"),
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
