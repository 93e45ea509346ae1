"""The per-bus scheduler against simulated pumps on one Modbus TCP endpoint (real pymodbus peer)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import AsyncIterator

import pytest

from edgetwin.acquisition.scheduler import BusScheduler, DeviceSpec
from edgetwin.config.modbus import ModbusDeviceConfig, ModbusPointConfig
from edgetwin.core.types import DeviceReading, Quality
from edgetwin.drivers.modbus import ModbusDevice
from edgetwin.transports.modbus_tcp import ModbusTcpLink
from firmware_stubs.modbus.pump import PumpDevice, PumpServer

POINTS = [
    ModbusPointConfig(name="speed", table="input", address=0, type="float32"),
    ModbusPointConfig(name="flow", table="input", address=2, type="float32"),
    ModbusPointConfig(name="vibration", table="input", address=12, type="float32", interval=0.3),
    ModbusPointConfig(name="setpoint", table="holding", address=100, type="uint16", interval=0.3),
]


def device(unit: int, link: ModbusTcpLink) -> DeviceSpec:
    cfg = ModbusDeviceConfig(
        name=f"pump{unit}", bus="plant", unit=unit, interval=0.1, points=POINTS
    )
    return DeviceSpec(
        ModbusDevice(cfg, link), [p.interval or cfg.interval for p in cfg.points], probe_max=0.5
    )


@pytest.fixture
async def line() -> AsyncIterator[tuple[PumpServer, list[PumpDevice], ModbusTcpLink]]:
    units = [PumpDevice(1, seed=1), PumpDevice(2, seed=2)]
    server = PumpServer(units, "127.0.0.1", 0)
    await server.start()
    link = ModbusTcpLink("127.0.0.1", server.port, timeout=0.3)
    try:
        yield server, units, link
    finally:
        link.close()
        await server.stop()


async def run_for(sched: BusScheduler, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task


async def test_multi_rate_groups_poll_at_their_own_periods(line) -> None:  # type: ignore[no-untyped-def]
    _, _, link = line
    readings: list[DeviceReading] = []
    sched = BusScheduler("plant", [device(1, link)], readings.append)
    await run_for(sched, 1.6)
    by_group = Counter(tuple(r.index.tolist()) for r in readings if r.index is not None)
    fast, slow = by_group[(0, 1)], by_group[(2, 3)]
    # 0.1 s vs 0.3 s periods: the fast group is polled about three times as often.
    assert fast >= 2 * slow >= 6, by_group
    assert all((r.quality == Quality.GOOD).all() for r in readings)
    assert all(len(r.values) == len(r.index) for r in readings if r.index is not None)
    # A poll of every point in order (a probe) says so with index None.
    assert all(len(r.values) == len(POINTS) for r in readings if r.index is None)


async def test_a_single_rate_device_reads_every_point_with_index_none(line) -> None:  # type: ignore[no-untyped-def]
    _, _, link = line
    cfg = ModbusDeviceConfig(
        name="pump1",
        bus="plant",
        unit=1,
        interval=0.1,
        points=[p.model_copy(update={"interval": None}) for p in POINTS],
    )
    spec = DeviceSpec(ModbusDevice(cfg, link), [0.1] * len(POINTS), probe_max=0.5)
    readings: list[DeviceReading] = []
    await run_for(BusScheduler("plant", [spec], readings.append), 0.5)
    assert len(readings) >= 3
    assert all(r.index is None and len(r.values) == len(POINTS) for r in readings)
    assert all((r.quality == Quality.GOOD).all() for r in readings)


async def test_dead_unit_trips_its_breaker_and_neighbour_keeps_its_period(
    line,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    _, (_, pump2), link = line
    caplog.set_level(logging.INFO, logger="edgetwin.acquisition.scheduler")
    readings: list[DeviceReading] = []
    stamps: dict[str, list[float]] = defaultdict(list)
    loop = asyncio.get_running_loop()

    def sink(r: DeviceReading) -> None:
        readings.append(r)
        stamps[r.device].append(loop.time())

    changes: list[tuple[str, bool]] = []
    sched = BusScheduler(
        "plant",
        [device(1, link), device(2, link)],
        sink,
        on_change=lambda d, online, _r: changes.append((d, online)),
    )
    pump2.inject("no_answer")
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    await asyncio.sleep(3.0)
    pump2.clear("no_answer")
    await asyncio.sleep(1.5)
    stop.set()
    await task

    dead = sched.devices["pump2"].health
    # While dead, pump2 was only probed: far fewer attempts than its 0.1 s period would give.
    failed = [r for r in readings if r.device == "pump2" and (r.quality == Quality.COMM_FAIL).all()]
    assert 2 <= len(failed) <= 12, len(failed)
    assert dead.online is True  # recovered after the fault cleared
    assert changes.count(("pump2", False)) == 1
    assert ("pump2", True) in changes[changes.index(("pump2", False)) :]
    # Between two polls of pump1 the bus spent at most one timeout on pump2: never two
    # failed pump2 attempts in a row, so pump1's period stretches by one timeout at most.
    run = 0
    for r in readings:
        if r.device == "pump1":
            run = 0
        elif (r.quality == Quality.COMM_FAIL).all():
            run += 1
            assert run <= 1, "two timeouts of the dead unit back to back"
    assert len(stamps["pump1"]) >= 15
    lost = [r for r in caplog.records if "pump2: lost" in r.getMessage()]
    assert len(lost) == 1
    assert len([r for r in caplog.records if "pump2: recovered" in r.getMessage()]) == 1


async def test_writes_jump_the_queue_and_reach_the_device(line) -> None:  # type: ignore[no-untyped-def]
    _, (pump1, _), link = line
    readings: list[DeviceReading] = []
    sched = BusScheduler("plant", [device(1, link)], readings.append)
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    try:
        await asyncio.sleep(0.3)
        if not hasattr(sched.devices["pump1"].spec.device, "write"):
            pytest.skip("the Modbus driver has no write() yet")
        await asyncio.wait_for(sched.write("pump1", 3, 1500), 2)
        assert pump1.model.speed_setpoint == 1500
        with pytest.raises(KeyError):
            await sched.write("nope", 0, 1)
    finally:
        stop.set()
        await task
