"""MQTT session: delivers outbox rows in order with QoS 1, reconnecting with backoff.

A row leaves the outbox only after the broker's PUBACK. After a broken link, rows that
were in flight are sent again; subscribers drop the duplicates by (session, seq).
The password never leaves :class:`Connector` except into the CONNECT packet: it is held as a
``SecretStr`` and scrubbed from every error text the uplink logs or keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiomqtt
from aiomqtt import MqttError, ProtocolVersion, Will
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr

from edgetwin.config.schema import MqttConfig
from edgetwin.core.backoff import Backoff
from edgetwin.errors import ConfigError, ConfigProblem, PayloadError
from edgetwin.uplink.framer import mark_replay

log = logging.getLogger(__name__)

_FRAME_KINDS = frozenset({"frame", "snapshot"})


def _replayed(row: Row) -> bytes:
    """A backlog frame with the replay flag set; any other row (or a foreign payload) as is."""
    if row.kind not in _FRAME_KINDS:
        return row.payload
    try:
        return mark_replay(row.payload)
    except PayloadError:
        return row.payload  # not ours to judge: subscribers reject it per frame


# CONNACK codes that retrying soon will not change: MQTT 3.1.1 (2, 4, 5) and MQTT 5 (0x85..0x8C).
_REFUSALS = frozenset({2, 4, 5, 133, 134, 135, 138, 140})


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
    def kind(self) -> str:
        """birth, snapshot, frame or event."""
        ...

    @property
    def created(self) -> float:
        """Unix time the row was put."""
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

    async def wait_pending(self, *, after_id: int = 0) -> None:
        """Return once a committed row with ``id > after_id`` exists."""
        ...

    async def ack(self, ids: Sequence[int]) -> None:
        """Forget delivered rows."""
        ...


def read_password(path: Path) -> SecretStr:
    """Read a broker password from a file (first line, whitespace stripped)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        problem = ConfigProblem(str(path), "mqtt.password_file", f"cannot read: {reason}")
        raise ConfigError([problem]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # The decoder's message quotes a byte of the secret: say less.
        problem = ConfigProblem(str(path), "mqtt.password_file", "is not UTF-8 text")
        raise ConfigError([problem]) from None
    lines = text.splitlines()
    return SecretStr(lines[0].strip() if lines else "")


class _EncryptedKeyError(Exception):
    """OpenSSL asked for a key passphrase; it would prompt on the terminal otherwise."""


def _no_passphrase() -> str:
    raise _EncryptedKeyError


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context for an mqtts:// broker (None for mqtt://); ConfigError if files are bad."""
    if not cfg.tls:
        return None
    try:
        ctx = ssl.create_default_context(cafile=str(cfg.tls_ca) if cfg.tls_ca else None)
    except (ssl.SSLError, OSError) as exc:
        where = str(cfg.tls_ca or "system CA store")
        problem = ConfigProblem(where, "mqtt.tls_ca", f"cannot load CA certificates: {exc}")
        raise ConfigError([problem]) from exc
    if cfg.tls_cert is not None:
        key = str(cfg.tls_key) if cfg.tls_key else None
        try:
            ctx.load_cert_chain(str(cfg.tls_cert), key, password=_no_passphrase)
        except _EncryptedKeyError:
            text = "the key is encrypted; give an unencrypted key readable only by the service"
            raise ConfigError([ConfigProblem(str(key), "mqtt.tls_key", text)]) from None
        except (ssl.SSLError, OSError) as exc:
            text = f"cannot load the client certificate and key: {exc}"
            raise ConfigError([ConfigProblem(str(cfg.tls_cert), "mqtt.tls_cert", text)]) from exc
    if cfg.tls_insecure:
        ctx.check_hostname = False  # the chain is still verified against the CA
    return ctx


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a connection failed, safe to log; ``refused`` means a soon retry will not help."""

    text: str
    refused: bool


class Connector:
    """Makes clients for one broker configuration; reads the password and TLS files once."""

    def __init__(self, cfg: MqttConfig) -> None:
        self.cfg = cfg
        self._password = read_password(cfg.password_file) if cfg.password_file else None
        self.tls = tls_context(cfg)
        if cfg.tls_insecure:
            log.warning(
                "mqtt.tls_insecure is set: the broker's host name is NOT checked, so anyone "
                "holding a certificate from %s can pose as %s",
                cfg.tls_ca or "the system CA store",
                cfg.host,
            )

    def __repr__(self) -> str:
        secret = "'**********'" if self._password is not None else "None"
        return f"Connector(url={self.cfg.url!r}, username={self.cfg.username!r}, password={secret})"

    def client(
        self, identifier: str, *, will: Will | None = None, inflight: int | None = None
    ) -> aiomqtt.Client:
        """A new, unconnected client; enter it with ``async with``."""
        cfg = self.cfg
        v5 = cfg.protocol == "5"
        properties = None
        if v5 and cfg.session_expiry:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = cfg.session_expiry
        password = None if self._password is None else self._password.get_secret_value()
        # 3.1.1 sends a password only with a user name; aiomqtt drops it without one.
        username = "" if cfg.username is None and password is not None else cfg.username
        client = aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=username,
            password=password,
            identifier=identifier,
            protocol=ProtocolVersion.V5 if v5 else ProtocolVersion.V311,
            will=will,
            clean_session=None if v5 else cfg.clean_start,
            clean_start=cfg.clean_start if v5 else MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
            keepalive=cfg.keepalive,
            timeout=10.0,
            max_inflight_messages=inflight or cfg.inflight,
            tls_context=self.tls,
        )
        # aiomqtt warns about "pending calls" beyond this; a full window is normal here.
        client.pending_calls_threshold = (inflight or cfg.inflight) + 16
        return client

    def failure(self, exc: MqttError, *, connecting: bool = False) -> Failure:
        """Describe a failed (``connecting``) or lost connection without the password."""
        cause = exc.__cause__ or exc.__context__
        if isinstance(exc, MqttConnectError):
            code = getattr(exc.rc, "value", exc.rc)
            refused = code in _REFUSALS
            text = f"broker refused the connection: {exc}"
            if refused and self.cfg.username is not None:
                text += f" (user {self.cfg.username!r})"
        elif isinstance(cause, ssl.SSLCertVerificationError):
            text = (
                f"TLS: the broker's certificate was rejected ({cause.verify_message}); "
                "check mqtt.tls_ca and the host name in the URL"
            )
            refused = True
        elif isinstance(cause, ssl.SSLError):
            text = f"TLS handshake failed: {cause.reason or cause}"
            refused = True
        elif isinstance(cause, MqttError) and not connecting:
            text, refused = f"connection lost: {cause}", False
        else:
            text, refused = str(exc) or type(exc).__name__, False
            if connecting and self.cfg.tls and isinstance(cause, TimeoutError):
                # TLS 1.3 brokers reject a client certificate after the handshake: no CONNACK.
                text += " (no CONNACK over TLS: does the broker require mqtt.tls_cert?)"
        return Failure(self.scrub(text), refused)

    def scrub(self, text: str) -> str:
        """``text`` with the password, should it ever occur, replaced by stars."""
        secret = None if self._password is None else self._password.get_secret_value()
        return text.replace(secret, "**********") if secret else text


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
        on_connected: Callable[[], None] | None = None,
        window: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.client_id = client_id
        self.status_topic = status_topic
        self.command_topics = tuple(command_topics)
        self.online_payload = online_payload
        self.offline_payload = offline_payload
        self.on_command = on_command
        self.on_connected = on_connected
        self.window = window or cfg.inflight
        self.replayed = 0  # backlog frames published with the replay flag
        self._live_since = time.time()
        self.connector = Connector(cfg)
        self._connected = False
        self.connected_since = time.time()  # unix time `connected` last changed (or start)
        self.published = 0
        self.connects = 0  # successful connections
        self.failures = 0  # failed or lost connections since the last success
        self.last_error: str | None = None
        self.last_delay: float | None = None  # the last reconnect backoff, seconds
        self._drain = asyncio.Event()
        self._deadline: float | None = None

    def __repr__(self) -> str:
        return f"MqttUplink({self.connector!r}, client_id={self.client_id!r})"

    @property
    def connected(self) -> bool:
        """True while a broker session is up."""
        return self._connected

    @connected.setter
    def connected(self, value: bool) -> None:
        if value != self._connected:
            self._connected, self.connected_since = value, time.time()

    def drain(self, grace: float) -> None:
        """Deliver what is left within ``grace`` seconds, then say offline and return."""
        self._deadline = asyncio.get_running_loop().time() + grace
        self._drain.set()

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return self._deadline - asyncio.get_running_loop().time()

    async def run(self) -> None:
        """Connect, deliver and reconnect until a drain completes or its grace runs out."""
        cap = self.cfg.reconnect_max
        transient = Backoff(min(0.5, cap), cap)
        refused = Backoff(cap, cap)  # auth and TLS failures wait longest
        will = Will(self.status_topic, self.offline_payload, qos=1, retain=True)
        logged: str | None = None
        while True:
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                log.warning("uplink: grace period over with the broker unreachable")
                return
            connecting = True
            try:
                async with self.connector.client(
                    self.client_id, will=will, inflight=self.window
                ) as client:
                    connecting = False
                    self.connected = True
                    self.connects += 1
                    self.failures = 0
                    transient.reset()
                    again = " again" if logged is not None else ""
                    log.info("uplink: connected%s to %s:%d", again, self.cfg.host, self.cfg.port)
                    logged = None
                    # Rows put before this connection are backlog, published as replay.
                    self._live_since = time.time()
                    if self.on_connected is not None:
                        self.on_connected()
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
                failure = self.connector.failure(exc, connecting=connecting)
                self.failures += 1
                self.last_error = failure.text
                if failure.text != logged:  # once per kind of trouble, not per attempt
                    log.warning(
                        "uplink: broker %s:%d: %s", self.cfg.host, self.cfg.port, failure.text
                    )
                    logged = failure.text
                delay = (refused if failure.refused else transient).next()
            self.last_delay = delay
            await self._pause(delay)

    async def _pause(self, delay: float) -> None:
        """Wait before reconnecting; a drain request cuts the wait short once."""
        remaining = self._remaining()
        if remaining is not None:
            await asyncio.sleep(min(delay, max(remaining, 0.0)))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain.wait(), delay)

    async def _session(self, client: aiomqtt.Client) -> None:
        """Deliver until drained; a lost link (seen by the listener) ends the session."""
        deliver = asyncio.create_task(self._deliver(client), name="uplink-deliver")
        listen = asyncio.create_task(self._listen(client), name="uplink-commands")
        try:
            done, _ = await asyncio.wait({deliver, listen}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            deliver.cancel()
            listen.cancel()
            await asyncio.gather(deliver, listen, return_exceptions=True)
        first = deliver if deliver in done else listen
        first.result()  # raises the MqttError that ended the session, if any
        if first is listen:
            raise MqttError("the message stream ended")

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            try:
                self.on_command(str(message.topic), payload)
            except Exception:  # a bad command must not end the session
                log.exception("uplink: command on %s failed", message.topic)

    async def _deliver(self, client: aiomqtt.Client) -> None:
        # A PUBACK missing for two keep-alive periods means the link is as good as dead.
        ack_timeout = max(10.0, 2.0 * self.cfg.keepalive)
        while True:
            # One lane, in commit order: delta frames decode only in seq order, so the backlog
            # of an outage goes out first (marked replay) and live frames follow it; the
            # backlog drains at publish speed, far above the rate frames are made.
            rows = list(await self.source.pending(self.window))
            if not rows:
                if self._drain.is_set():
                    return
                await self._wait_for_rows()
                continue
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                log.warning("uplink: grace period over, %d+ rows stay queued", len(rows))
                return
            timeout = remaining if remaining is not None else ack_timeout
            payloads = [_replayed(r) if r.created < self._live_since else r.payload for r in rows]
            results = await asyncio.gather(
                *(
                    client.publish(r.topic, data, qos=1, retain=r.retain, timeout=timeout)
                    for r, data in zip(rows, payloads, strict=True)
                ),
                return_exceptions=True,
            )
            self.replayed += sum(
                1
                for r, res in zip(rows, results, strict=True)
                if res is None and r.kind in _FRAME_KINDS and r.created < self._live_since
            )
            done = [r.id for r, res in zip(rows, results, strict=True) if res is None]
            if done:
                await self.source.ack(done)
                self.published += len(done)
            for res in results:
                if isinstance(res, BaseException):
                    raise res
            if len(rows) < self.window and not self._drain.is_set():
                # A short batch was all there was: wait for newer rows rather than asking the
                # outbox's thread again now (ids only grow, so ``id > last`` is what is new).
                await self._wait_for_rows(rows[-1].id)

    async def _wait_for_rows(self, after_id: int = 0) -> None:
        waiters = {
            asyncio.create_task(
                self.source.wait_pending(after_id=after_id), name="uplink-wait-rows"
            ),
            asyncio.create_task(self._drain.wait(), name="uplink-wait-drain"),
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
