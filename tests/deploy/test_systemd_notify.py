"""sd_notify and the progress watchdog, read back from a real AF_UNIX datagram socket."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator

import pytest

from edgetwin.runtime import systemd
from edgetwin.runtime.systemd import Watchdog

STAGES = ("poll", "twin", "outbox")


class NotifySocket:
    """The service manager's end: a bound datagram socket named in $NOTIFY_SOCKET."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def receive(self, timeout: float = 2.0) -> str | None:
        """The next message, or None if none arrives within ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode()
        except TimeoutError:
            return None

    async def areceive(self, wait: float = 2.0) -> str | None:
        """:meth:`receive` without blocking the event loop."""
        return await asyncio.to_thread(self.receive, wait)


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    """An abstract-namespace socket like systemd's, with WATCHDOG_* cleared."""
    name = f"edgetwin-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        yield NotifySocket(sock)
    finally:
        sock.close()


def test_notify_reaches_a_socket_path(tmp_path_factory: pytest.TempPathFactory) -> None:
    # A short directory: socket paths are limited to 107 bytes.
    path = tmp_path_factory.mktemp("n") / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("NOTIFY_SOCKET", str(path))
            assert systemd.notify("READY=1\nSTATUS=up")
        sock.settimeout(2.0)
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"


def test_notify_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not systemd.notify("READY=1")
    assert not systemd.extend_timeout(5)


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("250000", "self", 0.25),
        ("30000000", "other", None),
        ("0", None, None),
        ("soon", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for key, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            own = str(os.getpid())
            monkeypatch.setenv(key, {"self": own, "other": own + "0"}.get(value, value))
    assert systemd.watchdog_interval() == expected


def test_extend_timeout_message(notify_socket: NotifySocket) -> None:
    assert systemd.extend_timeout(2.5)
    assert notify_socket.receive() == "EXTEND_TIMEOUT_USEC=2500000"


async def test_extending_timeout_while_the_body_runs(notify_socket: NotifySocket) -> None:
    async with systemd.extending_timeout(step=0.05):
        first = await notify_socket.areceive()
        second = await notify_socket.areceive()
    assert first == second == "EXTEND_TIMEOUT_USEC=100000"
    # The extender task is gone: nothing more arrives once the body has finished.
    while (msg := notify_socket.receive(timeout=0.01)) is not None:
        assert msg == "EXTEND_TIMEOUT_USEC=100000"
    assert notify_socket.receive(timeout=0.3) is None
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "systemd-extend-timeout"]


def test_pings_only_when_every_stage_progressed(notify_socket: NotifySocket) -> None:
    wd = Watchdog(STAGES, interval=30.0)
    assert not wd.check()  # nothing has happened yet
    wd.progress("poll")
    wd.progress("twin")
    assert wd.stalled() == ["outbox"]
    assert not wd.check()
    assert notify_socket.receive(timeout=0.2) is None

    wd.progress("outbox")
    assert wd.check()
    assert notify_socket.receive() == "WATCHDOG=1"

    # Progress counts once: the next ping needs new progress from every stage again.
    wd.progress("poll")
    wd.progress("outbox")
    assert not wd.check()
    assert notify_socket.receive(timeout=0.2) is None
    wd.progress("twin")
    assert wd.check()
    assert notify_socket.receive() == "WATCHDOG=1"
    assert wd.pings == 2


def test_an_idle_stage_does_not_withhold_pings(notify_socket: NotifySocket) -> None:
    pending: list[str] = []
    wd = Watchdog(("poll", "outbox"), interval=30.0)
    wd.register("twin", idle=lambda: not pending)
    wd.progress("poll")
    wd.progress("outbox")
    assert wd.check()  # the twin has nothing queued
    assert notify_socket.receive() == "WATCHDOG=1"

    pending.append("reading")  # work arrives and the twin does not take it: stuck
    wd.progress("poll")
    wd.progress("outbox")
    assert wd.stalled() == ["twin"]
    assert not wd.check()
    assert notify_socket.receive(timeout=0.2) is None


def test_unknown_stage_is_an_error() -> None:
    wd = Watchdog(STAGES, interval=30.0)
    with pytest.raises(KeyError, match="twn"):
        wd.progress("twn")


async def test_run_pings_at_half_the_interval_while_all_progress(
    notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    wd = Watchdog(STAGES)
    assert wd.enabled
    assert wd.interval == 0.1
    moving = set(STAGES) - {"twin"}

    async def stages() -> None:
        while True:
            for stage in moving:
                wd.progress(stage)
            await asyncio.sleep(0.01)

    async with asyncio.TaskGroup() as tg:
        work = tg.create_task(stages(), name="stages")
        loop = tg.create_task(wd.run(), name="watchdog")
        # The twin never moves: several check periods pass without a ping.
        assert await notify_socket.areceive(wait=0.5) is None
        assert wd.stalled() == ["twin"]
        moving.add("twin")
        assert await notify_socket.areceive() == "WATCHDOG=1"
        assert await notify_socket.areceive() == "WATCHDOG=1"
        loop.cancel()
        work.cancel()
    assert wd.pings >= 2


async def test_run_returns_when_the_watchdog_is_off(notify_socket: NotifySocket) -> None:
    wd = Watchdog(STAGES)
    assert not wd.enabled
    await asyncio.wait_for(wd.run(), timeout=2.0)
    assert notify_socket.receive(timeout=0.1) is None
