"""Health metrics: a Prometheus endpoint and /status.json, served on the gateway's event loop.

Values the gateway's objects already keep (device health, twin state of points and assets,
outbox counters, uplink state) are read when someone asks, by a custom collector over plain
views, so an unscraped daemon pays nothing for them. Only what no object keeps is recorded as
it happens: poll latencies and error kinds (through :meth:`GatewayMetrics.instrument`) and the
estimator's tick duration (:meth:`GatewayMetrics.observe_tick`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from edgetwin import __version__
from edgetwin.acquisition.scheduler import DeviceHealth
from edgetwin.core.types import Alarm, Quality
from edgetwin.drivers.base import Device, PollResult
from edgetwin.errors import (
    ConnectionLostError,
    DeviceExceptionError,
    DeviceTimeoutError,
    EdgetwinError,
    ProtocolError,
)
from edgetwin.status import (
    AssetStatus,
    BacklogStatus,
    DeviceStatus,
    PointStatus,
    Status,
    UplinkStatus,
)
from edgetwin.storage.outbox import OutboxStats

if TYPE_CHECKING:
    from edgetwin.acquisition.scheduler import BusScheduler
    from edgetwin.config.schema import Config
    from edgetwin.runtime.twin_stage import TwinStage
    from edgetwin.uplink.session import MqttUplink

log = logging.getLogger(__name__)

ERROR_KINDS = ("timeout", "connection", "exception", "protocol", "other", "internal")
"""Labels of edgetwin_device_errors_total, in the order a technician checks them."""

_TRANSACTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_TICK_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_SAMPLE_PERIOD = 1.0  # s between samples of an uplink state that comes without its own since
_HEADER_TIMEOUT = 5.0  # s a client may take to send its request
_HEADER_LIMIT = 16 * 1024


# -- views: what the collector reads on each scrape -------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceView:
    """One device as its bus scheduler sees it."""

    bus: str
    name: str
    health: DeviceHealth
    breaker_open: bool


@dataclass(frozen=True, slots=True)
class PointView:
    """The twin's latest state of one point."""

    device: str
    name: str
    unit: str
    value: float
    estimate: float
    score: float
    alarm: Alarm
    quality: Quality
    ts: float | None  # None: not read yet
    learning: bool = False  # still commissioning: no alarm can be raised yet


@dataclass(frozen=True, slots=True)
class AssetView:
    """The twin's latest state of one asset (a multivariate model over points of its devices)."""

    device: str  # its first device (the only one, or the first of ``devices``)
    name: str
    score: float
    alarm: Alarm
    contributions: dict[str, float]  # point → share, 0..1, config order; "device.point" if spanning
    ts: float | None  # the latest reading of its points; None: none read yet
    learning: bool = False  # still commissioning: no alarm can be raised yet
    away: bool = False  # scored against an operating point re-learnt after an alarm, not home
    devices: tuple[str, ...] = ()  # every device it reads, ``device`` first; (): just ``device``


@dataclass(frozen=True, slots=True)
class UplinkView:
    """The MQTT session's state."""

    connected: bool
    published: int
    broker: str
    since: float | None = None  # unix time ``connected`` last changed; None: sample it


def scheduler_devices(schedulers: Iterable[BusScheduler]) -> Callable[[], list[DeviceView]]:
    """Views of every device of ``schedulers``, read live."""
    buses = list(schedulers)

    def read() -> list[DeviceView]:
        return [
            DeviceView(s.name, name, d.health, d.probe_due is not None)
            for s in buses
            for name, d in s.devices.items()
        ]

    return read


def twin_points(cfg: Config, twin: TwinStage) -> Callable[[], list[PointView]]:
    """Views of every point's latest twin state, read live, with units from ``cfg``."""
    units = {dev.name: [p.unit for p in dev.points] for dev in cfg.devices}

    def read() -> list[PointView]:
        out: list[PointView] = []
        for name, t in twin.devices.items():
            # The twin thread may be mid-update: a scrape can mix two ticks, never tear a value.
            value, est, score = t.value.tolist(), t.estimate.tolist(), t.score.tolist()
            alarm, quality = t.alarm.tolist(), t.quality.tolist()
            ts, seen, learning = t.ts.tolist(), t.seen.tolist(), t.learning().tolist()
            out += [
                PointView(
                    name,
                    point,
                    units[name][i],
                    value[i],
                    est[i],
                    score[i],
                    Alarm(alarm[i]),
                    Quality(quality[i]),
                    ts[i] if seen[i] else None,
                    learning[i],
                )
                for i, point in enumerate(t.names)
            ]
        return out

    return read


