"""Child processes for end-to-end tests: the simulated pump and the gateway itself."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "deploy" / "edgetwin.example.toml"


class Child:
    """A child process whose output goes to a log file, stopped at the end of the test."""

    def __init__(self, args: list[str], log: Path, *, stdout_pipe: bool = False) -> None:
        self.log = log
        self._log = log.open("ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
        )

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` if still running."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for exit and return the code."""
        return self.proc.wait(timeout)

    def output(self) -> str:
        """What the child logged so far."""
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 60.0) -> None:
        """Block until ``text`` appears in the child's log (fail if it exits first)."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise AssertionError(f"exited {code} before {text!r}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Terminate, then kill; close the log."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def start_pump(tmp: Path, *faults: str, served_log: Path | None = None) -> tuple[Child, int]:
    """Start `python -m firmware_stubs pump` on a free port; return it and the port."""
    args = [sys.executable, "-m", "firmware_stubs", "pump", "--host", "127.0.0.1", "--port", "0"]
    for f in faults:
        args += ["--fault", f]
    if served_log is not None:
        args += ["--served-log", str(served_log)]
    child = Child(args, tmp / "pump.log", stdout_pipe=True)
    assert child.proc.stdout is not None
    line = child.proc.stdout.readline().decode().strip()
    m = re.fullmatch(r"listening modbus-tcp 127\.0\.0\.1:(\d+)", line)
    if not m:
        child.stop()
        raise RuntimeError(f"pump did not start: {line!r}\n{child.output()}")
    return child, int(m.group(1))


def gateway_config(
    tmp: Path,
    *,
    pump_port: int,
    broker_url: str,
    interval: float = 0.25,
    grace: float = 5.0,
    uplink: str = 'report = "full"\nframe_interval = 0.5',
    extra: str = "",
) -> Path:
    """The example config from deploy/, pointed at this test's pump, broker and state dir."""
    text = EXAMPLE_CONFIG.read_text()
    subs = [
        (r"(?m)^state_dir\s*=.*$", f'state_dir = "{tmp / "state"}"'),
        (r"(?m)^url\s*=.*$", f'url = "{broker_url}"'),
        (r"(?m)^port\s*=\s*5020\b.*$", f"port = {pump_port}"),
        (r"(?m)^interval\s*=.*$", f"interval = {interval}"),
        (r"(?m)^grace_period\s*=.*$", f"grace_period = {grace}"),
        (r"(?m)^commit_interval\s*=.*$", "commit_interval = 0.1"),
    ]
    for pattern, repl in subs:
        text, n = re.subn(pattern, repl, text)
        assert n == 1, f"example config: expected one line matching {pattern}, found {n}"
    # Tests see every sample unless they ask otherwise; metrics off (tests share the machine).
    text += f"\n[uplink]\n{uplink}\n\n[metrics]\nenabled = false\n{extra}"
    path = tmp / "edgetwin.toml"
    path.write_text(text)
    return path


def start_gateway(config: Path, tmp: Path, name: str = "gateway") -> Child:
    """Start `edgetwin run --config` as a child process."""
    return Child(
        [sys.executable, "-m", "edgetwin", "run", "--config", str(config)], tmp / f"{name}.log"
    )
