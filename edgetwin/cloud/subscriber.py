"""The reference consumer: subscribes to gateways' topics and feeds a Mirror.

With ``share=GROUP`` (MQTT 5), frames and events arrive through the shared subscriptions
``$share/GROUP/...``: the broker hands each message to one member of the group, so several
consumers split the load. Births and status stay plain subscriptions, so every member knows
every session's point table. A member sees gaps in each session's sequence numbers by design;
it asks for a rebirth only when a frame's session is unknown to it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from aiomqtt import MqttError
from pydantic import ValidationError

from edgetwin.cloud.mirror import Mirror, MirrorStats, PointUpdate
from edgetwin.config.schema import MqttConfig
from edgetwin.errors import ConfigError, ConfigProblem, ConnectionLostError, FatalError
from edgetwin.uplink.session import Connector
from edgetwin.uplink.topics import Topics, subscription

log = logging.getLogger(__name__)


def shared(group: str, topic_filter: str) -> str:
    """The MQTT 5 shared subscription of ``group`` to ``topic_filter``."""
    if not group or any(c in group for c in "/+#\0"):
        raise ValueError(f"share group {group!r} must be non-empty, without '/', '+', '#' or NUL")
    return f"$share/{group}/{topic_filter}"


def _broker(url: str, protocol: str, **settings: object) -> MqttConfig:
    """Validate the connection settings like a config file's [mqtt] table."""
    try:
        return MqttConfig.model_validate({"url": url, "protocol": protocol, **settings})
    except ValidationError as exc:
        problems = [
            ConfigProblem(
                url,
                ".".join(str(p) for p in err["loc"]),
                err["msg"].removeprefix("Value error, "),
            )
            for err in exc.errors(include_url=False)
        ]
        raise ConfigError(problems) from None


def _rebirth_worthy(after: MirrorStats, before: MirrorStats) -> bool:
    """Whether a frame asked for a rebirth other than by a gap (unknown session, bad index)."""
    bad_index = after.errors.get("index", 0) > before.errors.get("index", 0)
    return bad_index or after.unknown_session > before.unknown_session


def _check_granted(topic_filter: str, granted: Sequence[object]) -> None:
    for code in granted:  # MQTT 5 reason codes, or 3.1.1 granted QoS
        value = getattr(code, "value", code)
        if isinstance(value, int) and value >= 0x80:
            raise FatalError(f"the broker refused the subscription {topic_filter!r}: {code}")


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
    share: str | None = None,
    tls_ca: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    tls_insecure: bool = False,
    username: str | None = None,
    password_file: Path | None = None,
    client_id: str | None = None,
    session_expiry: int = 0,
) -> Mirror:
    """Follow gateways until ``stop`` is set; gaps and unknown sessions ask for a rebirth.

    ``share`` joins the MQTT 5 shared-subscription group of that name for frames and events.
    ``client_id`` with ``session_expiry`` > 0 keeps a persistent session (MQTT 5): the broker
    queues QoS 1 messages while this consumer is away, so reconnecting with the same id and
    the same Mirror loses nothing. Bad settings raise ConfigError; ``share`` with MQTT 3.1.1
    raises ValueError.
    """
    if share is not None and protocol != "5":
        raise ValueError("shared subscriptions (share=...) need MQTT 5")

    def absolute(path: Path | None) -> Path | None:
        return None if path is None else Path(path).absolute()

    broker = _broker(
        url,
        protocol,
        topic_prefix=prefix,
        tls_ca=absolute(tls_ca),
        tls_cert=absolute(tls_cert),
        tls_key=absolute(tls_key),
        tls_insecure=tls_insecure,
        username=username,
        password_file=absolute(password_file),
        **({"clean_start": False, "session_expiry": session_expiry} if session_expiry else {}),
    )
    wanted: list[str] = []
    rebirths: asyncio.Queue[str] = asyncio.Queue()
    mirror = mirror or Mirror(prefix=prefix, on_rebirth_needed=wanted.append)
    if gateway == "+":
        plain = [subscription(prefix, "birth"), subscription(prefix, "status")]
        split = [subscription(prefix, "events"), subscription(prefix, "frames")]
    else:
        t = Topics(prefix, gateway)
        plain, split = [t.birth, t.status], [t.events, t.frames]
    if share is not None:
        split = [shared(share, f) for f in split]
    connector = Connector(broker)
    client = connector.client(client_id or f"edgetwin-tail-{secrets.token_hex(4)}")

    async def read() -> None:
        warned = False
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            before = mirror.stats() if share is not None else None
            for update in mirror.feed(str(message.topic), payload):
                on_update(update)
            after = mirror.stats() if before is not None else None
            if wanted:
                # A member of a group sees only some frames: a gap is no reason to ask.
                if before is None or after is None or _rebirth_worthy(after, before):
                    for gw in dict.fromkeys(wanted):
                        rebirths.put_nowait(gw)
                wanted.clear()
            if before and after and after.undecodable > before.undecodable and not warned:
                log.warning(
                    "share group %r: frames with delta-coded points (a resolution) decode only "
                    "from the snapshot on; split the load by gateway instead (see docs/mqtt.md)",
                    share,
                )
                warned = True

    async def ask() -> None:
        while True:
            gw = await rebirths.get()
            log.info("asking gateway %s for a rebirth", gw)
            await client.publish(Topics(prefix, gw).rebirth, b"", qos=1)

    try:
        async with client:
            for topic_filter in (*plain, *split):  # births and status first
                _check_granted(topic_filter, await client.subscribe(topic_filter, qos=1))
            if on_ready is not None:
                on_ready()
            await _until_stopped(stop, read(), ask())
    except MqttError as exc:
        raise ConnectionLostError(f"{url}: {connector.failure(exc).text}") from exc
    return mirror


async def _until_stopped(stop: asyncio.Event, *jobs: Coroutine[Any, Any, None]) -> None:
    """Run ``jobs`` until ``stop`` is set; the first one to fail ends them all and raises."""
    names = ("tail-read", "tail-rebirth")
    tasks = [asyncio.create_task(j, name=n) for j, n in zip(jobs, names, strict=True)]
    stopped = asyncio.create_task(stop.wait(), name="tail-stop")
    try:
        done, _ = await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (*tasks, stopped):
            t.cancel()
        await asyncio.gather(*tasks, stopped, return_exceptions=True)
    for t in tasks:
        if t in done:
            t.result()
