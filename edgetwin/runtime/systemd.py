"""sd_notify(3) without libsystemd: READY, STOPPING, STATUS, EXTEND_TIMEOUT and the watchdog."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable

log = logging.getLogger(__name__)


def notify(message: str) -> bool:
    """Send ``message`` (e.g. "READY=1") to systemd; False when not run by systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # abstract namespace socket
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds within which systemd expects WATCHDOG=1 (sd_watchdog_enabled(3)); None if off."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    # A child that inherited the environment must not ping on its parent's behalf.
    if pid and pid != str(os.getpid()):
        return None
    return usec / 1_000_000


def extend_timeout(seconds: float) -> bool:
    """Ask systemd to wait ``seconds`` more before the current start or stop times out."""
    return notify(f"EXTEND_TIMEOUT_USEC={max(1, round(seconds * 1_000_000))}")


@contextlib.asynccontextmanager
async def extending_timeout(step: float = 10.0) -> AsyncIterator[None]:
    """Keep extending the start/stop timeout while the body runs; the body must not block the loop.

    Use around work of unknown length before READY=1, such as compiling kernels in a thread.
    """
    if not os.environ.get("NOTIFY_SOCKET"):
        yield
        return

    async def keep_extending() -> None:
        while True:
            # Each message buys two steps, so one late wakeup does not end the start.
            extend_timeout(2 * step)
            await asyncio.sleep(step)

    task = asyncio.create_task(keep_extending(), name="systemd-extend-timeout")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Watchdog:
    """Pings systemd's watchdog only while every registered stage makes progress.

    Each stage reports work with :meth:`progress` (thread-safe enough: a stage has one owner,
    and a lost increment only delays a ping). :meth:`run` checks every half interval and pings
    only if each stage progressed since the last ping, or its ``idle()`` says it has nothing to
    do. A stage that stops moving therefore stops the pings, and systemd restarts the service
    after ``WatchdogSec=``; so does an event loop that is blocked, because then :meth:`run`
    never wakes. Stages must progress (or be idle) more often than half the interval.
    """

    def __init__(self, stages: Iterable[str] = (), *, interval: float | None = None) -> None:
        self.interval = watchdog_interval() if interval is None else interval
        self.pings = 0
        self._idle: dict[str, Callable[[], bool] | None] = {}
        self._count: dict[str, int] = {}
        self._at_ping: dict[str, int] = {}
        self._stalled: tuple[str, ...] = ()
        for stage in stages:
            self.register(stage)

    @property
    def enabled(self) -> bool:
        """True when systemd expects pings from this process."""
        return self.interval is not None and self.interval > 0

    def register(self, stage: str, *, idle: Callable[[], bool] | None = None) -> None:
        """Watch ``stage``; ``idle()`` returning True means it has nothing to do right now."""
        self._idle[stage] = idle
        self._count.setdefault(stage, 0)
        self._at_ping.setdefault(stage, 0)

    def progress(self, stage: str) -> None:
        """Record that ``stage`` did a unit of work (a poll, a twin batch, a commit)."""
        if stage not in self._count:
            raise KeyError(f"watchdog stage {stage!r} is not registered")
        self._count[stage] += 1

    def stalled(self) -> list[str]:
        """Stages with work to do that made no progress since the last ping."""
        stuck = []
        for stage, idle in self._idle.items():
            if self._count[stage] != self._at_ping[stage]:
                continue
            if idle is not None and idle():
                continue
            stuck.append(stage)
        return stuck

    def check(self) -> bool:
        """Send WATCHDOG=1 if no stage is stalled; True when a ping was sent."""
        stuck = tuple(self.stalled())
        if stuck != self._stalled:
            if stuck:
                log.warning(
                    "watchdog: no progress from %s; pings withheld, systemd restarts the service "
                    "if this lasts %s s",
                    ", ".join(stuck),
                    f"{self.interval:g}" if self.interval else "?",
                )
            else:
                log.info("watchdog: every stage is making progress again")
            self._stalled = stuck
        if stuck:
            return False
        self._at_ping = dict(self._count)
        if notify("WATCHDOG=1"):
            self.pings += 1
            return True
        return False

    async def run(self) -> None:
        """Check every half interval until cancelled; return at once when the watchdog is off."""
        if self.interval is None or self.interval <= 0:
            return
        while True:
            await asyncio.sleep(self.interval / 2)
            self.check()
