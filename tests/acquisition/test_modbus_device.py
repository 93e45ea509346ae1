"""The Modbus driver and pollers against the simulated pump on loopback (real pymodbus peer)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest

from edgetwin.config.modbus import ModbusDeviceConfig, ModbusPointConfig
from edgetwin.core.types import Quality
from edgetwin.drivers.modbus import ModbusDevice
from edgetwin.protocols.modbus.codec import decode
from edgetwin.transports.modbus_tcp import ModbusTcpLink
from firmware_stubs.modbus.pump import PumpDevice, PumpServer
from tests.support.mosquitto import free_port

PUMP_POINTS = [
    ModbusPointConfig(name="speed", table="input", address=0, type="float32"),
    ModbusPointConfig(name="flow", table="input", address=2, type="float32"),
    ModbusPointConfig(name="discharge_pressure", table="input", address=4, type="float32"),
    ModbusPointConfig(name="suction_pressure", table="input", address=6, type="float32"),
    ModbusPointConfig(name="vibration", table="input", address=12, type="float32"),
    ModbusPointConfig(name="run_seconds", table="input", address=20, type="uint32", order="CDAB"),
    ModbusPointConfig(name="fluid_temperature", table="input", address=22, type="int16", scale=0.1),
    ModbusPointConfig(name="speed_setpoint", table="holding", address=100, type="uint16"),
    ModbusPointConfig(name="flow_limit", table="holding", address=102, type="float32"),
    ModbusPointConfig(name="running", table="discrete", address=0, type="bool"),
]


def device_cfg(
    unit: int = 1, points: list[ModbusPointConfig] | None = None, **kw: object
) -> ModbusDeviceConfig:
    return ModbusDeviceConfig(
        name=f"pump{unit}", bus="plant", unit=unit, points=points or PUMP_POINTS, **kw
    )  # type: ignore[arg-type]


@pytest.fixture
async def pumps() -> AsyncIterator[tuple[PumpServer, list[PumpDevice]]]:
    units = [PumpDevice(1, seed=1), PumpDevice(2, seed=2)]
    server = PumpServer(units, "127.0.0.1", 0)
    await server.start()
    try:
        yield server, units
    finally:
        await server.stop()


async def test_poll_decodes_what_was_served_in_one_request_per_table(
    pumps: tuple[PumpServer, list[PumpDevice]],
) -> None:
    server, (pump, _) = pumps
    link = ModbusTcpLink("127.0.0.1", server.port, timeout=1.0)
    dev = ModbusDevice(device_cfg(max_gap=8), link)
    try:
        result = await dev.poll()
    finally:
        link.close()
    # input 0..22 in one read, holding 100..103 in one, discrete 0 in one.
    assert link.transactions == 3
    assert result.answered
    assert (result.quality == Quality.GOOD).all(), result.quality
    served = {rec["table"]: rec for rec in pump.served}
    inp = served["input"]["registers"]
    assert served["input"]["address"] == 0
    assert served["input"]["count"] == 23
    v = dict(zip([p.name for p in PUMP_POINTS], result.values, strict=True))
    assert v["speed"] == decode(inp[0:2], "float32")
    assert v["vibration"] == decode(inp[12:14], "float32")
    assert v["run_seconds"] == inp[21] << 16 | inp[20]
    assert v["fluid_temperature"] == pytest.approx(decode([inp[22]], "int16") * 0.1)
    assert v["speed_setpoint"] == 2900
    assert v["flow_limit"] == pytest.approx(80.0)
    assert v["running"] == 1.0
    assert abs(v["speed"] - 2900) < 50


async def test_smaller_gap_splits_requests(pumps: tuple[PumpServer, list[PumpDevice]]) -> None:
    server, _ = pumps
    link = ModbusTcpLink("127.0.0.1", server.port, timeout=1.0)
    dev = ModbusDevice(device_cfg(max_gap=2), link)
    try:
        await dev.poll()
    finally:
        link.close()
    # input: 0..7, 12..13, 20..22 → three reads; plus holding and discrete.
    assert link.transactions == 5


async def test_failed_request_marks_only_its_points(
    pumps: tuple[PumpServer, list[PumpDevice]],
) -> None:
    server, _ = pumps
    points = [
        *PUMP_POINTS,
        ModbusPointConfig(name="missing", table="input", address=40, type="uint16"),
    ]
    link = ModbusTcpLink("127.0.0.1", server.port, timeout=1.0)
    dev = ModbusDevice(device_cfg(points=points, max_gap=8), link)
    try:
        result = await dev.poll()
    finally:
        link.close()
    assert result.quality[-1] == Quality.DEVICE_ERROR
    assert math.isnan(result.values[-1])
    assert (result.quality[:-1] == Quality.GOOD).all()
    assert result.answered
    assert "exception 02" in str(result.errors[0])


async def test_out_of_range_keeps_value_and_flags_it(
    pumps: tuple[PumpServer, list[PumpDevice]],
) -> None:
    server, _ = pumps
    points = [
        ModbusPointConfig(name="speed", table="input", address=0, type="float32", range=(0, 100))
    ]
    link = ModbusTcpLink("127.0.0.1", server.port, timeout=1.0)
    try:
        result = await ModbusDevice(device_cfg(points=points), link).poll()
    finally:
        link.close()
    assert result.quality[0] == Quality.OUT_OF_RANGE
    assert result.values[0] > 100


async def test_unreachable_endpoint_is_a_connection_error() -> None:
    link = ModbusTcpLink("127.0.0.1", free_port(), timeout=0.5)
    result = await ModbusDevice(device_cfg(), link).poll()
    assert not result.answered
    assert (result.quality == Quality.COMM_FAIL).all()
    assert "cannot connect" in str(result.errors[0])
