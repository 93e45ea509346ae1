"""End to end: `python -m hil run` through a real mosquitto, the pump stub and `edgetwin run`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The scenarios poll every 0.25 s; below scale 0.2 the gateway's 0.05 s poll minimum is hit.
SCALE = max(0.2, float(os.environ.get("EDGETWIN_SOAK_SCALE", "1.0")))


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    out = tmp_path / "hil.out"
    with out.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hil", "run", *args, "--workdir", str(tmp_path / "work")],
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    return proc, out


def wait_for(proc: subprocess.Popen[bytes], out: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in out.read_text(errors="replace"):
        assert proc.poll() is None, out.read_text(errors="replace")
        assert time.monotonic() < deadline, out.read_text(errors="replace")
        time.sleep(0.1)


@pytest.mark.soak
@pytest.mark.timeout(60 + 150 * SCALE)
@pytest.mark.parametrize("name", ["pump_cavitation", "link_loss", "valve_throttle"])
def test_scenario_passes(tmp_path: Path, name: str) -> None:
    report = tmp_path / "report.json"
    scenario = ROOT / "hil" / "scenarios" / f"{name}.toml"
    proc, out = start(tmp_path, str(scenario), "--scale", f"{SCALE:g}", "--report", str(report))
    try:
        wait_for(proc, out, "device pump1 online")
        children = descendants(proc.pid)
        assert len(children) >= 3  # mosquitto, the stub, the gateway
        code = proc.wait(40 + 120 * SCALE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = out.read_text(errors="replace")
    assert code == 0, text
    assert "PASSED" in text
    assert not [p for p in children if alive(p)], "processes left behind"
    rep = json.loads(report.read_text())
    assert rep["passed"]
    assert rep["exit_code"] == 0
    assert rep["notes"] == []
    assert rep["scenario"]["scale"] == SCALE
    assert rep["windows"]
    for w in rep["windows"]:
        # The scenario's own bounds: detected within its max delay, cleared within the grace.
        assert w["status"] == "detected", w
        assert w["delay"] <= w["within"], w
        assert w["cleared_at"] <= w["end"] + rep["scenario"]["clear_grace"], w
    assert rep["false_alarms"] == []
    first = rep["events"][0]
    assert first["t"] < 0
    assert first["event"]["state"] == "online"
    assert rep["gateway_exit"] == 0


def test_interrupt_stops_every_process(tmp_path: Path) -> None:
    scenario = ROOT / "hil" / "scenarios" / "link_loss.toml"
    proc, out = start(tmp_path, str(scenario))
    try:
        wait_for(proc, out, "device pump1 online")
        children = descendants(proc.pid)
        assert len(children) >= 3
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 2, out.read_text()
    assert "interrupted" in out.read_text()
    assert not [p for p in children if alive(p)], "processes left behind"
    # The gateway was stopped, not killed: it stopped cleanly and said so.
    assert "stopped; outbox empty" in (tmp_path / "work" / "gateway.log").read_text()