def twin_assets(twin: TwinStage) -> Callable[[], list[AssetView]]:
    """Views of every asset's latest twin state, read live."""

    def read() -> list[AssetView]:
        out: list[AssetView] = []
        for a in twin.assets:
            # Fields written one after the other by the twin thread: a scrape may mix two
            # ticks, as it may for points; contributions() works on one tick's array.
            latest = [
                float(t.ts[pos][seen].max())
                for dev, _, pos in a.parts
                if (seen := (t := twin.devices[dev]).seen[pos]).any()
            ]
            view = AssetView(
                a.device,
                a.name,
                a.score,
                Alarm(a.alarm),
                a.contributions(),
                max(latest) if latest else None,
                a.learning,
                a.away,
                tuple(a.devices),
            )
            out.append(view)
        return out

    return read


def uplink_state(uplink: MqttUplink) -> Callable[[], UplinkView]:
    """A view of ``uplink``, read live."""
    broker = f"{uplink.cfg.host}:{uplink.cfg.port}"
    return lambda: UplinkView(
        uplink.connected, uplink.published, broker, since=uplink.connected_since
    )


def error_kind(exc: BaseException) -> str:
    """The edgetwin_device_errors_total ``kind`` label of one poll error."""
    if isinstance(exc, DeviceTimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionLostError):
        return "connection"
    if isinstance(exc, DeviceExceptionError):
        return "exception"
    if isinstance(exc, ProtocolError):
        return "protocol"
    if isinstance(exc, EdgetwinError):
        return "other"
    return "internal"


@dataclass(frozen=True, slots=True)
class _Sources:
    devices: Callable[[], Iterable[DeviceView]]
    points: Callable[[], Iterable[PointView]]
    outbox: Callable[[], OutboxStats]
    uplink: Callable[[], UplinkView]
    assets: Callable[[], Iterable[AssetView]]


class _Edge:
    """When a sampled boolean last changed (as far as the samples can tell)."""

    def __init__(self, value: bool, now: float) -> None:
        self.value = value
        self.since = now

    def sample(self, value: bool, now: float) -> None:
        if value != self.value:
            self.value, self.since = value, now


class _TimedDevice:
    """A device whose polls are timed and whose errors are counted; all else passes through."""

    def __init__(self, inner: Device, record: Callable[[float, Sequence[BaseException]], None]):
        self._inner = inner
        self._record = record

    @property
    def name(self) -> str:
        """The device's configured name."""
        return self._inner.name

    async def poll(self, points: Sequence[int] | None = None) -> PollResult:
        """Poll the wrapped device and record how long it took and what failed."""
        t0 = time.perf_counter()
        try:
            result = await self._inner.poll(points)
        except Exception as exc:
            self._record(time.perf_counter() - t0, [exc])
            raise
        self._record(time.perf_counter() - t0, result.errors)
        return result

    def __getattr__(self, name: str) -> Any:
        # The scheduler probes for optional capabilities (write) with hasattr.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)


# -- the metrics -----------------------------------------------------------------------------


