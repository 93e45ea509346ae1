"""A real Mosquitto broker on a free loopback port that tests can stop and restart.

Optionally a second, TLS listener (``tls=TlsListener(...)``) and a password file
(``password_file=``, made with :func:`write_password_file`) that then applies to every listener.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file made by ``mosquitto_passwd -b`` (check MOSQUITTO_PASSWD first)."""
    if MOSQUITTO_PASSWD is None:
        raise RuntimeError("mosquitto_passwd is not installed (apt-get install mosquitto)")
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    for user, password in users.items():
        subprocess.run(
            [MOSQUITTO_PASSWD, "-b", str(path), user, password],
            check=True,
            capture_output=True,
        )
    return path


@dataclass(frozen=True)
class TlsListener:
    """PEM files of a TLS listener; ``require_certificate`` asks clients for a certificate."""

    ca: Path
    cert: Path
    key: Path
    require_certificate: bool = False


class Mosquitto:
    """One broker process; ``start()``/``stop()`` may be called repeatedly on the same ports."""

    def __init__(
        self,
        workdir: Path,
        *,
        persistence: bool = True,
        tls: TlsListener | None = None,
        password_file: Path | None = None,
    ) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.exe = exe
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.tls_port = free_port() if tls is not None else None
        self.conf = workdir / "mosquitto.conf"
        lines = [
            # As root, Mosquitto would switch to its own user, which cannot read pytest's
            # private tmp dirs (persistence, certificates).
            *(["user root"] if os.geteuid() == 0 else []),
            f"allow_anonymous {'false' if password_file is not None else 'true'}",
            *([f"password_file {password_file}"] if password_file is not None else []),
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {workdir}/",
            "autosave_interval 1",
            "max_queued_messages 100000",
            "log_type error",
            "log_type warning",
            f"listener {self.port} 127.0.0.1",
        ]
        if tls is not None:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {tls.ca}",
                f"certfile {tls.cert}",
                f"keyfile {tls.key}",
                f"require_certificate {'true' if tls.require_certificate else 'false'}",
            ]
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        """mqtt://127.0.0.1:PORT"""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        """mqtts://127.0.0.1:TLS_PORT (only with ``tls=``)."""
        assert self.tls_port is not None, "no TLS listener"
        return f"mqtts://127.0.0.1:{self.tls_port}"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        assert self.proc is None, "already running"
        log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        try:
            wait_port(self.port)
            if self.tls_port is not None:
                wait_port(self.tls_port)
        except OSError:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
