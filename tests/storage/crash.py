"""Run an outbox script in a child process and SIGKILL it once it says it is ready."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import edgetwin


def kill_when_ready(script: str, path: Path) -> None:
    """Run ``script`` with ``path`` as argv[1]; SIGKILL it after it prints ``ready``."""
    env = dict(os.environ)
    root = str(Path(edgetwin.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                proc.kill()
                _, err = proc.communicate(timeout=30)
                pytest.fail(f"child did not get ready: {line!r}\n{err}")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
