"""The gateway: one TaskGroup of named tasks, started and stopped in order.

Data flows one way: bus schedulers → readings queue → twin → outbox → MQTT uplink. Shutdown runs
the same way: stop polling, let the twin drain, commit the outbox, let the uplink deliver
within the grace period, then close the database. What the uplink could not deliver stays
in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from edgetwin import __version__
from edgetwin.acquisition.scheduler import BusScheduler, DeviceSpec
from edgetwin.config.schema import Config
from edgetwin.core.types import Alarm, DeviceReading, TwinBatch
from edgetwin.drivers.base import Device
from edgetwin.runtime import systemd
from edgetwin.runtime.devices import call_optional, make_device, open_link
from edgetwin.runtime.metrics import (
    GatewayMetrics,
    scheduler_devices,
    twin_assets,
    twin_points,
    uplink_state,
)
from edgetwin.runtime.twin_stage import AlarmChange, TwinStage
from edgetwin.storage.outbox import Outbox
from edgetwin.storage.twin_state import TwinStateStore
from edgetwin.twin import warmup
from edgetwin.uplink.codec import (
    Birth,
    PointInfo,
    Status,
    StatusState,
    encode_birth,
    encode_event,
    encode_status,
)
from edgetwin.uplink.framer import FrameEncoder
from edgetwin.uplink.rbe import Reporter
from edgetwin.uplink.session import MqttUplink
from edgetwin.uplink.topics import Topics

log = logging.getLogger(__name__)

_T = TypeVar("_T")
# Readings that arrive within this many seconds of the first are stepped together: a poll
# round of many devices costs one wake-up of the twin task, with its code warm in the cache
# for every device after the first, instead of one cold wake-up per device.
_BATCH_WINDOW = 0.05


class _Rebirth:
    """Queue marker: send the birth and a full snapshot."""


class _End:
    """Queue marker: no more readings."""


class _Snapshot:
    """Queue marker: send a full snapshot soon (after a reconnect or a dropped chain)."""


_Item = DeviceReading | _Rebirth | _End | _Snapshot


def _concat(batches: list[TwinBatch]) -> TwinBatch:
    if len(batches) == 1:
        return batches[0]
    return TwinBatch(
        index=np.concatenate([b.index for b in batches]),
        ts=np.concatenate([b.ts for b in batches]),
        value=np.concatenate([b.value for b in batches]),
        estimate=np.concatenate([b.estimate for b in batches]),
        score=np.concatenate([b.score for b in batches]),
        alarm=np.concatenate([b.alarm for b in batches]),
        quality=np.concatenate([b.quality for b in batches]),
    )


def _rows(batch: TwinBatch, mask: np.ndarray) -> TwinBatch:
    return TwinBatch(
        index=batch.index[mask],
        ts=batch.ts[mask],
        value=batch.value[mask],
        estimate=batch.estimate[mask],
        score=batch.score[mask],
        alarm=batch.alarm[mask],
        quality=batch.quality[mask],
    )


def _top(contributions: dict[str, float] | None) -> str:
    """The main contributors of an asset alarm, for the log line."""
    if not contributions:
        return ""
    top = sorted(contributions.items(), key=lambda kv: -kv[1])[:3]
    return " from " + ", ".join(f"{p} {share:.0%}" for p, share in top)


@dataclass
class GatewayStats:
    """Counters a test, the demo or a status page can read."""

    readings: int = 0
    frames: int = 0
    snapshots: int = 0
    rows_sent: int = 0
    rows_suppressed: int = 0
    events: int = 0
    rebirths: int = 0
    drops_announced: int = 0
    device_online: dict[str, bool] = field(default_factory=dict)


def new_session_id() -> str:
    """A session id that sorts by start time and is unique per start."""
    return f"{int(time.time()):08x}{secrets.token_hex(4)}"


class Gateway:
    """Everything one `edgetwin run` owns."""

    def __init__(self, cfg: Config, *, session: str | None = None) -> None:
        self.cfg = cfg
        self.session = session or new_session_id()
        self.topics = Topics(cfg.mqtt.topic_prefix, cfg.gateway.id)
        self.stats = GatewayStats()
        self.twin = TwinStage(cfg)
        # The twin's own thread: every estimator step, state save and restore and frame encode
        # runs there, one at a time, so the loop never waits for a kernel and the twin state
        # has one writer. One long-lived thread keeps its caches warm between poll rounds.
        self._twin_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgetwin-twin")
        self.twin_store = TwinStateStore(cfg.gateway.state_dir / "twin.sqlite")
        self.readings: asyncio.Queue[_Item] = asyncio.Queue()
        self._ready = asyncio.Event()  # set whenever something is queued
        self.outbox = Outbox(
            cfg.gateway.state_dir / "outbox.db",
            commit_interval=cfg.outbox.commit_interval,
            max_bytes=cfg.outbox.max_bytes,
            max_age=cfg.outbox.max_age,
        )
        self.links = {bus.name: open_link(bus) for bus in cfg.buses}
        self.metrics = GatewayMetrics(cfg.gateway.id, self.session)
        self.devices: dict[str, Device] = {
            dev.name: make_device(dev, self.links[dev.bus]) for dev in cfg.devices
        }
        self.schedulers = [
            BusScheduler(
                bus.name,
                [
                    DeviceSpec(
                        self.metrics.instrument(bus.name, self.devices[dev.name]),
                        [p.interval or dev.interval for p in dev.points],
                        breaker_failures=dev.breaker_failures,
                        probe_max=dev.probe_max,
                    )
                    for dev in cfg.devices
                    if dev.bus == bus.name
                ],
                self._on_reading,
                on_change=self._on_device_change,
            )
            for bus in cfg.buses
            if any(dev.bus == bus.name for dev in cfg.devices)
        ]
        self.uplink = MqttUplink(
            cfg.mqtt,
            self.outbox,
            client_id=cfg.mqtt.client_id or f"edgetwin-{cfg.gateway.id}",
            status_topic=self.topics.status,
            command_topics=[self.topics.rebirth],
            online_payload=self._status("online"),
            offline_payload=self._status("offline"),
            on_command=self._on_command,
            on_connected=self._on_connected,
        )
        self.metrics.bind(
            devices=scheduler_devices(self.schedulers),
            points=twin_points(cfg, self.twin),
            outbox=self.outbox.stats,
            uplink=uplink_state(self.uplink),
            assets=twin_assets(self.twin),
        )
        self.birth_doc = self.birth()
        self.encoder = FrameEncoder(cfg.gateway.id, self.session, self.birth_doc.points)
        self.reporter = Reporter.from_points(self.birth_doc.points)
        self._pending: list[TwinBatch] = []  # rows chosen for the next frame
        self._want_snapshot = True  # a session starts with a snapshot
        self._commits_seen = -1
        self.watchdog = systemd.Watchdog()
        self.watchdog.register("poll", idle=self._buses_alive)
        self.watchdog.register("twin", idle=self.readings.empty)
        self.watchdog.register("outbox", idle=self._outbox_moving)

    # -- liveness (systemd watchdog) ---------------------------------------------------------

    def _buses_alive(self) -> bool:
        now = asyncio.get_running_loop().time()
        return not any(s.stuck(now) for s in self.schedulers)

    def _outbox_moving(self) -> bool:
        st = self.outbox.stats()
        moved = st.buffered == 0 or st.commits != self._commits_seen
        self._commits_seen = st.commits
        return moved

    # -- producers -------------------------------------------------------------------------

    def _status(self, state: StatusState) -> bytes:
        return encode_status(Status(state=state, session=self.session, ts=time.time()))

    def _on_reading(self, reading: DeviceReading) -> None:
        self.stats.readings += 1
        self._enqueue(reading)

    def _on_device_change(self, device: str, online: bool, reason: str) -> None:
        self.stats.device_online[device] = online
        self._put_event(
            {
                "type": "device",
                "device": device,
                "state": "online" if online else "offline",
                "detail": reason,
            }
        )

    def _on_command(self, topic: str, payload: bytes) -> None:
        if topic == self.topics.rebirth:
            log.info("rebirth requested")
            self._enqueue(_Rebirth())

    def _on_connected(self) -> None:
        # Live deltas must be decodable without waiting for the backlog's snapshots.
        self._enqueue(_Snapshot())

    def birth(self) -> Birth:
        """The birth certificate of this session: every point, its frame index and wire rules."""
        up = self.cfg.uplink
        points: list[PointInfo] = []
        for dev in self.cfg.devices:
            for p in dev.points:
                points.append(
                    PointInfo(
                        index=len(points),
                        device=dev.name,
                        point=p.name,
                        unit=p.unit,
                        type=getattr(p, "type", "float64"),
                        model=p.model,
                        threshold=self.cfg.twin.threshold,
                        resolution=p.resolution,
                        deadband=p.deadband if p.deadband is not None else (p.resolution or 0.0),
                        report=up.report if p.report == "default" else p.report,
                        heartbeat=up.heartbeat,
                    )
                )
        return Birth(
            gateway=self.cfg.gateway.id,
            session=self.session,
            version=__version__,
            ts=time.time(),
            points=tuple(points),
        )

    def _put_event(self, body: dict[str, object]) -> None:
        doc: dict[str, object] = {
            "v": 1,
            "gateway": self.cfg.gateway.id,
            "session": self.session,
            "ts": time.time(),
            **body,
        }
        self.outbox.put(self.topics.events, encode_event(doc), kind="event")
        self.stats.events += 1

    def _process(self, items: list[_Item]) -> list[AlarmChange]:
        """Worker-thread half of the twin task: estimator updates and row selection."""
        changes: list[AlarmChange] = []
        now = time.monotonic()
        for item in items:
            if isinstance(item, DeviceReading):
                t0 = time.perf_counter()
                batch, nis, ch = self.twin.step(item)
                self.metrics.observe_tick(time.perf_counter() - t0)
                mask = self.reporter.select(batch, now, nis, self.cfg.uplink.model_sigmas)
                sent = int(np.count_nonzero(mask))
                self.stats.rows_sent += sent
                self.stats.rows_suppressed += len(mask) - sent
                if sent:
                    self._pending.append(batch if sent == len(mask) else _rows(batch, mask))
                changes += ch
            elif isinstance(item, _Rebirth | _Snapshot):
                self._want_snapshot = True
        return changes

    def _frames(self) -> list[tuple[str, int, bytes]]:
        """Worker-thread half: encode the pending rows, then a snapshot if one is due."""
        out: list[tuple[str, int, bytes]] = []
        if self._pending:
            seq, payload = self.encoder.encode(_concat(self._pending))
            self._pending.clear()
            out.append(("frame", seq, payload))
        if self._want_snapshot:
            snap = self.twin.snapshot()
            if snap is not None:
                seq, payload = self.encoder.snapshot(snap)
                self.reporter.record(snap, time.monotonic())
                self._want_snapshot = False
                out.append(("snapshot", seq, payload))
        return out

    def _enqueue(self, item: _Item) -> None:
        self.readings.put_nowait(item)
        self._ready.set()

    async def _next_items(self, deadline: float | None) -> list[_Item]:
        """Everything queued, waiting for the first item until ``deadline`` (loop time).

        A timer and an event instead of wait_for(queue.get()): no task per reading.
        """
        if self.readings.empty():
            self._ready.clear()
            loop = asyncio.get_running_loop()
            timer = loop.call_at(deadline, self._ready.set) if deadline is not None else None
            try:
                await self._ready.wait()
            finally:
                if timer is not None:
                    timer.cancel()
        return self._drain()

    def _drain(self) -> list[_Item]:
        items: list[_Item] = []
        while not self.readings.empty():
            items.append(self.readings.get_nowait())
        return items

    async def _off_loop(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run twin work on the twin's thread (the kernels release the GIL)."""
        return await asyncio.get_running_loop().run_in_executor(self._twin_thread, fn, *args)

    async def _announce_drops(self) -> None:
        drops = await self.outbox.take_drops()
        # No await between taking the records and putting their events: see Outbox.take_drops.
        for d in drops:
            log.warning(
                "outbox dropped %d frames and %d events (%d bytes) of session %s, seq %s..%s: %s",
                d.frames,
                d.events,
                d.bytes,
                d.session,
                d.first_seq,
                d.last_seq,
                d.reason,
            )
            self._put_event(
                {
                    "type": "drop",
                    "of_session": d.session,
                    "first_seq": d.first_seq,
                    "last_seq": d.last_seq,
                    "frames": d.frames,
                    "events": d.events,
                    "bytes": d.bytes,
                    "reason": d.reason,
                }
            )
            self.stats.drops_announced += 1

    async def _twin_task(self) -> None:
        loop = asyncio.get_running_loop()
        up = self.cfg.uplink
        flush_at = loop.time() + up.frame_interval
        snapshot_at = loop.time() + up.snapshot_every
        persist_at = loop.time() + self.cfg.twin.persist_interval
        while True:
            items = await self._next_items(flush_at if self._pending else None)
            if items and not isinstance(items[-1], _End):
                await asyncio.sleep(_BATCH_WINDOW)
                items += self._drain()
            rebirth = any(isinstance(i, _Rebirth) for i in items)
            if rebirth:
                # The birth goes ahead of the snapshot so a fresh subscriber can decode it.
                self.outbox.put(
                    self.topics.birth, encode_birth(self.birth_doc), retain=True, kind="birth"
                )
                self.stats.rebirths += 1
            changes = await self._off_loop(self._process, items) if items else []
            self.watchdog.progress("twin")
            if loop.time() >= persist_at:
                # The twin task is the only one that steps the twin: the state is consistent.
                await self._off_loop(self._save_twin)
                persist_at = loop.time() + self.cfg.twin.persist_interval
            self._put_alarms(changes)
            end = any(isinstance(i, _End) for i in items)
            now = loop.time()
            if now >= snapshot_at or self.outbox.needs_snapshot(self.session):
                self._want_snapshot = True
                snapshot_at = now + up.snapshot_every
            if end or now >= flush_at or self._want_snapshot or up.frame_interval == 0:
                for kind, seq, payload in await self._off_loop(self._frames):
                    self.outbox.put(
                        self.topics.frames, payload, kind=kind, session=self.session, seq=seq
                    )
                    self.stats.frames += 1
                    self.stats.snapshots += kind == "snapshot"
                if now >= flush_at:
                    # A steady cadence, like the bus schedulers': the flush comes with a poll
                    # round instead of drifting into a wake-up of its own.
                    flush_at += up.frame_interval
                    if flush_at <= now:
                        flush_at = now + up.frame_interval
                await self._announce_drops()
            if end:
                return

    def _put_alarms(self, changes: list[AlarmChange]) -> None:
        for c in changes:
            if Alarm.ALARM not in (c.before, c.after):
                # NORMAL <-> WARNING follows the noise sample by sample (no persistence): the
                # frames' alarm column carries it; an event for each would be a storm.
                continue
            what = f"{c.device}/{c.point}" if c.point is not None else f"asset {c.asset}"
            log.info(
                "alarm %s: %s -> %s (score %.2f, %s)%s",
                what,
                c.before.name,
                c.after.name,
                c.score,
                c.severity,
                _top(c.contributions),
            )
            event: dict[str, object] = {"type": "alarm", "device": c.device}
            if c.point is not None:
                event |= {"point": c.point, "index": c.index}
            else:
                event |= {"asset": c.asset, "contributions": c.contributions}
                if len(c.devices) > 1:
                    event["devices"] = list(c.devices)
            event |= {"alarm": int(c.after), "previous": int(c.before), "score": c.score}
            if c.after == Alarm.ALARM:
                event["severity"] = c.severity
            if c.point is not None:
                finite = c.value is not None and math.isfinite(c.value)
                event |= {"value": c.value if finite else None, "estimate": c.estimate}
            self._put_event(event)

    # -- lifecycle ---------------------------------------------------------------------------

    def _restore_twin(self) -> None:
        report = self.twin_store.restore(self.twin.groups())
        if report.resumed:
            age = time.time() - (report.saved_at or time.time())
            log.info(
                "twin state resumed from %s (saved %.0f s ago): %s",
                self.twin_store.path,
                age,
                ", ".join(f"{k} ({n} points)" for k, n in report.resumed.items()),
            )
        for key, why in report.fresh.items():
            log.info("twin %s commissions afresh: %s", key, why)

    def _save_twin(self) -> None:
        try:
            self.twin_store.save(self.twin.groups())
        except (OSError, sqlite3.Error) as exc:
            log.warning("cannot save the twin state to %s: %s", self.twin_store.path, exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down in order."""
        async with systemd.extending_timeout():
            await self._off_loop(warmup)
            await self._off_loop(self._restore_twin)
        await self.outbox.open()
        try:
            self.outbox.put(
                self.topics.birth, encode_birth(self.birth_doc), retain=True, kind="birth"
            )
            for device in self.devices.values():
                await call_optional(device, "start")
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self.outbox.run_writer(), name="outbox-writer")
                uplink = tg.create_task(self.uplink.run(), name="uplink")
                twin = tg.create_task(self._twin_task(), name="twin")
                metrics = (
                    tg.create_task(
                        self.metrics.serve(self.cfg.metrics.host, self.cfg.metrics.port),
                        name="metrics",
                    )
                    if self.cfg.metrics.enabled
                    else None
                )
                polls = [tg.create_task(b.run(stop), name=f"bus:{b.name}") for b in self.schedulers]
                systemd.notify(f"READY=1\nSTATUS=session {self.session}")
                dog = tg.create_task(self.watchdog.run(), name="watchdog")
                log.info(
                    "gateway %s running: session %s, %d devices, %d points",
                    self.cfg.gateway.id,
                    self.session,
                    len(self.cfg.devices),
                    self.twin.n_points,
                )
                await stop.wait()
                systemd.notify("STOPPING=1")
                dog.cancel()
                log.info("stopping: polling ends")
                await asyncio.gather(*polls)
                self._enqueue(_End())
                await twin
                await self._off_loop(self._save_twin)
                await self.outbox.flush()
                depth = self.outbox.stats().depth
                log.info("stopping: delivering %d queued messages", depth)
                self.uplink.drain(self.cfg.outbox.grace_period)
                await uplink
                self.outbox.stop()
                await writer
                if metrics is not None:
                    metrics.cancel()
        finally:
            # Queued twin work is dropped; a step in flight ends on its own thread, which the
            # interpreter joins at exit (a save in flight is not cut short).
            self._twin_thread.shutdown(wait=False, cancel_futures=True)
            for device in self.devices.values():
                await call_optional(device, "close")
            for link in self.links.values():
                link.close()
            await self.outbox.close()
            left = self.outbox.stats().depth
            if left:
                log.warning("stopped with %d messages kept in the outbox for the next start", left)
            else:
                log.info("stopped; outbox empty")
