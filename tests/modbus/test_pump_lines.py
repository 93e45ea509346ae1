"""The driver against the simulated PD-100 on every kind of line, several units per line.

Decoded values are checked against what the stub says it served; each cycle must take as
many transactions as the plan; corrupted answers are counted and dropped without harm.
"""

from __future__ import annotations

import pytest

from edgetwin.config.modbus import ModbusDeviceConfig, ModbusPointConfig
from edgetwin.core.types import Quality
from edgetwin.drivers.modbus import ModbusDevice
from edgetwin.errors import DeviceExceptionError, DeviceTimeoutError, ProtocolError
from edgetwin.protocols.modbus.codec import decode
from firmware_stubs.modbus.pump import PumpDevice
from tests.modbus.lines import KINDS, pump_line

POINTS = [
    ModbusPointConfig(name="speed", table="input", address=0, type="float32"),
    ModbusPointConfig(name="flow", table="input", address=2, type="float32"),
    ModbusPointConfig(name="power", table="input", address=14, type="float32"),
    ModbusPointConfig(name="run_seconds", table="input", address=20, type="uint32", order="CDAB"),
    ModbusPointConfig(name="fluid_temperature", table="input", address=22, type="int16", scale=0.1),
    ModbusPointConfig(name="running", table="input", address=23, type="bool", bit=0),
    ModbusPointConfig(name="remote", table="input", address=23, type="bool", bit=2),
    ModbusPointConfig(name="speed_setpoint", table="holding", address=100, type="uint16"),
    ModbusPointConfig(name="flow_limit", table="holding", address=102, type="float32"),
    ModbusPointConfig(name="run_coil", table="coil", address=0, type="bool"),
    ModbusPointConfig(name="fault", table="discrete", address=1, type="bool"),
]


def cfg(
    unit: int = 1, points: list[ModbusPointConfig] | None = None, **kw: object
) -> ModbusDeviceConfig:
    return ModbusDeviceConfig(
        name=f"pump{unit}", bus="line", unit=unit, points=points or POINTS, **kw
    )  # type: ignore[arg-type]


def pumps() -> list[PumpDevice]:
    return [PumpDevice(1, seed=1), PumpDevice(2, seed=2)]


@pytest.mark.parametrize("kind", KINDS)
async def test_two_units_on_one_line_decode_what_was_served(kind: str) -> None:
    units = pumps()
    async with pump_line(kind, units) as (_, link):
        for pump in units:
            dev = ModbusDevice(cfg(pump.unit), link)
            before = link.transactions
            result = await dev.poll()
            # coil 0, discrete 1, holding 100..103, input 0..3 and input 14..23 (the hole
            # 4..13 is longer than max_gap)
            assert link.transactions - before == len(dev.plan) == len(pump.served) == 5
            assert (result.quality == Quality.GOOD).all(), result.quality
            reads = {(r["table"], r["address"], r["count"]): r["registers"] for r in pump.served}
            assert set(reads) == {
                ("coil", 0, 1),
                ("discrete", 1, 1),
                ("holding", 100, 4),
                ("input", 0, 4),
                ("input", 14, 10),
            }
            inp = [*reads["input", 0, 4], *[0] * 10, *reads["input", 14, 10]]
            v = {p.name: result.values[i] for i, p in enumerate(POINTS)}
            assert v["speed"] == decode(inp[0:2], "float32")
            assert v["power"] == decode(inp[14:16], "float32")
            assert v["run_seconds"] == inp[21] << 16 | inp[20]
            assert v["fluid_temperature"] == pytest.approx(decode([inp[22]], "int16") * 0.1)
            assert (v["running"], v["remote"]) == (inp[23] & 1, inp[23] >> 2 & 1)
            assert v["speed_setpoint"] == 2900
            assert v["flow_limit"] == pytest.approx(80.0)
            assert (v["run_coil"], v["fault"]) == (1.0, 0.0)
        speeds = [next(r["registers"] for r in u.served if r["table"] == "input") for u in units]
        assert speeds[0] != speeds[1]  # two independent units answered


