"""The `edgetwin` command as a user runs it: exit codes, help, and located config problems."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgetwin import __version__
from tests.support.mosquitto import Mosquitto
from tests.support.procs import EXAMPLE_CONFIG, ROOT, Child, gateway_config, start_pump

BAD = sorted((ROOT / "tests" / "config" / "bad").glob("*.toml"))


def edgetwin(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetwin", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


def test_version() -> None:
    r = edgetwin("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"edgetwin {__version__}"


@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        ([], ["run", "check", "tail", "demo", "warmup"]),
        (["run"], ["--config", "SIGTERM"]),
        (["check"], ["--config", "Exit 0"]),
        (["tail"], ["--broker", "--json", "--count", "--timeout"]),
        (["demo"], ["--duration", "--broker"]),
        (["warmup"], ["Numba"]),
    ],
)
def test_help(command: list[str], mentions: list[str]) -> None:
    r = edgetwin(*command, "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for word in mentions:
        assert word in text


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["run"],
        ["tail", "--count", "0"],
        ["tail", "--timeout", "-1"],
        ["tail", "--broker", "http://x:1"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_2_with_a_message(args: list[str]) -> None:
    r = edgetwin(*args)
    assert r.returncode == 2
    assert "error:" in r.stderr


def test_check_accepts_the_example() -> None:
    r = edgetwin("check", "--config", str(EXAMPLE_CONFIG))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_check_locates_problems(path: Path) -> None:
    r = edgetwin("check", "--config", str(path))
    assert r.returncode == 2
    assert r.stdout == ""
    problems = [ln for ln in r.stderr.splitlines() if ln.startswith(str(path))]
    assert problems, r.stderr
    assert r.stderr.rstrip().endswith("found")
    marked = [i for i, ln in enumerate(path.read_text().splitlines(), 1) if "# <-" in ln]
    for line in marked:
        assert any(p.startswith(f"{path}:{line}:") for p in problems), (line, r.stderr)


def test_check_missing_file() -> None:
    r = edgetwin("check", "--config", "/nonexistent/edgetwin.toml")
    assert r.returncode == 2
    assert "/nonexistent/edgetwin.toml" in r.stderr


def test_run_with_bad_config_exits_2_without_touching_anything(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE_CONFIG.read_text().replace("interval = 0.5", "intervall = 0.5"))
    r = edgetwin("run", "--config", str(bad))
    assert r.returncode == 2
    assert "unknown key 'intervall'" in r.stderr
    assert "did you mean 'interval'" in r.stderr


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_tail_without_updates_exits_1(mosquitto: Mosquitto, loop: str) -> None:
    r = edgetwin(
        "tail",
        "--broker",
        mosquitto.url,
        "--count",
        "1",
        "--timeout",
        "1",
        env={"EDGETWIN_LOOP": loop},
    )
    assert r.returncode == 1
    assert "0 of 1 updates" in r.stderr


def test_an_unknown_event_loop_is_refused(mosquitto: Mosquitto) -> None:
    r = edgetwin("tail", "--broker", mosquitto.url, env={"EDGETWIN_LOOP": "trio"})
    assert r.returncode == 2
    assert "EDGETWIN_LOOP must be one of uvloop, asyncio, not 'trio'" in r.stderr


def test_check_probe_reads_every_point(tmp_path: Path) -> None:
    pump, port = start_pump(tmp_path)
    try:
        cfg = gateway_config(tmp_path, pump_port=port, broker_url="mqtt://127.0.0.1:1")
        r = edgetwin("check", "--config", str(cfg), "--probe")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "11 of 11 points read" in r.stdout
        for name in ("suction_pressure", "run_seconds", "fluid_temperature"):
            assert name in r.stdout
        pump.stop()
        r = edgetwin("check", "--config", str(cfg), "--probe")
        assert r.returncode == 1
        assert "0 of 11 points read" in r.stdout
        assert "cannot connect" in r.stdout
    finally:
        pump.stop()


def test_scan_modbus_finds_the_units_that_answer(tmp_path: Path) -> None:
    child = Child(
        [
            sys.executable,
            "-m",
            "firmware_stubs",
            "pump",
            "--port",
            "0",
            "--unit",
            "2",
            "--unit",
            "5",
        ],
        tmp_path / "pump.log",
        stdout_pipe=True,
    )
    try:
        assert child.proc.stdout is not None
        line = child.proc.stdout.readline().decode()
        port = int(line.rsplit(":", 1)[1])
        r = edgetwin("scan", "modbus", "--tcp", f"127.0.0.1:{port}", "--units", "1-6")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["2", "5"]
        assert "2 of 6 unit ids answered" in r.stderr
    finally:
        child.stop()


def test_scan_bad_arguments_and_missing_i2c_bus() -> None:
    r = edgetwin("scan", "modbus", "--tcp", "nohost", "--units", "1-2")
    assert r.returncode == 2
    assert "HOST:PORT" in r.stderr
    r = edgetwin("scan", "modbus", "--tcp", "127.0.0.1:1", "--units", "300")
    assert r.returncode == 2
    r = edgetwin("scan", "i2c", "--bus", "250")
    assert r.returncode == 1
    assert "i2c-250" in r.stderr
