"""The simulated PD-100 pump: physics, fault specs, and the Modbus TCP device seen by a client."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import signal
import statistics
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU

from edgetwin.protocols.modbus.codec import ByteOrder, ValueType, decode, encode
from firmware_stubs.__main__ import main as cli_main
from firmware_stubs.faults import Fault, FaultSchedule, ScheduledFault, parse_spec
from firmware_stubs.modbus.pump import PumpDevice, PumpServer
from firmware_stubs.physics.pump import PumpModel

ROOT = Path(__file__).resolve().parents[2]

# The register map as written in docs/dev/pump-register-map.md, transcribed independently of
# the implementation: name -> (address, type, order, scale, nominal, tolerance vs truth).
DOC_INPUTS: dict[str, tuple[int, ValueType, ByteOrder, float, float | None, float]] = {
    "speed": (0, "float32", "ABCD", 1.0, 2900.0, 5.0),
    "flow": (2, "float32", "ABCD", 1.0, 60.0, 1.5),
    "discharge_pressure": (4, "float32", "ABCD", 1.0, 4.5, 0.06),
    "suction_pressure": (6, "float32", "ABCD", 1.0, 0.8, 0.03),
    "motor_current": (8, "float32", "ABCD", 1.0, 22.0, 0.5),
    "motor_temperature": (10, "float32", "ABCD", 1.0, 65.0, 1.0),
    "vibration": (12, "float32", "ABCD", 1.0, 2.0, 0.3),
    "power": (14, "float32", "ABCD", 1.0, 11.0, 0.3),
    "run_seconds": (20, "uint32", "CDAB", 1.0, None, 1.0),
    "fluid_temperature": (22, "int16", "ABCD", 0.1, 20.0, 0.3),
    "status": (23, "uint16", "ABCD", 1.0, None, 0.0),
}
ANALOG = [n for n, spec in DOC_INPUTS.items() if spec[1] == "float32"]


def decode_inputs(words: list[int]) -> dict[str, float]:
    """Decode a full FC04 0..23 read with the documented map."""
    out = {}
    for name, (addr, vtype, order, scale, _, _) in DOC_INPUTS.items():
        n = 2 if vtype in {"float32", "uint32"} else 1
        out[name] = decode(words[addr : addr + n], vtype, order) * scale
    return out


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# --------------------------------------------------------------------------- fault specs


def test_fault_specs_from_the_brief_parse() -> None:
    assert parse_spec("cavitation@20") == ScheduledFault(Fault("cavitation"), 20.0, None)
    assert parse_spec("late:2.5@30+10") == ScheduledFault(Fault("late", "2.5"), 30.0, 10.0)
    late = parse_spec("late:2.5@30+10")
    assert late.fault.seconds == 2.5
    assert late.end == 40.0
    exc = parse_spec("exception:6@5+3")
    assert int(exc.fault.code) == 6
    assert parse_spec("disconnect@40+5").fault.kind == "comm"
    throttle = parse_spec("throttle:0.6@28+12")
    assert (throttle.fault.key, throttle.fault.kind, throttle.end) == (
        "throttle:0.6",
        "process",
        40,
    )
    stuck = parse_spec("sensor_stuck:flow@10")
    assert (stuck.fault.name, stuck.fault.arg, stuck.fault.kind) == (
        "sensor_stuck",
        "flow",
        "process",
    )


@pytest.mark.parametrize(
    ("spec", "token"),
    [
        ("cavitation", "@START"),
        ("explode@3", "explode"),
        ("late@3", "late"),
        ("late:soon@3", "soon"),
        ("late:-1@3", "-1"),
        ("late:nan@3", "nan"),
        ("exception:99@3", "99"),
        ("exception:x@3", "x"),
        ("cavitation:hard@3", "hard"),
        ("cavitation@", "''"),
        ("cavitation@-4", "-4"),
        ("cavitation@inf", "inf"),
        ("cavitation@5+0", "0"),
        ("cavitation@5+", "''"),
        ("cavitation@5+x", "x"),
        ("sensor_stuck@5", "sensor_stuck"),
        ("drift:Flow Rate@5", "Flow Rate"),
        ("throttle@5", "throttle"),
        ("throttle:half@5", "half"),
        ("throttle:nan@5", "nan"),
        ("throttle:1@5", "'1'"),
        ("throttle:0@5", "'0'"),
        ("throttle:-0.2@5", "-0.2"),
    ],
)
def test_bad_fault_specs_are_rejected_naming_the_token(spec: str, token: str) -> None:
    with pytest.raises(ValueError, match="fault spec") as info:
        parse_spec(spec)
    assert token in str(info.value)


@given(
    name=st.sampled_from(["cavitation", "bearing_wear", "no_answer", "garbage", "stuck"]),
    start=st.floats(0, 1e6, allow_nan=False),
    duration=st.none() | st.floats(0.001, 1e6, allow_nan=False),
)
def test_formatted_specs_parse_back(name: str, start: float, duration: float | None) -> None:
    entry = ScheduledFault(Fault(name), start, duration)
    again = parse_spec(str(entry))
    assert again.fault == entry.fault
    assert math.isclose(again.start, start, rel_tol=1e-5, abs_tol=1e-9)
    assert (again.duration is None) == (duration is None)


@given(st.text(max_size=30))
def test_arbitrary_text_either_parses_or_raises_value_error(text: str) -> None:
    try:
        entry = parse_spec(text)
    except ValueError:
        return
    assert entry.start >= 0.0


def test_schedule_answers_active_faults_and_transitions() -> None:
    schedule = FaultSchedule.parse(["cavitation@20", "late:1@5+10", "late:3@8+1"])
    assert schedule.active(4.9) == []
    assert schedule.active(5.0) == [Fault("late", "1")]
    assert schedule.active(8.5) == [Fault("late", "3")]  # same slot: the later start wins
    assert schedule.active(9.5) == [Fault("late", "1")]
    assert schedule.active(15.0) == []
    assert schedule.active(1e9) == [Fault("cavitation")]
    assert schedule.transitions(0, 30) == [5.0, 8.0, 9.0, 15.0, 20.0]
    assert schedule.transitions(8.0, 15.0) == [9.0]


# --------------------------------------------------------------------------- physics


def settle(model: PumpModel, seconds: float = 200.0) -> dict[str, float]:
    model.step(seconds)
    return model.truth()


def mean_measure(model: PumpModel, point: str, n: int = 50) -> float:
    return statistics.fmean(model.measure()[point] for _ in range(n))


def test_model_points_are_the_register_map_names() -> None:
    model = PumpModel(seed=1)
    assert set(model.truth()) == set(DOC_INPUTS)
    assert set(model.measure()) == set(DOC_INPUTS)


def test_model_starts_at_the_documented_nominal_operating_point() -> None:
    truth = PumpModel(seed=1).truth()
    for name, (*_, nominal, _tol) in DOC_INPUTS.items():
        if nominal is not None:
            assert truth[name] == pytest.approx(nominal, rel=0.05), name
    assert int(truth["status"]) & 0b101 == 0b101  # running, remote
    assert not int(truth["status"]) & 0b010


def test_same_seed_same_measurements_other_seed_differs() -> None:
    a, b, c = PumpModel(seed=3), PumpModel(seed=3), PumpModel(seed=4)
    for model in (a, b, c):
        model.step(7.3)
    seq_a = [a.measure() for _ in range(5)]
    assert seq_a == [b.measure() for _ in range(5)]
    assert seq_a != [c.measure() for _ in range(5)]


def test_measurement_noise_is_small_and_unbiased() -> None:
    model = PumpModel(seed=5)
    truth = model.truth()
    samples = [model.measure() for _ in range(400)]
    for name in ANALOG:
        values = [s[name] for s in samples]
        tol = DOC_INPUTS[name][5]
        assert statistics.fmean(values) == pytest.approx(truth[name], abs=tol / 3), name
        assert 0.0 < statistics.stdev(values) < tol, name


def test_speed_ramps_to_the_setpoint_and_the_hydraulics_follow() -> None:
    model = PumpModel(seed=0)
    before = model.truth()
    model.speed_setpoint = 1450.0
    model.step(1.0)
    assert 1450.0 < model.truth()["speed"] < 2900.0  # a ramp, not a jump
    after = settle(model)
    assert after["speed"] == pytest.approx(1450.0)
    for name in ("flow", "discharge_pressure", "motor_current", "power"):
        assert after[name] < before[name], name


def test_affinity_laws_flow_head_and_power_rise_with_speed() -> None:
    points = [settle(PumpModel(speed_setpoint=rpm)) for rpm in (1500.0, 2200.0, 2900.0, 3400.0)]
    for name in ("flow", "discharge_pressure", "power", "vibration"):
        series = [p[name] for p in points]
        assert series == sorted(series), name
    slow = settle(PumpModel(speed_setpoint=1450.0))
    nominal = PumpModel().truth()
    # power ~ speed^3 (more against static head): halving the speed cuts it by far more than 4x
    assert nominal["power"] / slow["power"] > 4.0
    lift = nominal["discharge_pressure"] - nominal["suction_pressure"]
    lift_slow = slow["discharge_pressure"] - slow["suction_pressure"]
    assert lift / lift_slow == pytest.approx(4.0, rel=0.5)  # head ~ speed^2


def test_motor_temperature_lags_the_load_with_a_time_constant_of_tens_of_seconds() -> None:
    model = PumpModel(seed=0)
    start = model.truth()["motor_temperature"]
    model.speed_setpoint = 2000.0
    final = settle(PumpModel(speed_setpoint=2000.0), 1000.0)["motor_temperature"]
    gap = start - final
    assert gap > 10.0

    def remaining() -> float:
        return (model.truth()["motor_temperature"] - final) / gap

    model.step(5.0)
    assert remaining() > 0.6
    model.step(18.0)  # ramp (~3 s) plus about one time constant
    assert 0.2 < remaining() < 0.55
    model.step(200.0)
    assert abs(remaining()) < 0.01


def test_run_seconds_count_only_while_running() -> None:
    model = PumpModel(seed=0)
    model.step(12.0)
    assert model.truth()["run_seconds"] == pytest.approx(12.0)
    model.run = False
    model.step(60.0)
    stopped = model.truth()
    assert stopped["speed"] == 0.0
    assert not int(stopped["status"]) & 1
    counted = stopped["run_seconds"]
    model.step(30.0)
    assert model.truth()["run_seconds"] == counted
    assert 12.0 < counted < 12.0 + 15.0  # plus the ramp-down


def test_fluid_temperature_varies_slowly_around_twenty() -> None:
    model = PumpModel(seed=0)
    temps = []
    for _ in range(60):
        model.step(60.0)
        temps.append(model.truth()["fluid_temperature"])
    assert all(17.0 < t < 23.0 for t in temps)
    assert max(temps) - min(temps) > 0.5
    assert max(abs(a - b) for a, b in itertools.pairwise(temps)) < 0.6


def test_cavitation_starves_suction_cuts_flow_and_shakes_the_pump() -> None:
    model = PumpModel(seed=2)
    normal = model.truth()
    calm = statistics.stdev(model.measure()["vibration"] for _ in range(200))
    model.add_fault("cavitation")
    model.step(6.0)
    cav = model.truth()
    assert cav["suction_pressure"] == pytest.approx(0.2, abs=0.05)
    assert 0.75 < cav["flow"] / normal["flow"] < 0.85
    assert cav["discharge_pressure"] < normal["discharge_pressure"] - 0.3
    assert cav["vibration"] == pytest.approx(6.0, abs=0.5)
    rough = statistics.stdev(model.measure()["vibration"] for _ in range(200))
    assert rough > 5 * calm
    shaky = statistics.stdev(model.measure()["discharge_pressure"] for _ in range(200))
    assert shaky > 5 * DOC_INPUTS["discharge_pressure"][5] / 6
    model.clear_fault("cavitation")
    restored = settle(model, 60.0)
    for name in ANALOG:
        assert restored[name] == pytest.approx(normal[name], rel=0.02, abs=0.02), name


def test_bearing_wear_ramps_vibration_and_heats_the_motor() -> None:
    model = PumpModel(seed=0)
    normal = model.truth()
    model.add_fault("bearing_wear")
    model.step(30.0)
    worn = model.truth()
    assert worn["vibration"] - normal["vibration"] == pytest.approx(3.0, rel=0.2)
    assert worn["motor_temperature"] > normal["motor_temperature"] + 0.5
    model.clear_fault("bearing_wear")
    restored = settle(model, 120.0)
    assert restored["vibration"] == pytest.approx(normal["vibration"], abs=0.05)
    assert restored["motor_temperature"] == pytest.approx(normal["motor_temperature"], abs=0.5)


def test_throttle_moves_the_pump_left_on_its_curve() -> None:
    model = PumpModel(seed=0)
    open_ = model.truth()
    points = []
    for fraction in (0.1, 0.2, 0.4, 0.6, 0.8):
        model.set_faults([f"throttle:{fraction}"])
        points.append(model.truth())
    first = points[0]
    assert first["flow"] < open_["flow"]
    assert first["discharge_pressure"] > open_["discharge_pressure"]
    assert first["motor_current"] < open_["motor_current"]
    assert first["power"] < open_["power"]
    for a, b in itertools.pairwise(points):  # the more closed, the further
        assert b["flow"] < a["flow"]
        assert b["discharge_pressure"] > a["discharge_pressure"]
        assert b["suction_pressure"] > a["suction_pressure"]
        assert b["motor_current"] < a["motor_current"]
        assert b["power"] < a["power"]
    assert points[3]["flow"] < 0.8 * open_["flow"]
    assert points[3]["speed"] == open_["speed"]
    assert points[3]["vibration"] == open_["vibration"]
    model.set_faults([])
    restored = settle(model, 120.0)
    for name in ANALOG:
        assert restored[name] == pytest.approx(open_[name], rel=1e-9, abs=1e-9), name


def test_the_most_closed_throttle_wins() -> None:
    model = PumpModel(seed=0)
    model.add_fault("throttle:0.6")
    hard = model.truth()
    model.add_fault("throttle:0.2")
    assert model.truth() == hard
    model.clear_fault("throttle:0.6")
    light = model.truth()
    assert light["flow"] > hard["flow"]
    assert model.faults == frozenset({"throttle:0.2"})


@pytest.mark.parametrize("arg", ["", "half", "nan", "inf", "0", "1", "-0.2", "1.5"])
def test_throttle_rejects_a_bad_fraction_naming_it(arg: str) -> None:
    model = PumpModel()
    with pytest.raises(ValueError, match="throttle") as info:
        model.add_fault(f"throttle:{arg}")
    assert repr(arg) in str(info.value)
    assert model.faults == frozenset()


def test_sensor_stuck_freezes_one_measurement_only() -> None:
    model = PumpModel(seed=0)
    model.add_fault("sensor_stuck:flow")
    frozen = model.measure()["flow"]
    model.speed_setpoint = 1500.0
    model.step(60.0)
    reading = model.measure()
    assert reading["flow"] == frozen
    assert model.truth()["flow"] < frozen - 10.0
    assert reading["speed"] == pytest.approx(1500.0, abs=5.0)
    model.clear_fault("sensor_stuck:flow")
    assert model.measure()["flow"] == pytest.approx(model.truth()["flow"], abs=1.5)


def test_drift_adds_a_growing_offset_to_one_sensor() -> None:
    model = PumpModel(seed=0)
    point = "discharge_pressure"
    model.add_fault(f"drift:{point}")
    offsets = []
    for _ in range(3):
        model.step(60.0)
        offsets.append(mean_measure(model, point) - model.truth()[point])
    assert offsets[0] > 0.1  # far beyond the 0.01 bar noise
    assert offsets[0] < offsets[1] < offsets[2]
    assert mean_measure(model, "flow") == pytest.approx(model.truth()["flow"], abs=0.3)
    model.clear_fault(f"drift:{point}")
    assert mean_measure(model, point) == pytest.approx(model.truth()[point], abs=0.01)


def test_model_rejects_bad_setpoints_and_faults() -> None:
    model = PumpModel()
    with pytest.raises(ValueError, match="3600"):
        model.speed_setpoint = 4000.0
    with pytest.raises(ValueError, match="nozzle"):
        model.add_fault("sensor_stuck:nozzle")
    with pytest.raises(ValueError, match="meltdown"):
        model.add_fault("meltdown")
    assert model.faults == frozenset()


@settings(max_examples=40, deadline=None)
@given(rpm=st.floats(0.0, 3600.0), seconds=st.floats(0.0, 120.0))
def test_any_setpoint_gives_finite_physical_values(rpm: float, seconds: float) -> None:
    model = PumpModel(seed=0, speed_setpoint=rpm)
    model.step(seconds)
    truth = model.truth()
    assert all(math.isfinite(v) for v in truth.values())
    for name in ("flow", "power", "motor_current", "vibration", "speed"):
        assert truth[name] >= 0.0, name
    assert truth["discharge_pressure"] >= truth["suction_pressure"]


# --------------------------------------------------------------------------- Modbus TCP

Connect = Callable[..., Awaitable[AsyncModbusTcpClient]]


@pytest.fixture
async def device(clock: FakeClock) -> PumpDevice:
    return PumpDevice(1, seed=11, clock=clock)


@pytest.fixture
async def server(device: PumpDevice) -> AsyncIterator[PumpServer]:
    srv = PumpServer(device, "127.0.0.1", 0)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def connect(server: PumpServer) -> AsyncIterator[Connect]:
    clients: list[AsyncModbusTcpClient] = []

    async def _connect(answer_within: float = 3.0) -> AsyncModbusTcpClient:
        client = AsyncModbusTcpClient(
            "127.0.0.1", port=server.port, timeout=answer_within, retries=0, reconnect_delay=0
        )
        clients.append(client)
        assert await client.connect()
        return client

    yield _connect
    for client in clients:
        client.close()


async def read_all(client: AsyncModbusTcpClient) -> list[int]:
    rr = await client.read_input_registers(0, count=24)
    assert not rr.isError(), rr
    return list(rr.registers)


async def wait_until(predicate: Callable[[], bool], bound: float = 3.0) -> None:
    async with asyncio.timeout(bound):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_port_zero_binds_a_real_port_and_stop_releases_it(clock: FakeClock) -> None:
    srv = PumpServer(PumpDevice(seed=1, clock=clock), "127.0.0.1", 0)
    await srv.start()
    port = srv.port
    assert port > 0
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    await writer.wait_closed()
    await srv.stop()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_every_map_entry_decodes_close_to_the_truth(
    device: PumpDevice, clock: FakeClock, connect: Connect
) -> None:
    client = await connect()
    clock.advance(42.0)
    values = decode_inputs(await read_all(client))
    truth = device.model.truth()
    for name, (*_, tol) in DOC_INPUTS.items():
        assert values[name] == pytest.approx(truth[name], abs=tol), name
    assert values["run_seconds"] == pytest.approx(42.0, abs=1.0)
    assert int(values["status"]) == 0b101


async def test_run_seconds_travel_low_word_first(device: PumpDevice, connect: Connect) -> None:
    client = await connect()
    device.model.run_seconds = 123_456.0
    rr = await client.read_input_registers(20, count=2)
    assert rr.registers == [123_456 & 0xFFFF, 123_456 >> 16]
    assert decode(rr.registers, "uint32", "CDAB") == 123_456
    assert decode(rr.registers, "uint32", "ABCD") != 123_456


async def test_fluid_temperature_is_int16_tenths(device: PumpDevice, connect: Connect) -> None:
    client = await connect()
    rr = await client.read_input_registers(22, count=1)
    raw = rr.registers[0]
    assert 150 < raw < 250  # 0.1 degC units around 20 degC
    assert decode([raw], "int16") * 0.1 == pytest.approx(
        device.model.truth()["fluid_temperature"], abs=0.3
    )


async def test_reserved_registers_read_zero(clock: FakeClock, connect: Connect) -> None:
    client = await connect()
    for _ in range(3):
        clock.advance(5.0)
        rr = await client.read_input_registers(16, count=4)
        assert rr.registers == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("table", "address", "count"),
    [
        ("input", 24, 1),
        ("input", 23, 2),
        ("input", 100, 1),
        ("holding", 99, 1),
        ("holding", 104, 1),
        ("holding", 0, 1),
        ("coil", 1, 1),
        ("coil", 0, 2),
        ("discrete", 2, 1),
        ("discrete", 1, 2),
    ],
)
async def test_unmapped_addresses_give_exception_02(
    connect: Connect, table: str, address: int, count: int
) -> None:
    client = await connect()
    read = {
        "input": client.read_input_registers,
        "holding": client.read_holding_registers,
        "coil": client.read_coils,
        "discrete": client.read_discrete_inputs,
    }[table]
    rr = await read(address, count=count)
    assert rr.isError()
    assert rr.exception_code == 2


async def test_holding_defaults_and_bits_match_the_map(connect: Connect) -> None:
    client = await connect()
    rr = await client.read_holding_registers(100, count=4)
    assert rr.registers[:2] == [2900, 1]
    assert decode(rr.registers[2:4], "float32") == pytest.approx(80.0)
    assert (await client.read_coils(0, count=1)).bits[0] is True
    assert (await client.read_discrete_inputs(0, count=2)).bits[:2] == [True, False]


async def test_setpoint_and_run_writes_drive_the_physics(
    device: PumpDevice, clock: FakeClock, connect: Connect
) -> None:
    client = await connect()
    flow_before = decode_inputs(await read_all(client))["flow"]
    assert not (await client.write_register(100, 1450)).isError()
    assert device.model.speed_setpoint == 1450.0
    clock.advance(1.0)
    ramping = decode_inputs(await read_all(client))["speed"]
    assert 1450.0 < ramping < 2890.0
    clock.advance(30.0)
    settled = decode_inputs(await read_all(client))
    assert settled["speed"] == pytest.approx(1450.0, abs=5.0)
    assert settled["flow"] < flow_before / 1.5

    assert not (await client.write_coil(0, False)).isError()
    assert (await client.read_holding_registers(101, count=1)).registers == [0]
    clock.advance(30.0)
    stopped = decode_inputs(await read_all(client))
    assert stopped["speed"] == pytest.approx(0.0, abs=5.0)
    assert not int(stopped["status"]) & 1
    assert (await client.read_discrete_inputs(0, count=1)).bits[0] is False

    assert not (await client.write_registers(100, [2900, 1])).isError()
    assert (await client.read_coils(0, count=1)).bits[0] is True
    clock.advance(30.0)
    assert decode_inputs(await read_all(client))["speed"] == pytest.approx(2900.0, abs=5.0)


async def test_flow_alarm_limit_write_sets_the_fault_bit(
    device: PumpDevice, connect: Connect
) -> None:
    client = await connect()
    assert not (await client.write_registers(102, encode(50.0, "float32"))).isError()
    assert device.model.flow_alarm_limit == 50.0
    assert (await client.read_discrete_inputs(1, count=1)).bits[0] is True
    assert int(decode_inputs(await read_all(client))["status"]) & 0b010


async def test_coil_and_holding_run_stay_one_value(device: PumpDevice, connect: Connect) -> None:
    client = await connect()
    assert not (await client.write_coil(0, False)).isError()
    assert not (await client.write_register(100, 1500)).isError()  # must not restart the pump
    assert device.model.run is False
    assert (await client.read_holding_registers(100, count=2)).registers == [1500, 0]
    assert not (await client.write_register(101, 1)).isError()
    assert (await client.read_coils(0, count=1)).bits[0] is True


async def test_out_of_range_writes_give_exception_03(device: PumpDevice, connect: Connect) -> None:
    client = await connect()
    rr = await client.write_register(100, 4000)
    assert rr.isError()
    assert rr.exception_code == 3
    assert (await client.write_register(101, 2)).exception_code == 3
    assert device.model.speed_setpoint == 2900.0
    assert device.model.run is True


@pytest.mark.parametrize("code", [6, 4])
async def test_exception_fault_answers_that_code(
    device: PumpDevice, connect: Connect, code: int
) -> None:
    client = await connect()
    device.inject(f"exception:{code}")
    rr = await client.read_input_registers(0, count=2)
    assert rr.isError()
    assert rr.exception_code == code
    device.clear("exception")
    assert not (await client.read_input_registers(0, count=2)).isError()


async def test_late_answer_beyond_the_client_timeout_times_out(
    device: PumpDevice, connect: Connect
) -> None:
    device.inject("late:5")
    client = await connect(answer_within=0.3)
    with pytest.raises(ModbusException):
        await client.read_input_registers(0, count=2)


async def test_late_answer_within_the_timeout_still_arrives(
    device: PumpDevice, connect: Connect
) -> None:
    device.inject("late:0.05")
    client = await connect(answer_within=5.0)
    rr = await client.read_input_registers(0, count=2)
    assert decode(rr.registers, "float32") == pytest.approx(2900.0, abs=5.0)


async def test_late_answers_keep_their_own_transaction_ids(
    device: PumpDevice, server: PumpServer
) -> None:
    device.inject("late:0.2")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(bytes.fromhex("0001 0000 0006 01 04 0000 0002"))  # FC04, tid 1
        await wait_until(lambda: device.pending_requests == 1)
        writer.write(bytes.fromhex("0002 0000 0006 01 03 0064 0001"))  # FC03, tid 2
        answers = {}
        for _ in range(2):
            header = await reader.readexactly(7)
            body = await reader.readexactly(int.from_bytes(header[4:6], "big") - 1)
            answers[int.from_bytes(header[:2], "big")] = body[0]
    finally:
        writer.close()
        await writer.wait_closed()
    assert answers == {1: 0x04, 2: 0x03}


async def test_no_answer_times_out(device: PumpDevice, connect: Connect) -> None:
    device.inject("no_answer")
    client = await connect(answer_within=0.3)
    with pytest.raises(ModbusException):
        await client.read_holding_registers(100, count=1)
    assert not any(r["table"] == "holding" for r in device.served)


async def test_disconnect_drops_the_link_and_reconnect_works_later(
    device: PumpDevice, connect: Connect
) -> None:
    client = await connect(answer_within=0.5)
    assert not (await client.read_input_registers(0, count=2)).isError()
    device.inject("disconnect")
    await wait_until(lambda: not client.connected)
    with pytest.raises(ModbusException):
        await client.read_input_registers(0, count=2)
    late_comer = await connect(answer_within=0.5)
    with pytest.raises(ModbusException):
        await late_comer.read_input_registers(0, count=2)
    device.clear("disconnect")
    assert await client.connect()
    assert not (await client.read_input_registers(0, count=2)).isError()


async def test_scheduled_disconnect_applies_without_traffic(clock: FakeClock) -> None:
    device = PumpDevice(seed=1, clock=clock, schedule=FaultSchedule.parse(["disconnect@10+5"]))
    async with PumpServer(device, "127.0.0.1", 0) as srv:
        client = AsyncModbusTcpClient(
            "127.0.0.1", port=srv.port, timeout=0.5, retries=0, reconnect_delay=0
        )
        try:
            assert await client.connect()
            clock.advance(12.0)
            await wait_until(lambda: not client.connected)
            clock.advance(5.0)
            assert await client.connect()
            assert not (await client.read_input_registers(0, count=2)).isError()
        finally:
            client.close()


async def test_garbage_makes_the_client_fail_to_decode(
    device: PumpDevice, connect: Connect
) -> None:
    device.inject("garbage")
    client = await connect(answer_within=0.5)
    with pytest.raises(ModbusException):
        await client.read_input_registers(0, count=2)
    assert not device.served
    device.clear("garbage")
    fresh = await connect()
    assert not (await fresh.read_input_registers(0, count=2)).isError()


async def test_garbage_frame_keeps_the_header_but_not_a_decodable_pdu(
    device: PumpDevice, server: PumpServer
) -> None:
    device.inject("garbage")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(bytes.fromhex("1234 0000 0006 01 04 0000 0004"))
        header = await reader.readexactly(7)
        assert header[:4] == bytes.fromhex("1234 0000")
        pdu = await reader.readexactly(int.from_bytes(header[4:6], "big") - 1)
    finally:
        writer.close()
        await writer.wait_closed()
    assert DecodePDU(False).decode(pdu) is None


@given(st.binary(min_size=9, max_size=260))
def test_garble_keeps_length_and_header_and_voids_the_pdu(packet: bytes) -> None:
    garbled = PumpDevice(seed=0).garble(packet)
    assert len(garbled) == len(packet)
    assert garbled[:7] == packet[:7]
    assert DecodePDU(False).decode(garbled[7:]) is None


@given(st.binary(min_size=5, max_size=256))  # the shortest RTU answer (an exception) is 5
def test_garble_rtu_keeps_the_frame_shape_and_breaks_the_crc(packet: bytes) -> None:
    garbled = PumpDevice(seed=0).garble_rtu(packet)
    assert len(garbled) == len(packet)
    assert garbled[:3] == packet[:3]  # address, function, byte count: the frame still parses
    assert not FramerRTU.check_CRC(garbled[:-2], int.from_bytes(garbled[-2:], "big"))


async def test_stuck_freezes_all_values(
    device: PumpDevice, clock: FakeClock, connect: Connect
) -> None:
    client = await connect()
    device.inject("stuck")
    first = await read_all(client)
    device.model.speed_setpoint = 1500.0
    clock.advance(60.0)
    assert await read_all(client) == first
    assert device.model.truth()["speed"] == pytest.approx(1500.0)
    device.clear("stuck")
    assert decode_inputs(await read_all(client))["speed"] == pytest.approx(1500.0, abs=5.0)


async def test_scheduled_exception_window(clock: FakeClock) -> None:
    device = PumpDevice(seed=2, clock=clock, schedule=FaultSchedule.parse(["exception:6@10+5"]))
    async with PumpServer(device, "127.0.0.1", 0) as srv:
        client = AsyncModbusTcpClient("127.0.0.1", port=srv.port, retries=0, reconnect_delay=0)
        try:
            assert await client.connect()
            codes = []
            for t in (5.0, 12.0, 16.0):
                clock.now = 1000.0 + t
                rr = await client.read_input_registers(0, count=2)
                codes.append(rr.exception_code if rr.isError() else 0)
            assert codes == [0, 6, 0]
        finally:
            client.close()


async def test_cavitation_is_visible_over_modbus(
    device: PumpDevice, clock: FakeClock, connect: Connect
) -> None:
    client = await connect()
    normal = decode_inputs(await read_all(client))
    device.inject("cavitation")
    clock.advance(10.0)
    cav = decode_inputs(await read_all(client))
    assert cav["suction_pressure"] < 0.35 < normal["suction_pressure"]
    assert cav["vibration"] > 4.0 > normal["vibration"]
    assert cav["flow"] < 0.9 * normal["flow"]
    assert cav["discharge_pressure"] < normal["discharge_pressure"]
    device.clear("cavitation")
    clock.advance(30.0)
    again = decode_inputs(await read_all(client))
    assert again["suction_pressure"] == pytest.approx(normal["suction_pressure"], abs=0.05)


async def test_scheduled_cavitation_starts_at_its_time(clock: FakeClock) -> None:
    device = PumpDevice(seed=3, clock=clock, schedule=FaultSchedule.parse(["cavitation@20"]))
    clock.advance(19.0)
    device.advance()
    assert device.model.truth()["suction_pressure"] > 0.75
    clock.advance(11.0)  # 10 s of cavitation, whatever slice the clock moved in
    device.advance()
    assert device.model.truth()["suction_pressure"] < 0.25


async def test_served_log_matches_what_the_client_decoded(clock: FakeClock, tmp_path: Path) -> None:
    log_path = tmp_path / "served.jsonl"
    device = PumpDevice(seed=4, clock=clock, served_log=log_path)
    async with PumpServer(device, "127.0.0.1", 0) as srv:
        client = AsyncModbusTcpClient("127.0.0.1", port=srv.port, retries=0, reconnect_delay=0)
        try:
            assert await client.connect()
            seen: list[tuple[str, int, int, list[int] | list[bool]]] = []
            for step in range(4):
                clock.advance(3.0)
                rr = await client.read_input_registers(step, count=24 - step)
                seen.append(("input", step, 24 - step, list(rr.registers)))
            rr = await client.read_holding_registers(100, count=4)
            seen.append(("holding", 100, 4, list(rr.registers)))
            rr = await client.read_coils(0, count=1)
            seen.append(("coil", 0, 1, list(rr.bits[:1])))
            rr = await client.read_discrete_inputs(0, count=2)
            seen.append(("discrete", 0, 2, list(rr.bits[:2])))
            assert (await client.read_input_registers(30, count=1)).isError()  # not served
        finally:
            client.close()
    served = [(r["table"], r["address"], r["count"], r["registers"]) for r in device.served]
    assert served == seen
    assert all(r["unit"] == 1 for r in device.served)
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert lines == list(device.served)


async def test_two_units_on_one_server_are_independent(clock: FakeClock) -> None:
    one, two = PumpDevice(1, seed=1, clock=clock), PumpDevice(2, seed=2, clock=clock)
    async with PumpServer([one, two], "127.0.0.1", 0) as srv:
        client = AsyncModbusTcpClient("127.0.0.1", port=srv.port, retries=0, reconnect_delay=0)
        try:
            assert await client.connect()
            assert not (await client.write_register(100, 1200, device_id=2)).isError()
            clock.advance(30.0)
            rr1 = await client.read_input_registers(0, count=2, device_id=1)
            rr2 = await client.read_input_registers(0, count=2, device_id=2)
        finally:
            client.close()
    assert decode(rr1.registers, "float32") == pytest.approx(2900.0, abs=5.0)
    assert decode(rr2.registers, "float32") == pytest.approx(1200.0, abs=5.0)
    assert [r["unit"] for r in one.served] == [1]
    assert [r["unit"] for r in two.served] == [2]


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    "argv",
    [
        ["pump", "--port", "70000"],
        ["pump", "--unit", "0"],
        ["pump", "--fault", "warp@3"],
        ["pump", "--fault", "drift:nozzle@3"],
        ["pump", "--fault", "throttle:1.2@3"],
        ["pump", "--bogus"],
        [],
    ],
)
def test_cli_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


async def test_cli_serves_until_sigterm_and_exits_0(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log_path = tmp_path / "served.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firmware_stubs",
        "pump",
        "--port",
        "0",
        "--served-log",
        str(log_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
        env=env,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith("listening modbus-tcp 127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        client = AsyncModbusTcpClient("127.0.0.1", port=port, retries=0, reconnect_delay=0)
        try:
            assert await client.connect()
            rr = await client.read_input_registers(0, count=2)
        finally:
            client.close()
        assert decode(rr.registers, "float32") == pytest.approx(2900.0, abs=10.0)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out == b""  # exactly one line was printed
    served = json.loads(log_path.read_text().splitlines()[0])
    assert served["registers"] == list(rr.registers)
