"""`python -m firmware_stubs pump --rtu / --rtu-tcp`: the line it prints is the line to open."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from edgetwin.config.modbus import ModbusDeviceConfig, ModbusPointConfig
from edgetwin.core.types import Quality
from edgetwin.drivers.modbus import ModbusDevice
from edgetwin.scan.modbus import scan_units
from edgetwin.transports.modbus_serial import ModbusRtuTcpLink
from edgetwin.transports.modbus_tcp import ModbusLink
from firmware_stubs.__main__ import main as cli_main
from tests.modbus.lines import rtu_link

ROOT = Path(__file__).resolve().parents[2]
POINTS = [ModbusPointConfig(name="speed", table="input", address=0, type="float32")]


@pytest.mark.parametrize(
    ("flag", "pattern"),
    [
        ("--rtu", r"listening modbus-rtu (/dev/\S+)"),
        ("--rtu-tcp", r"listening modbus-rtu-tcp 127\.0\.0\.1:(\d+)"),
    ],
)
async def test_stub_serves_several_units_on_one_line(flag: str, pattern: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "firmware_stubs", "pump", flag, "--port", "0"],
        *["--unit", "3", "--unit", "7", "--fault", "garbage@0"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    link: ModbusLink | None = None
    try:
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode().strip()
        m = re.fullmatch(pattern, line)
        assert m, line
        link = (
            rtu_link(m[1])
            if flag == "--rtu"
            else ModbusRtuTcpLink("127.0.0.1", int(m[1]), timeout=0.5)
        )
        assert await scan_units(link, range(1, 9), probe=("holding", 100), answer_within=0.2) == [
            3,
            7,
        ]
        # The scheduled fault garbles every data answer: a wrong CRC, counted and dropped.
        result = await ModbusDevice(
            ModbusDeviceConfig(name="p", bus="b", unit=7, points=POINTS), link
        ).poll()
        assert result.quality[0] == Quality.DECODE_ERROR
        assert link.corrupt_frames >= 2
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    finally:
        if link is not None:
            link.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out == b""


def test_stub_refuses_a_repeated_unit_and_two_framings(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["pump", "--unit", "2", "--unit", "2"], ["pump", "--rtu", "--rtu-tcp"]):
        with pytest.raises(SystemExit) as info:
            cli_main(argv)
        assert info.value.code == 2
        assert "error:" in capsys.readouterr().err
