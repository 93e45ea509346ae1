"""I2cBus over the emulated bus: error mapping, one transfer at a time, a free event loop."""

from __future__ import annotations

import asyncio
import errno
import threading

import pytest

from edgetwin.errors import ConnectionLostError, DeviceTimeoutError, ProtocolError
from edgetwin.protocols.i2c import bme280, sht3x
from edgetwin.transports.i2c import I2cBus
from firmware_stubs.i2c import Bme280Chip, FakeSMBus, Sht3xChip


def bus_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("i2c-")]


async def test_register_reads_and_writes_reach_the_chip(fake: FakeSMBus, bus: I2cBus) -> None:
    chip = Bme280Chip()
    fake.chips[0x76] = chip
    assert await bus.read_byte_data(0x76, bme280.REG_ID) == 0x60
    block = await bus.read_block(0x76, bme280.REG_CALIB_A, bme280.CALIB_A_LEN)
    assert block == chip.calibration.to_bytes()[0]
    await bus.write_byte_data(0x76, bme280.REG_CTRL_HUM, 0x05)
    assert chip.regs[bme280.REG_CTRL_HUM] == 0x05
    await bus.write_quick(0x76)
    assert bus.transactions == 4


async def test_plain_transfers_carry_a_command_and_its_answer(fake: FakeSMBus, bus: I2cBus) -> None:
    fake.chips[0x44] = Sht3xChip()
    await asyncio.sleep(sht3x.SOFT_RESET_TIME)  # power-up
    await bus.write(0x44, sht3x.command(sht3x.CMD_READ_STATUS))
    answer = await bus.read(0x44, 3)
    assert list(sht3x.words(answer)) == [(sht3x.STATUS_AFTER_RESET, True)]


async def test_nack_is_a_device_timeout(fake: FakeSMBus, bus: I2cBus) -> None:
    with pytest.raises(DeviceTimeoutError, match="0x50 did not answer") as info:
        await bus.read_byte(0x50)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EREMOTEIO


async def test_lost_adapter_is_reopened_on_the_next_call(fake: FakeSMBus, bus: I2cBus) -> None:
    fake.chips[0x76] = Bme280Chip()
    await bus.read_byte_data(0x76, bme280.REG_ID)
    fake.error = errno.ENODEV
    with pytest.raises(ConnectionLostError):
        await bus.read_byte_data(0x76, bme280.REG_ID)
    assert fake.closed  # the transport dropped the handle
    with pytest.raises(ConnectionLostError, match="cannot open"):
        await bus.read_byte_data(0x76, bme280.REG_ID)
    fake.error = None
    assert await bus.read_byte_data(0x76, bme280.REG_ID) == 0x60
    assert fake.opens == 2


async def test_other_os_errors_are_protocol_errors(fake: FakeSMBus, bus: I2cBus) -> None:
    fake.chips[0x76] = Bme280Chip()
    await bus.read_byte_data(0x76, bme280.REG_ID)
    fake.error = errno.EINVAL
    with pytest.raises(ProtocolError, match="Invalid argument"):
        await bus.read_block(0x76, 0x88, 2)


async def test_a_missing_adapter_is_a_lost_connection() -> None:
    def opener(n: int) -> FakeSMBus:
        raise FileNotFoundError(errno.ENOENT, f"No such file or directory: '/dev/i2c-{n}'")

    missing = I2cBus(7, opener=opener)
    try:
        with pytest.raises(ConnectionLostError, match="cannot open"):
            await missing.read_byte(0x40)
    finally:
        missing.close()


async def test_the_event_loop_keeps_running_while_a_chip_stretches(
    fake: FakeSMBus, bus: I2cBus
) -> None:
    chip = Bme280Chip()
    chip.faults.delay = 0.2  # every transfer blocks its thread for 0.2 s
    fake.chips[0x76] = chip
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker(), name="ticker")
    try:
        await bus.read_byte_data(0x76, bme280.REG_ID)
        before = ticks
        await bus.read_byte_data(0x76, bme280.REG_ID)
        during = ticks - before
    finally:
        done.set()
        await task
    # A blocked loop would not tick at all during the 0.2 s call.
    assert during >= 5


async def test_concurrent_callers_never_overlap_on_the_handle(fake: FakeSMBus, bus: I2cBus) -> None:
    chips = {0x76: Bme280Chip(), 0x77: Bme280Chip(chip_id=0x58)}
    for chip in chips.values():
        chip.faults.delay = 0.005
    fake.chips.update(chips)
    ids = await asyncio.gather(
        *(bus.read_byte_data(addr, bme280.REG_ID) for addr in [0x76, 0x77] * 10)
    )
    assert ids == [0x60, 0x58] * 10
    assert fake.max_active == 1
    assert len(bus_threads()) == 1


async def test_a_call_that_overruns_the_timeout_fails_and_later_calls_succeed(
    fake: FakeSMBus,
) -> None:
    chip = Bme280Chip()
    fake.chips[0x76] = chip
    slow = I2cBus(1, timeout=0.05, opener=fake.opener)
    try:
        chip.faults.delay = 0.3
        with pytest.raises(DeviceTimeoutError, match=r"took longer than 0\.05 s"):
            await slow.read_byte_data(0x76, bme280.REG_ID)
        chip.faults.delay = 0.0
        slow.timeout = 1.0  # the next call waits behind the stuck one
        assert await slow.read_byte_data(0x76, bme280.REG_ID) == 0x60
        assert fake.max_active == 1
    finally:
        slow.close()


async def test_close_ends_the_worker_and_a_later_call_reopens(fake: FakeSMBus, bus: I2cBus) -> None:
    fake.chips[0x76] = Bme280Chip()
    await bus.read_byte_data(0x76, bme280.REG_ID)
    (worker,) = bus_threads()
    bus.close()
    worker.join(timeout=2.0)
    assert not worker.is_alive()
    assert fake.closed
    assert await bus.read_byte_data(0x76, bme280.REG_ID) == 0x60
    assert fake.opens == 2


def test_nothing_opens_before_the_first_call(fake: FakeSMBus) -> None:
    bus = I2cBus(1, opener=fake.opener)
    bus.close()
    assert fake.opens == 0
    assert not bus_threads()
