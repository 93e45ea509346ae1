"""The daemon under a systemd-like supervisor: READY, watchdog pings only while making progress."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from pathlib import Path

from tests.support.mosquitto import Mosquitto
from tests.support.procs import Child, gateway_config, start_pump


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-reader")
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def count(self, text: str, since: float = 0.0) -> int:
        return sum(1 for t, m in list(self.messages) if m == text and t >= since)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def wait_for(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_ready_pings_and_a_wedged_outbox_withholds_pings(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    pump, port = start_pump(tmp_path)
    cfg = gateway_config(tmp_path, pump_port=port, broker_url=mosquitto.url)
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        gw = Child(
            [sys.executable, "-m", "edgetwin", "run", "--config", str(cfg)], tmp_path / "gw.log"
        )
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v
    db = None
    try:
        wait_for(lambda: notify.count("READY=1") == 1, 60)
        wait_for(lambda: notify.count("WATCHDOG=1") >= 3, 20)  # healthy: pinged
        # Wedge the database: another process holds SQLite's write lock.
        db = sqlite3.connect(tmp_path / "state" / "outbox.db", timeout=0, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        wait_for(
            lambda: (
                "watchdog: no progress from outbox" in gw.output() or gw.proc.poll() is not None
            ),
            30,
        )
        if gw.proc.poll() is None:
            quiet_from = time.monotonic() + 1.0
            time.sleep(3.0)
            assert notify.count("WATCHDOG=1", since=quiet_from) == 0  # pings withheld
        else:
            assert gw.proc.returncode != 0  # the wedged store stopped the process: restarted
        db.execute("ROLLBACK")
        db.close()
        db = None
        if gw.proc.poll() is None:
            gw.signal(signal.SIGTERM)
            gw.wait(30)
            assert notify.count("STOPPING=1") == 1
    finally:
        if db is not None:
            db.close()
        gw.stop()
        pump.stop()
        notify.close()