@pytest.mark.parametrize("kind", KINDS)
async def test_corrupted_answers_are_counted_and_dropped(kind: str) -> None:
    units = pumps()
    async with pump_line(kind, units) as (_, link):
        one, two = ModbusDevice(cfg(1), link), ModbusDevice(cfg(2), link)
        units[0].inject("garbage")
        for _ in range(2):
            bad = await one.poll()
            assert (bad.quality == Quality.DECODE_ERROR).all()
            assert all(isinstance(e, ProtocolError) for e in bad.errors)
            assert bad.failed == len(one.plan)  # a corrupt frame ends only its own request
        assert link.corrupt_frames == 2 * len(one.plan)
        assert not units[0].served  # nothing garbled counts as served
        good = await two.poll()  # the neighbour on the same line is not disturbed
        assert (good.quality == Quality.GOOD).all()
        units[0].clear("garbage")
        again = await one.poll()
        assert (again.quality == Quality.GOOD).all()
        assert link.corrupt_frames == 2 * len(one.plan)
        assert link.timeouts == 0


@pytest.mark.parametrize("kind", KINDS)
async def test_silent_unit_times_out_and_the_line_carries_on(kind: str) -> None:
    units = pumps()
    async with pump_line(kind, units, link_timeout=0.2) as (_, link):
        units[1].inject("no_answer")
        dead = await ModbusDevice(cfg(2), link).poll()
        # the first timeout ends the cycle: no more timeouts stacked on a shared line
        assert link.transactions == 1
        assert isinstance(dead.errors[0], DeviceTimeoutError)
        assert (dead.quality == Quality.COMM_FAIL).all()
        assert not dead.answered
        alive = await ModbusDevice(cfg(1), link).poll()
        assert (alive.quality == Quality.GOOD).all()
        await units[1].close_pending()


@pytest.mark.parametrize("kind", KINDS)
async def test_exception_answer_marks_the_points_device_error(kind: str) -> None:
    units = pumps()
    async with pump_line(kind, units) as (_, link):
        units[0].inject("exception:4")
        result = await ModbusDevice(cfg(1), link).poll()
    assert (result.quality == Quality.DEVICE_ERROR).all()
    assert {e.code for e in result.errors if isinstance(e, DeviceExceptionError)} == {4}
    assert result.answered is False


@pytest.mark.parametrize("kind", ["rtu", "tcp"])
async def test_forbidden_range_is_never_read_even_within_max_gap(kind: str) -> None:
    units = pumps()
    async with pump_line(kind, units) as (_, link):
        dev = ModbusDevice(cfg(1, max_gap=10, forbidden={"input": [(16, 19)]}), link)
        result = await dev.poll()
    assert (result.quality == Quality.GOOD).all()
    inputs = [(r["address"], r["count"]) for r in units[0].served if r["table"] == "input"]
    assert inputs == [(0, 16), (20, 4)]
    assert not any(a <= addr < a + n for a, n in inputs for addr in range(16, 20))


@pytest.mark.parametrize("kind", ["rtu", "rtu_tcp"])
async def test_quirks_one_point_per_request_max_registers_and_pause(kind: str) -> None:
    units = pumps()
    async with pump_line(kind, units) as (_, link):
        single = await ModbusDevice(
            cfg(1, one_point_per_request=True, request_pause=0.01), link
        ).poll()
        # one request per register span: the two status bits share register 23
        assert link.transactions == len(POINTS) - 1
        assert (single.quality == Quality.GOOD).all()
        units[0].served.clear()
        small = ModbusDevice(cfg(1, max_registers=4), link)
        assert (await small.poll()).quality.tolist() == [0] * len(POINTS)
        assert max(r["count"] for r in units[0].served if r["table"] != "coil") <= 4


@pytest.mark.parametrize("kind", ["rtu", "tcp"])
async def test_one_based_manual_addresses_map_through_the_offset(kind: str) -> None:
    # A manual that numbers registers and discrete inputs from 1 but coils from 0.
    offsets = {"input": -1, "holding": -1, "discrete": -1}
    one_based = [
        p if p.table == "coil" else p.model_copy(update={"address": p.address + 1}) for p in POINTS
    ]
    units = pumps()
    async with pump_line(kind, units) as (_, link):
        plain = await ModbusDevice(cfg(1), link).poll()
        n = len(units[0].served)
        shifted = await ModbusDevice(cfg(1, points=one_based, address_offset=offsets), link).poll()
    assert (shifted.quality == Quality.GOOD).all()
    served = [(r["table"], r["address"], r["count"]) for r in units[0].served]
    assert served[:n] == served[n:]  # the same wire addresses
    assert shifted.values[7] == plain.values[7] == 2900  # speed_setpoint
    assert shifted.values[9] == plain.values[9] == 1.0  # the coil
