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
import time
from dataclasses import dataclass, field

from edgetwin import __version__
from edgetwin.acquisition.scheduler import BusScheduler, DeviceSpec
from edgetwin.config.schema import Config
from edgetwin.core.types import Alarm, DeviceReading, TwinBatch
from edgetwin.runtime import systemd
from edgetwin.runtime.devices import make_device, open_link
from edgetwin.runtime.metrics import (
    GatewayMetrics,
    scheduler_devices,
    twin_points,
    uplink_state,
)
from edgetwin.runtime.twin_stage import AlarmChange, TwinStage
from edgetwin.storage.outbox import Outbox
from edgetwin.twin.level import warmup
from edgetwin.uplink.codec import (
    Birth,
    Frame,
    PointInfo,
    Status,
    StatusState,
    encode_birth,
    encode_event,
    encode_frame,
    encode_status,
)
from edgetwin.uplink.session import MqttUplink
from edgetwin.uplink.topics import Topics

log = logging.getLogger(__name__)


class _Rebirth:
    """Queue marker: send the birth and a full snapshot."""


class _End:
    """Queue marker: no more readings."""


_Item = DeviceReading | _Rebirth | _End


@dataclass
class GatewayStats:
    """Counters a test, the demo or a status page can read."""

    readings: int = 0
    frames: int = 0
    events: int = 0
    rebirths: int = 0
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
        self.readings: asyncio.Queue[_Item] = asyncio.Queue()
        self.outbox = Outbox(
            cfg.gateway.state_dir / "outbox.db",
            commit_interval=cfg.outbox.commit_interval,
            max_bytes=cfg.outbox.max_bytes,
        )
        self.links = {bus.name: open_link(bus) for bus in cfg.buses}
        self.metrics = GatewayMetrics(cfg.gateway.id, self.session)
        self.schedulers = [
            BusScheduler(
                bus.name,
                [
                    DeviceSpec(
                        self.metrics.instrument(bus.name, make_device(dev, self.links[bus.name])),
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
        )
        self.metrics.bind(
            devices=scheduler_devices(self.schedulers),
            points=twin_points(cfg, self.twin),
            outbox=self.outbox.stats,
            uplink=uplink_state(self.uplink),
        )
        self._seq = 0
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
        self.readings.put_nowait(reading)

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
            self.readings.put_nowait(_Rebirth())

    def birth(self) -> Birth:
        """The birth certificate of this session: every point and its frame index."""
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

    def _frame(self, batch: TwinBatch, *, snapshot: bool) -> bytes:
        frame = Frame(
            gateway=self.cfg.gateway.id,
            session=self.session,
            seq=self._seq,
            batch=batch,
            snapshot=snapshot,
            replay=False,
        )
        self._seq += 1
        return encode_frame(frame)

    def _process(self, items: list[_Item]) -> tuple[list[bytes], list[AlarmChange], int]:
        """Worker-thread half of the twin task: estimator updates and frame encoding."""
        frames: list[bytes] = []
        changes: list[AlarmChange] = []
        births = 0
        for item in items:
            if isinstance(item, DeviceReading):
                t0 = time.perf_counter()
                batch, ch = self.twin.step(item)
                self.metrics.observe_tick(time.perf_counter() - t0)
                frames.append(self._frame(batch, snapshot=False))
                changes += ch
            elif isinstance(item, _Rebirth):
                births += 1
                snap = self.twin.snapshot()
                if snap is not None:
                    # The birth is queued first by the caller; frames keep their order.
                    frames.append(self._frame(snap, snapshot=True))
        return frames, changes, births

    async def _twin_task(self) -> None:
        while True:
            items = [await self.readings.get()]
            while not self.readings.empty():
                items.append(self.readings.get_nowait())
            if any(isinstance(i, _Rebirth) for i in items):
                # Births go ahead of this batch's frames so a fresh subscriber can decode them.
                self.outbox.put(
                    self.topics.birth, encode_birth(self.birth()), retain=True, kind="birth"
                )
            frames, changes, births = await asyncio.to_thread(self._process, items)
            self.watchdog.progress("twin")
            self.stats.rebirths += births
            for payload in frames:
                self.outbox.put(self.topics.frames, payload)
            self.stats.frames += len(frames)
            for c in changes:
                if Alarm.ALARM in (c.before, c.after):
                    log.info(
                        "alarm %s/%s: %s -> %s (score %.2f)",
                        c.device,
                        c.point,
                        c.before.name,
                        c.after.name,
                        c.score,
                    )
                self._put_event(
                    {
                        "type": "alarm",
                        "device": c.device,
                        "point": c.point,
                        "index": c.index,
                        "alarm": int(c.after),
                        "previous": int(c.before),
                        "value": c.value if math.isfinite(c.value) else None,
                        "estimate": c.estimate,
                        "score": c.score,
                    }
                )
            if any(isinstance(i, _End) for i in items):
                return

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down in order."""
        async with systemd.extending_timeout():
            await asyncio.to_thread(warmup)
        await self.outbox.open()
        try:
            self.outbox.put(
                self.topics.birth, encode_birth(self.birth()), retain=True, kind="birth"
            )
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
                self.readings.put_nowait(_End())
                await twin
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
            for link in self.links.values():
                link.close()
            await self.outbox.close()
            left = self.outbox.stats().depth
            if left:
                log.warning("stopped with %d messages kept in the outbox for the next start", left)
            else:
                log.info("stopped; outbox empty")
