"""One coordinator per device: polls on schedule, backs off while the device is dead."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from edgetwin.core.backoff import Backoff
from edgetwin.core.types import DeviceReading, Quality
from edgetwin.drivers.base import PollResult

log = logging.getLogger(__name__)


class Pollable(Protocol):
    """What a poller needs of a driver."""

    @property
    def name(self) -> str:
        """Device name."""
        ...

    async def poll(self) -> PollResult:
        """Read every point once."""
        ...


class DevicePoller:
    """Polls one device every ``interval`` seconds and hands each reading to ``sink``.

    Availability comes from the last poll: a device whose poll got no valid answer is
    "lost" (logged once), polled again after a capped, jittered backoff, and "recovered"
    (logged once) on the first answer. A failure never leaves this task.
    """

    def __init__(
        self,
        device: Pollable,
        n_points: int,
        interval: float,
        sink: Callable[[DeviceReading], None],
        *,
        on_change: Callable[[str, bool, str], None] | None = None,
        backoff_cap: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.device = device
        self.n_points = n_points
        self.interval = interval
        self.sink = sink
        self.on_change = on_change
        self.clock = clock
        self.backoff = Backoff(interval, max(interval, backoff_cap))
        self.online: bool | None = None  # None until the first poll
        self.overruns = 0
        self.polls = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; returns after the poll in progress completes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while not stop.is_set():
            delay = await self._poll_once()
            if delay is None:
                deadline += self.interval
                now = loop.time()
                if deadline < now:
                    self.overruns += 1
                    deadline = now  # skip missed slots rather than bursting to catch up
            else:
                deadline = loop.time() + delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, deadline - loop.time()))

    async def _poll_once(self) -> float | None:
        """Poll; return None when on schedule, or a backoff delay after a dead poll."""
        self.polls += 1
        try:
            result = await self.device.poll()
        except Exception as exc:  # a driver bug must not take the gateway down
            log.exception("device %s: poll failed unexpectedly", self.device.name)
            self._emit(np.full(self.n_points, np.nan), Quality.DECODE_ERROR)
            self._set_online(False, f"internal error {type(exc).__name__}")
            return self.backoff.next()
        self.sink(DeviceReading(self.device.name, self.clock(), result.values, result.quality))
        if result.answered:
            self._set_online(True, "")
            self.backoff.reset()
            return None
        reason = str(result.errors[0]) if result.errors else "no answer"
        self._set_online(False, reason)
        return self.backoff.next()

    def _emit(self, values: np.ndarray, quality: Quality) -> None:
        q = np.full(self.n_points, int(quality), dtype=np.uint16)
        self.sink(DeviceReading(self.device.name, self.clock(), values, q))

    def _set_online(self, online: bool, reason: str) -> None:
        if online == self.online:
            return
        if online:
            if self.online is None:
                log.info("device %s: online", self.device.name)
            else:
                log.warning("device %s: recovered", self.device.name)
        else:
            log.warning("device %s: lost: %s", self.device.name, reason)
        self.online = online
        if self.on_change is not None:
            self.on_change(self.device.name, online, reason)
