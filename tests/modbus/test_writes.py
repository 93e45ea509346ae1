"""Writes through the driver reach the simulated pump's physics, with the right function codes."""

from __future__ import annotations

import math

import pytest

from edgetwin.config.modbus import ModbusDeviceConfig, ModbusPointConfig
from edgetwin.drivers.modbus import ModbusDevice, WriteRejectedError
from edgetwin.errors import DeviceExceptionError, DeviceTimeoutError, EdgetwinError
from firmware_stubs.modbus.pump import PumpDevice
from tests.modbus.lines import KINDS, pump_line

POINTS = [
    ModbusPointConfig(name="speed", table="input", address=0, type="float32"),
    ModbusPointConfig(name="speed_setpoint", table="holding", address=100, type="uint16"),
    # the same register in thousands of rpm: the write must undo the scale
    ModbusPointConfig(
        name="setpoint_krpm", table="holding", address=100, type="uint16", scale=0.001
    ),
    ModbusPointConfig(name="run_bit", table="holding", address=101, type="bool", bit=0),
    ModbusPointConfig(name="flow_limit", table="holding", address=102, type="float32"),
    ModbusPointConfig(name="run", table="coil", address=0, type="bool"),
    ModbusPointConfig(
        name="bounded", table="holding", address=100, type="uint16", range=(500.0, 3000.0)
    ),
    ModbusPointConfig(name="fault", table="discrete", address=1, type="bool"),
]
SETPOINT, KRPM, RUN_BIT, LIMIT, RUN, BOUNDED, FAULT = 1, 2, 3, 4, 5, 6, 7


def device_cfg(**kw: object) -> ModbusDeviceConfig:
    return ModbusDeviceConfig(name="pump", bus="line", points=POINTS, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
async def test_setpoint_change_reaches_the_physics(kind: str) -> None:
    pump = PumpDevice(1, seed=1)
    async with pump_line(kind, [pump]) as (_, link):
        dev = ModbusDevice(device_cfg(), link)
        await dev.write(SETPOINT, 1450)
        assert pump.model.speed_setpoint == 1450.0
        await dev.write(KRPM, 1.2)
        assert pump.model.speed_setpoint == 1200.0
        await dev.write(LIMIT, 55.5)
        assert pump.model.flow_alarm_limit == 55.5
        assert (await dev.poll([LIMIT])).values[LIMIT] == 55.5
        await dev.write(RUN, 0)
        assert pump.model.run is False
        await dev.write(RUN_BIT, 1)  # read-modify-write of holding 101, bit 0
        assert pump.model.run is True
    assert list(pump.writes) == [
        (6, 100, [1450]),
        (6, 100, [1200]),
        (16, 102, [0x425E, 0x0000]),  # 55.5 as float32: 42 5E 00 00
        (5, 0, [0]),
        (6, 101, [1]),
    ]


@pytest.mark.parametrize("kind", ["tcp", "rtu"])
async def test_write_multiple_quirk_uses_fc15_and_fc16_only(kind: str) -> None:
    pump = PumpDevice(1, seed=1)
    async with pump_line(kind, [pump]) as (_, link):
        dev = ModbusDevice(device_cfg(write_multiple=True), link)
        await dev.write(SETPOINT, 2000)
        await dev.write(RUN, 0)
    assert list(pump.writes) == [(16, 100, [2000]), (15, 0, [0])]
    assert pump.model.speed_setpoint == 2000.0
    assert pump.model.run is False


@pytest.mark.parametrize(
    ("point", "value", "why"),
    [
        (0, 1.0, "read-only"),
        (FAULT, 1.0, "read-only"),
        (SETPOINT, 70000, "does not fit"),
        (SETPOINT, -1, "does not fit"),
        (SETPOINT, math.nan, "cannot write"),
        (LIMIT, math.inf, "cannot write"),
        (BOUNDED, 3500, "outside its range"),
        (99, 1.0, "no point"),
    ],
)
async def test_writes_refused_before_the_bus(point: int, value: float, why: str) -> None:
    pump = PumpDevice(1, seed=1)
    async with pump_line("tcp", [pump]) as (_, link):
        dev = ModbusDevice(device_cfg(), link)
        with pytest.raises(WriteRejectedError, match=why) as info:
            await dev.write(point, value)
        assert link.transactions == 0
    assert isinstance(info.value, EdgetwinError)
    assert pump.model.speed_setpoint == 2900.0


@pytest.mark.parametrize("kind", ["tcp", "rtu"])
async def test_device_refusal_and_silence_raise_edgetwin_errors(kind: str) -> None:
    pump = PumpDevice(1, seed=1)
    async with pump_line(kind, [pump], link_timeout=0.2) as (_, link):
        dev = ModbusDevice(device_cfg(), link)
        with pytest.raises(DeviceExceptionError) as info:
            await dev.write(SETPOINT, 3700)  # above the drive's 3600 rpm: exception 03
        assert info.value.code == 3
        pump.inject("no_answer")
        with pytest.raises(DeviceTimeoutError):
            await dev.write(SETPOINT, 1000)
        await pump.close_pending()
    assert pump.model.speed_setpoint == 2900.0


async def test_string_points_are_written_with_write_text() -> None:
    points = [
        ModbusPointConfig(
            name="tag", table="holding", address=102, type="string", length=4, model="none"
        )
    ]
    pump = PumpDevice(1, seed=1)
    async with pump_line("tcp", [pump]) as (_, link):
        dev = ModbusDevice(ModbusDeviceConfig(name="p", bus="line", points=points), link)
        with pytest.raises(WriteRejectedError, match="write_text"):
            await dev.write(0, 1.0)
        with pytest.raises(WriteRejectedError, match="holds 4"):
            await dev.write_text(0, "TOO LONG")
        await dev.write_text(0, "B@")  # 42 40 00 00 is float32 48.0 to the pump
        assert pump.model.flow_alarm_limit == 48.0
        await dev.poll()
        assert dev.texts == {0: "B@"}
