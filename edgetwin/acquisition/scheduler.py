"""One scheduler per physical bus: serialised transactions, multi-rate deadlines, breakers.

Every device on a bus is split into rate groups (points that share a poll period). The
scheduler runs the group whose deadline is earliest, one transaction sequence at a time, so
an RS-485 line never sees two masters. Writes jump the queue. A device whose polls keep
failing trips its breaker: it is then only probed, after a capped, jittered backoff, so a
dead unit costs its neighbours at most one timeout per probe instead of one per period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edgetwin.core.backoff import Backoff
from edgetwin.core.types import DeviceReading, Quality
from edgetwin.drivers.base import Device, PollResult
from edgetwin.errors import EdgetwinError

log = logging.getLogger(__name__)


class Writable(Protocol):
    """A device that accepts writes (Modbus registers and coils)."""

    async def write(self, point: int, value: float) -> None:
        """Write ``value`` to point ``point`` (index into the config's points)."""
        ...


@dataclass(frozen=True)
class DeviceSpec:
    """A device as the scheduler needs it: the driver and its points' periods."""

    device: Device
    intervals: Sequence[float]  # poll period of each point, s
    breaker_failures: int = 2
    probe_max: float = 30.0


@dataclass
class _Group:
    index: np.ndarray  # device point indexes
    period: float
    due: float = 0.0
    keys: list[int] = field(init=False)  # index as a list, what a driver's poll() takes
    whole: bool = False  # every point of the device, in order: readings carry index None

    def __post_init__(self) -> None:
        self.keys = self.index.tolist()


@dataclass
class DeviceHealth:
    """Availability of one device, from its last poll."""

    online: bool | None = None  # None until the first poll
    failures: int = 0  # consecutive failed polls
    since: float = field(default_factory=time.time)
    reason: str = ""
    polls: int = 0
    failed_polls: int = 0
    overruns: int = 0


@dataclass
class _Device:
    spec: DeviceSpec
    groups: list[_Group]
    backoff: Backoff
    health: DeviceHealth = field(default_factory=DeviceHealth)
    probe_due: float | None = None  # set while the breaker is open
    every: _Group = field(init=False)  # all points at once, what a probe polls

    def __post_init__(self) -> None:
        index = np.concatenate([g.index for g in self.groups])
        self.every = _Group(index, self.groups[0].period)
        for g in (*self.groups, self.every):
            g.whole = g.keys == list(range(len(index)))

    @property
    def name(self) -> str:
        return self.spec.device.name


@dataclass
class _Write:
    device: str
    point: int
    value: float
    done: asyncio.Future[None]


class BusScheduler:
    """Polls every device of one bus in deadline order and hands readings to ``sink``."""

    def __init__(
        self,
        name: str,
        devices: Sequence[DeviceSpec],
        sink: Callable[[DeviceReading], None],
        *,
        on_change: Callable[[str, bool, str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.sink = sink
        self.on_change = on_change
        self.clock = clock
        self.devices: dict[str, _Device] = {}
        for spec in devices:
            periods = np.asarray(spec.intervals, dtype=np.float64)
            groups = [
                _Group(np.flatnonzero(periods == p).astype(np.int64), float(p))
                for p in sorted(set(periods.tolist()))
            ]
            base = min(g.period for g in groups)
            self.devices[spec.device.name] = _Device(
                spec, groups, Backoff(base, max(base, spec.probe_max))
            )
        self._writes: asyncio.Queue[_Write] = asyncio.Queue()
        self._wake = asyncio.Event()
        self.transactions = 0  # poll and write jobs run
        self._job_since: float | None = None  # loop time the running job started
        self._sleep_until: float | None = None  # loop time the idle wait should end

    def stuck(self, now: float, job_limit: float = 120.0, late: float = 10.0) -> bool:
        """True when a job has run for ``job_limit`` s or a wait overran by ``late`` s.

        The watchdog asks this: every transaction has a timeout, so a job that runs for
        minutes means the loop is wedged; a wait that never ends means it is starved.
        """
        if self._job_since is not None:
            return now - self._job_since > job_limit
        return self._sleep_until is not None and now - self._sleep_until > late

    # -- writes ---------------------------------------------------------------------------

    async def write(self, device: str, point: int, value: float) -> None:
        """Queue a write ahead of all polls and wait until the device confirmed it."""
        dev = self.devices.get(device)
        if dev is None:
            raise KeyError(f"no device {device!r} on bus {self.name!r}")
        if not hasattr(dev.spec.device, "write"):
            raise TypeError(f"device {device!r} does not accept writes")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writes.put_nowait(_Write(device, point, value, done))
        self._wake.set()
        await done

    async def _run_write(self, w: _Write) -> None:
        target: Writable = self.devices[w.device].spec.device  # type: ignore[assignment]
        self.transactions += 1
        try:
            await target.write(w.point, w.value)
        except Exception as exc:  # noqa: BLE001 - the writer gets the error; the bus goes on
            if not w.done.done():
                w.done.set_exception(exc)
            return
        if not w.done.done():
            w.done.set_result(None)

    # -- polling --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; returns after the job in progress completes."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for dev in self.devices.values():
            for g in dev.groups:
                g.due = now
        # One long-lived watcher turns ``stop`` into a wake-up, so an idle wait is a single
        # timer and a single event (no tasks per wait: this loop runs on every poll).
        stopper = asyncio.ensure_future(stop.wait())
        stopper.add_done_callback(lambda _: self._wake.set())
        try:
            await self._loop(stop)
        finally:
            stopper.cancel()
            await asyncio.gather(stopper, return_exceptions=True)
        # Fail any write still queued: the bus is closing.
        while not self._writes.empty():
            w = self._writes.get_nowait()
            if not w.done.done():
                w.done.set_exception(EdgetwinError(f"bus {self.name!r} stopped before the write"))

    async def _loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            while not self._writes.empty():
                self._sleep_until, self._job_since = None, loop.time()
                try:
                    await self._run_write(self._writes.get_nowait())
                finally:
                    self._job_since = None
            due, dev, group = self._next_job()
            wait = due - loop.time()
            if wait > 0:
                self._sleep_until = loop.time() + wait
                self._wake.clear()
                timer = loop.call_at(self._sleep_until, self._wake.set)
                try:
                    await self._wake.wait()
                finally:
                    timer.cancel()
                continue
            self._sleep_until, self._job_since = None, loop.time()
            try:
                await self._poll(dev, group)
            finally:
                self._job_since = None

    def _next_job(self) -> tuple[float, _Device, _Group]:
        """The earliest due group (a probe counts as its device's first), first listed on a tie."""
        best: tuple[float, _Device, _Group] | None = None
        for d in self.devices.values():
            if d.probe_due is not None:
                if best is None or d.probe_due < best[0]:
                    best = (d.probe_due, d, d.groups[0])
                continue
            for g in d.groups:
                if best is None or g.due < best[0]:
                    best = (g.due, d, g)
        if best is None:
            raise ValueError(f"bus {self.name!r} has no devices to poll")
        return best

    async def _poll(self, dev: _Device, group: _Group) -> None:
        probing = dev.probe_due is not None
        polled = dev.every if probing else group
        points = polled.index
        self.transactions += 1
        dev.health.polls += 1
        try:
            result = await dev.spec.device.poll(polled.keys)
        except Exception as exc:  # a driver bug must not take the bus down
            log.exception("device %s: poll failed unexpectedly", dev.name)
            n = len(points)
            result = PollResult(
                np.full(n, np.nan), np.full(n, int(Quality.DECODE_ERROR), np.uint16), 1
            )
            result.fail(EdgetwinError(f"internal error {type(exc).__name__}"))
            values, quality = result.values, result.quality
        else:
            # A driver's fresh arrays, NaN wherever no number was read (PollResult's contract).
            values, quality = result.values, result.quality
            if not polled.whole:
                values, quality = values[points], quality[points]  # copies
        index = None if polled.whole else points.copy()
        self.sink(DeviceReading(dev.name, self.clock(), values, quality, index=index))
        loop_now = asyncio.get_running_loop().time()
        if result.answered:
            self._succeeded(dev, loop_now)
        else:
            reason = str(result.errors[0]) if result.errors else "no answer"
            self._failed(dev, reason, loop_now)
        if not probing:
            group.due += group.period
            if group.due < loop_now:
                dev.health.overruns += 1
                group.due = loop_now  # skip missed slots rather than burst to catch up

    def _succeeded(self, dev: _Device, now: float) -> None:
        h = dev.health
        if dev.probe_due is not None:
            dev.probe_due = None
            for g in dev.groups:
                g.due = now
        dev.backoff.reset()
        h.failures = 0
        if h.online is not True:
            first = h.online is None
            h.online, h.since, h.reason = True, self.clock(), ""
            if first:
                log.info("device %s: online", dev.name)
            else:
                log.warning("device %s: recovered", dev.name)
            if self.on_change is not None:
                self.on_change(dev.name, True, "")

    def _failed(self, dev: _Device, reason: str, now: float) -> None:
        h = dev.health
        # A failing device goes to the back of the queue: its next try waits for every job
        # already due, so one dead unit costs each neighbour at most one timeout in a row.
        for g in dev.groups:
            g.due = max(g.due, now)
        h.failures += 1
        h.failed_polls += 1
        if h.failures >= dev.spec.breaker_failures or dev.probe_due is not None:
            dev.probe_due = now + dev.backoff.next()
        if h.online is not False and (h.failures >= dev.spec.breaker_failures or h.online is None):
            h.online, h.since, h.reason = False, self.clock(), reason
            log.warning("device %s: lost: %s", dev.name, reason)
            if self.on_change is not None:
                self.on_change(dev.name, False, reason)
