"""The runner's child processes: a Mosquitto broker, the firmware stub and the gateway.

Each child runs in its own session, so a Ctrl-C at the terminal reaches only the runner, which
then stops them in order (gateway first, so it can flush): SIGTERM, wait, SIGKILL on timeout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class SetupError(Exception):
    """A part of the rig could not be started."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Child:
    """A child process logging to a file; ``stop()`` is idempotent."""

    def __init__(self, name: str, args: list[str], log: Path, *, stdout_pipe: bool = False) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                args,
                stdout=subprocess.PIPE if stdout_pipe else out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                cwd=ROOT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        """Whether the process has not exited yet."""
        return self.proc.poll() is None

    def tail(self, chars: int = 1500) -> str:
        """The end of the child's log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def start_broker(workdir: Path) -> tuple[Child, str]:
    """Mosquitto on a free loopback port, no persistence; return it and its URL."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        raise SetupError("mosquitto is not installed (apt-get install mosquitto) — or use --broker")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "mosquitto.conf"
    lines = [
        # As root, Mosquitto would switch to its own user, which may not read the workdir.
        *(["user root"] if os.geteuid() == 0 else []),
        "allow_anonymous true",
        "persistence false",
        "max_queued_messages 100000",
        "log_type error",
        "log_type warning",
        f"listener {port} 127.0.0.1",
    ]
    conf.write_text("\n".join(lines) + "\n")
    broker = Child("mosquitto", [exe, "-c", str(conf)], workdir / "mosquitto.log")
    deadline = time.monotonic() + 10.0
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if not broker.running or time.monotonic() > deadline:
                broker.stop()
                raise SetupError(f"mosquitto did not start:\n{broker.tail()}") from None
            time.sleep(0.05)
    return broker, f"mqtt://127.0.0.1:{port}"


_LISTENING = re.compile(r"listening (modbus-tcp|modbus-rtu-tcp) 127\.0\.0\.1:(\d+)")


def start_pump(
    workdir: Path, faults: list[str], *, seed: int, framing: list[str]
) -> tuple[Child, int]:
    """``python -m firmware_stubs pump`` on a free port; return it and the port.

    The stub's fault clock starts as it begins to listen, just before it prints its line.
    """
    args = [sys.executable, "-m", "firmware_stubs", "pump", "--host", "127.0.0.1", "--port", "0"]
    args += [*framing, "--seed", str(seed)]
    for spec in faults:
        args += ["--fault", spec]
    stub = Child("pump", args, workdir / "pump.log", stdout_pipe=True)
    assert stub.proc.stdout is not None
    line = stub.proc.stdout.readline().decode(errors="replace").strip()
    m = _LISTENING.fullmatch(line)
    if m is None:
        stub.stop()
        raise SetupError(f"the pump stub did not start: {line!r}\n{stub.tail()}")
    return stub, int(m.group(2))


def start_gateway(config: Path, workdir: Path) -> Child:
    """``edgetwin run --config CONFIG``."""
    return Child(
        "gateway",
        [sys.executable, "-m", "edgetwin", "run", "--config", str(config)],
        workdir / "gateway.log",
    )
