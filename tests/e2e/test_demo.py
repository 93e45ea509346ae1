"""`edgetwin demo` as a new user runs it: a live twin, and the injected fault raises alarms."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.support.mosquitto import Mosquitto
from tests.support.procs import ROOT


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetwin", "demo", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
        env={**os.environ, "COLUMNS": "120"},
    )


def test_demo_with_embedded_broker_raises_alarms_after_the_fault() -> None:
    r = run_demo("--duration", "22", "--fault-at", "12")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for point in ("suction_pressure", "vibration", "flow", "motor_temperature"):
        assert f"pump1/{point}" in out
    m = re.search(r"alarms raised: (.*?)\npoint updates", out, re.S)
    assert m, out
    raised = {name: float(t) for name, t in re.findall(r"pump1/(\w+) at ([\d.]+) s", m.group(1))}
    # Cavitation collapses suction pressure and shakes the pump; nothing alarms before it.
    assert raised.keys() & {"suction_pressure", "vibration", "flow"}, raised
    # The view's clock starts after the pump's (which schedules the fault), by well under 1 s;
    # raising an alarm takes alarm_on samples after the fault. So nothing alarms before 11 s.
    assert min(raised.values()) >= 11.0, raised
    updates = int(re.search(r"point updates received by the cloud side: (\d+)", out).group(1))  # type: ignore[union-attr]
    assert updates > 100


def test_demo_against_mosquitto(mosquitto: Mosquitto) -> None:
    r = run_demo("--duration", "6", "--broker", mosquitto.url)
    assert r.returncode == 0, r.stderr
    assert mosquitto.url in r.stdout.replace("\n", "")
    updates = int(re.search(r"point updates received by the cloud side: (\d+)", r.stdout).group(1))  # type: ignore[union-attr]
    assert updates > 20