class GatewayMetrics:
    """Every health metric of one gateway, on a private registry, plus the status document."""

    def __init__(
        self,
        gateway: str,
        session: str,
        *,
        version: str = __version__,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gateway = gateway
        self.session = session
        self.version = version
        self.clock = clock
        self.started = clock()
        self.registry = CollectorRegistry()
        self._transactions = Histogram(
            "edgetwin_bus_transaction_seconds",
            "Time one device poll took on its bus, from request to last answer or timeout; "
            "outcome=error when any request of the poll failed.",
            ["bus", "outcome"],
            buckets=_TRANSACTION_BUCKETS,
            registry=self.registry,
        )
        self._errors = Counter(
            "edgetwin_device_errors",
            "Failed requests per device since start, by kind: timeout (no answer in time), "
            "connection (link down), exception (the device refused), protocol (garbled answer), "
            "other, internal (a driver bug; see the log).",
            ["bus", "device", "kind"],
            registry=self.registry,
        )
        self._ticks = Histogram(
            "edgetwin_twin_tick_seconds",
            "Time the twin estimator took to take in one device reading.",
            buckets=_TICK_BUCKETS,
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        self._sources: _Sources | None = None
        self._uplink_edge = _Edge(False, self.started)
        self._uplink_timed = False  # the bound uplink view says itself since when
        self._errors_seen: dict[str, dict[str, int]] = {}
        self.registry.register(_LiveCollector(self))

    # -- recorded as it happens ----------------------------------------------------------

    def instrument(self, bus: str, device: Device) -> Device:
        """Wrap ``device`` so each poll's duration and errors are recorded under ``bus``."""
        name = device.name
        # Children resolved once: a labels() lookup costs more than the observation itself.
        ok, failed = (self._transactions.labels(bus, o) for o in ("ok", "error"))
        errors = {kind: self._errors.labels(bus, name, kind) for kind in ERROR_KINDS}
        seen = self._errors_seen.setdefault(name, dict.fromkeys(ERROR_KINDS, 0))

        def record(seconds: float, excs: Sequence[BaseException]) -> None:
            (failed if excs else ok).observe(seconds)
            for exc in excs:
                kind = error_kind(exc)
                errors[kind].inc()
                seen[kind] += 1

        return _TimedDevice(device, record)

    def observe_transaction(
        self, bus: str, device: str, seconds: float, errors: Sequence[BaseException] = ()
    ) -> None:
        """Record one poll of ``device`` that took ``seconds`` and failed with ``errors``."""
        self._transactions.labels(bus, "error" if errors else "ok").observe(seconds)
        seen = self._errors_seen.setdefault(device, dict.fromkeys(ERROR_KINDS, 0))
        for exc in errors:
            kind = error_kind(exc)
            self._errors.labels(bus, device, kind).inc()
            seen[kind] += 1

    def observe_tick(self, seconds: float) -> None:
        """Record one estimator update; safe to call from the twin's worker thread."""
        self._ticks.observe(seconds)

    # -- read on demand --------------------------------------------------------------------

    def bind(
        self,
        *,
        devices: Callable[[], Iterable[DeviceView]],
        points: Callable[[], Iterable[PointView]],
        outbox: Callable[[], OutboxStats],
        uplink: Callable[[], UplinkView],
        assets: Callable[[], Iterable[AssetView]] = list,
    ) -> None:
        """Tell the metrics where the live state is; until then /status.json answers 503."""
        self._sources = _Sources(devices, points, outbox, uplink, assets)
        self.sample()

    @property
    def bound(self) -> bool:
        """True once :meth:`bind` was called."""
        return self._sources is not None

    def sample(self) -> _Sources | None:
        """Note the uplink state (for a view without its own since); return the sources."""
        src = self._sources
        if src is not None:
            up = src.uplink()
            self._uplink_edge.sample(up.connected, self.clock())
            self._uplink_timed = up.since is not None
        return src

    def uplink_since(self) -> float:
        """When the uplink went into its current state (as far as samples tell, without a since)."""
        src = self._sources
        since = None if src is None else src.uplink().since
        return self._uplink_edge.since if since is None else since

    def status(self) -> Status:
        """The document `edgetwin status` reads; RuntimeError before :meth:`bind`."""
        src = self.sample()
        if src is None:
            raise RuntimeError("GatewayMetrics.bind() has not been called")
        by_device: dict[str, list[PointStatus]] = {}
        for p in src.points():
            by_device.setdefault(p.device, []).append(
                PointStatus(
                    name=p.name,
                    unit=p.unit,
                    value=_finite(p.value),
                    estimate=_finite(p.estimate),
                    score=_finite(p.score),
                    alarm=_ALARM_NAMES[p.alarm],
                    quality=tuple(f.name for f in Quality if f and f.name and f in p.quality),
                    ts=p.ts,
                    learning=p.learning,
                )
            )
        devices = tuple(
            DeviceStatus(
                name=d.name,
                bus=d.bus,
                online=d.health.online,
                since=d.health.since,
                reason=d.health.reason,
                polls=d.health.polls,
                failed_polls=d.health.failed_polls,
                overruns=d.health.overruns,
                breaker_open=d.breaker_open,
                errors=dict(self._errors_seen.get(d.name, {})),
                points=tuple(by_device.get(d.name, ())),
            )
            for d in src.devices()
        )
        assets = tuple(
            AssetStatus(
                name=a.name,
                device=a.device,
                devices=a.devices or (a.device,),
                alarm=_ALARM_NAMES[a.alarm],
                score=_finite(a.score),
                contributions=a.contributions,
                ts=a.ts,
                learning=a.learning,
                away=a.away,
            )
            for a in src.assets()
        )
        up = src.uplink()
        ob = src.outbox()
        return Status(
            gateway=self.gateway,
            session=self.session,
            version=self.version,
            started=self.started,
            ts=self.clock(),
            devices=devices,
            assets=assets,
            uplink=UplinkStatus(
                broker=up.broker,
                connected=up.connected,
                since=self.uplink_since(),
                published=up.published,
            ),
            backlog=BacklogStatus(
                depth=ob.depth,
                bytes=ob.bytes,
                buffered=ob.buffered,
                oldest_age=ob.oldest_age,
                dropped_frames=ob.dropped_frames,
                dropped_bytes=ob.dropped_bytes,
            ),
        )

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The /metrics body and content type for an HTTP ``Accept`` header."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    # -- serving ---------------------------------------------------------------------------

    async def start_server(self, host: str, port: int) -> MetricsServer:
        """Listen on ``host:port`` (0: any free port); OSError if the address is taken."""
        server = MetricsServer(self)
        await server.start(host, port)
        return server

    async def serve(self, host: str, port: int) -> None:
        """Serve /metrics and /status.json until cancelled (a gateway task).

        A taken address is logged and the task ends: the gateway keeps polling without metrics.
        """
        try:
            server = await self.start_server(host, port)
        except OSError as exc:
            # The cause is the whole story; a traceback would only bury it.
            log.error(  # noqa: TRY400
                "metrics: cannot listen on %s:%d (%s); running without them", host, port, exc
            )
            return
        log.info("metrics: http://%s:%d/metrics and /status.json", *server.address)
        try:
            while True:
                self.sample()
                if self._uplink_timed:
                    # Nothing to sample: an idle daemon must not wake up for it.
                    await asyncio.get_running_loop().create_future()
                await asyncio.sleep(_SAMPLE_PERIOD)
        finally:
            await server.close()


_ALARM_NAMES: dict[Alarm, Literal["NORMAL", "WARNING", "ALARM"]] = {
    Alarm.NORMAL: "NORMAL",
    Alarm.WARNING: "WARNING",
    Alarm.ALARM: "ALARM",
}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


class _LiveCollector(Collector):
    """Builds the families that mirror live state, on each scrape."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.m = metrics

    def describe(self) -> list[Any]:
        # Nothing to describe up front: the families depend on what is bound.
        return []

    def collect(self) -> Iterator[Any]:
        m = self.m
        info = InfoMetricFamily(
            "edgetwin_gateway", "This gateway: its id, session and edgetwin version."
        )
        info.add_metric([], {"gateway": m.gateway, "session": m.session, "version": m.version})
        yield info
        yield GaugeMetricFamily(
            "edgetwin_gateway_start_time_seconds",
            "Unix time at which this daemon started.",
            value=m.started,
        )
        src = m.sample()
        if src is None:
            return
        yield from _device_families(src.devices())
        yield from _point_families(src.points())
        yield from _asset_families(src.assets())
        yield from _outbox_families(src.outbox())
        up = src.uplink()
        yield GaugeMetricFamily(
            "edgetwin_mqtt_connected",
            "1 while the gateway is connected to its MQTT broker, 0 while it is not.",
            value=float(up.connected),
        )
        yield GaugeMetricFamily(
            "edgetwin_mqtt_state_since_timestamp_seconds",
            "Unix time at which the MQTT connection went into its current state.",
            value=m.uplink_since(),
        )
        yield CounterMetricFamily(
            "edgetwin_mqtt_published",
            "Messages the broker acknowledged since start.",
            value=up.published,
        )


def _device_families(views: Iterable[DeviceView]) -> Iterator[Any]:
    labels = ["bus", "device"]
    up = GaugeMetricFamily(
        "edgetwin_device_up",
        "1 when the device answered its last poll, 0 when it is offline or has not answered yet.",
        labels=labels,
    )
    since = GaugeMetricFamily(
        "edgetwin_device_state_since_timestamp_seconds",
        "Unix time at which the device last went online or offline.",
        labels=labels,
    )
    breaker = GaugeMetricFamily(
        "edgetwin_device_breaker_open",
        "1 while the device's breaker is open: after repeated failures it is only probed, "
        "with a growing pause, so it cannot hold up the other devices on its bus.",
        labels=labels,
    )
    polls = CounterMetricFamily(
        "edgetwin_device_polls", "Polls of the device since start.", labels=labels
    )
    failed = CounterMetricFamily(
        "edgetwin_device_failed_polls",
        "Polls of the device that got no valid answer at all, since start.",
        labels=labels,
    )
    overruns = CounterMetricFamily(
        "edgetwin_device_overruns",
        "Poll slots missed because the bus was busy (the poll period is too short for the bus).",
        labels=labels,
    )
    for v in views:
        key = [v.bus, v.name]
        up.add_metric(key, float(v.health.online is True))
        since.add_metric(key, v.health.since)
        breaker.add_metric(key, float(v.breaker_open))
        polls.add_metric(key, v.health.polls)
        failed.add_metric(key, v.health.failed_polls)
        overruns.add_metric(key, v.health.overruns)
    yield from (up, since, breaker, polls, failed, overruns)


def _point_families(views: Iterable[PointView]) -> Iterator[Any]:
    labels = ["device", "point"]
    alarm = GaugeMetricFamily(
        "edgetwin_point_alarm",
        "Twin alarm state of the point: 0 normal, 1 warning, 2 alarm.",
        labels=labels,
    )
    quality = GaugeMetricFamily(
        "edgetwin_point_quality",
        "Quality flags of the point's last reading, 0 when good; a sum of 1 no answer, "
        "2 device error, 4 undecodable, 8 out of range, 16 not finite, 32 stale.",
        labels=labels,
    )
    score = GaugeMetricFamily(
        "edgetwin_point_anomaly_score",
        "Twin anomaly score of the point; 1.0 is the alarm threshold.",
        labels=labels,
    )
    bad = GaugeMetricFamily(
        "edgetwin_device_bad_quality_points",
        "Points of the device whose last reading carries a bad quality flag.",
        labels=["device"],
    )
    alarms = GaugeMetricFamily(
        "edgetwin_device_alarm_points",
        "Points of the device in each twin alarm state.",
        labels=["device", "state"],
    )
    learning = GaugeMetricFamily(
        "edgetwin_device_learning_points",
        "Points of the device whose twin is still commissioning (cannot alarm yet).",
        labels=["device"],
    )
    bad_count: dict[str, int] = {}
    learning_count: dict[str, int] = {}
    alarm_count: dict[str, dict[Alarm, int]] = {}
    for v in views:
        counts = alarm_count.setdefault(v.device, dict.fromkeys(Alarm, 0))
        bad_count.setdefault(v.device, 0)
        learning_count[v.device] = learning_count.get(v.device, 0) + v.learning
        if v.ts is None:
            continue  # not read yet: no state to report
        key = [v.device, v.name]
        alarm.add_metric(key, int(v.alarm))
        quality.add_metric(key, int(v.quality))
        score.add_metric(key, v.score)
        counts[v.alarm] += 1
        bad_count[v.device] += bool(v.quality)
    for device, n in bad_count.items():
        bad.add_metric([device], n)
    for device, counts in alarm_count.items():
        for state, n in counts.items():
            alarms.add_metric([device, state.name.lower()], n)
    for device, n in learning_count.items():
        learning.add_metric([device], n)
    yield from (alarm, quality, score, bad, alarms, learning)


def _asset_families(views: Iterable[AssetView]) -> Iterator[Any]:
    labels = ["device", "asset"]
    alarm = GaugeMetricFamily(
        "edgetwin_asset_alarm",
        "Twin alarm state of the asset: 0 normal, 1 warning, 2 alarm.",
        labels=labels,
    )
    score = GaugeMetricFamily(
        "edgetwin_asset_anomaly_score",
        "Twin anomaly score of the asset (how far its points left their learnt relationship); "
        "1.0 is the alarm threshold.",
        labels=labels,
    )
    share = GaugeMetricFamily(
        "edgetwin_asset_contribution",
        "Share of the asset's anomaly score due to one of its points, 0 to 1.",
        labels=[*labels, "point"],
    )
    learning = GaugeMetricFamily(
        "edgetwin_asset_learning",
        "1 while the asset's twin is still commissioning (cannot alarm yet), else 0.",
        labels=labels,
    )
    away = GaugeMetricFamily(
        "edgetwin_asset_away",
        "1 while the asset's twin scores it against an operating point re-learnt after an "
        "alarm, not the one it was commissioned at; 0 at home.",
        labels=labels,
    )
    member = GaugeMetricFamily(
        "edgetwin_asset_device_info",
        "1 for each device the asset reads; the other asset series carry its first device.",
        labels=labels,
    )
    for v in views:
        key = [v.device, v.name]
        learning.add_metric(key, int(v.learning))
        away.add_metric(key, int(v.away))
        for device in v.devices or (v.device,):
            member.add_metric([device, v.name], 1)
        if v.ts is None:
            continue  # none of its points read yet: no state to report
        alarm.add_metric(key, int(v.alarm))
        score.add_metric(key, v.score)
        for point, c in v.contributions.items():
            share.add_metric([*key, point], c)
    yield from (alarm, score, share, learning, away, member)


def _outbox_families(s: OutboxStats) -> Iterator[Any]:
    yield GaugeMetricFamily(
        "edgetwin_outbox_messages",
        "Messages (twin frames, events, births) stored on disk, waiting for the broker.",
        value=s.depth,
    )
    yield GaugeMetricFamily(
        "edgetwin_outbox_bytes", "Bytes of the messages waiting for the broker.", value=s.bytes
    )
    yield GaugeMetricFamily(
        "edgetwin_outbox_buffered_messages",
        "Messages produced but not yet committed to disk (at most one commit interval's worth).",
        value=s.buffered,
    )
    yield GaugeMetricFamily(
        "edgetwin_outbox_oldest_age_seconds",
        "Age of the oldest message waiting for the broker; 0 when nothing waits.",
        value=s.oldest_age or 0.0,
    )
    yield CounterMetricFamily(
        "edgetwin_outbox_dropped_frames",
        "Twin frames dropped because the outbox reached its size budget; kept across restarts. "
        "Any increase means lost data.",
        value=s.dropped_frames,
    )
    yield CounterMetricFamily(
        "edgetwin_outbox_dropped_bytes",
        "Bytes of the dropped frames; kept across restarts.",
        value=s.dropped_bytes,
    )
    yield CounterMetricFamily(
        "edgetwin_outbox_commits", "Write transactions since start.", value=s.commits
    )


# -- HTTP ------------------------------------------------------------------------------------


def parse_request(head: bytes) -> tuple[str, str, dict[str, str]] | None:
    """Method, path and lower-cased headers of an HTTP/1.x request head; None if malformed."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith("HTTP/1."):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            return None
        headers[name.strip().lower()] = value.strip()
    try:
        path = urlsplit(parts[1]).path
    except ValueError:
        return None
    return parts[0], path, headers


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
_INDEX = b"edgetwin health endpoint\n/metrics       Prometheus metrics\n/status.json   status\n"


class MetricsServer:
    """A minimal HTTP/1.1 server (one request per connection) on the running event loop."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[Any]] = set()

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port."""
        if self._server is None:
            raise RuntimeError("MetricsServer is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self, host: str, port: int) -> None:
        """Bind and accept connections; OSError if the address cannot be bound."""
        self._server = await asyncio.start_server(
            self._handle, host, port, limit=_HEADER_LIMIT, reuse_address=True
        )

    async def close(self) -> None:
        """Stop listening and end every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> MetricsServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def respond(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
        """Status code, content type and body for one request."""
        if method not in {"GET", "HEAD"}:
            return 405, "text/plain; charset=utf-8", b"only GET and HEAD\n"
        if path == "/metrics":
            body, ctype = self.metrics.exposition(headers.get("accept", ""))
            return 200, ctype, body
        if path == "/status.json":
            if not self.metrics.bound:
                return 503, "text/plain; charset=utf-8", b"the gateway is starting\n"
            return 200, "application/json", self.metrics.status().model_dump_json().encode()
        if path == "/":
            return 200, "text/plain; charset=utf-8", _INDEX
        return 404, "text/plain; charset=utf-8", b"not found; try /metrics or /status.json\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            try:
                async with asyncio.timeout(_HEADER_TIMEOUT):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            request = parse_request(head[:-4])
            if request is None:
                code, ctype, body = 400, "text/plain; charset=utf-8", b"bad request\n"
                method = "GET"
            else:
                method = request[0]
                try:
                    code, ctype, body = self.respond(*request)
                except Exception:
                    # A bug in a view must not end the daemon; the scrape shows it failed.
                    log.exception("metrics: %s %s failed", method, request[1])
                    code, ctype, body = 503, "text/plain; charset=utf-8", b"internal error\n"
            extra = "Allow: GET, HEAD\r\n" if code == 405 else ""
            writer.write(
                f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n{extra}Cache-Control: no-store\r\n"
                "Connection: close\r\n\r\n".encode("latin-1")
            )
            if method != "HEAD":
                writer.write(body)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            self._conns.discard(task)
            writer.close()
