"""The chip emulators follow their register maps (what the drivers do not exercise)."""

from __future__ import annotations

import errno

import pytest

from edgetwin.protocols.i2c import ads1115, bme280, ina219, sht3x
from firmware_stubs.i2c import Ads1115Chip, Bme280Chip, FakeSMBus, Ina219Chip, Sht3xChip


class Clock:
    """A hand-driven clock, so conversion timing is exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def word(data: bytes) -> int:
    return int.from_bytes(data, "big")


def test_bme280_reset_values_and_forced_timing() -> None:
    clock = Clock()
    chip = Bme280Chip(clock=clock)
    chip.write(bytes([bme280.REG_ID]))
    assert chip.read(1) == b"\x60"
    chip.write(bytes([bme280.REG_DATA]))
    assert bme280.parse_data(chip.read(8)) == (0x80000, 0x80000, 0x8000)  # nothing measured
    clock.now += 1.0
    chip.write(bytes([bme280.REG_CTRL_MEAS, bme280.ctrl_meas(1, 1, bme280.MODE_FORCED)]))
    chip.write(bytes([bme280.REG_STATUS]))
    assert chip.read(1)[0] & bme280.STATUS_MEASURING
    clock.now += bme280.measurement_time(1, 1, 0, maximum=False)
    chip.write(bytes([bme280.REG_STATUS]))
    assert chip.read(2) == bytes([0x00, bme280.ctrl_meas(1, 1, bme280.MODE_SLEEP)])  # auto-sleep
    assert chip.measurements == 1


def test_bme280_ctrl_hum_waits_for_a_ctrl_meas_write() -> None:
    clock = Clock()
    chip = Bme280Chip(clock=clock)
    chip.write(bytes([bme280.REG_CTRL_MEAS, bme280.ctrl_meas(1, 1, bme280.MODE_SLEEP)]))
    chip.write(bytes([bme280.REG_CTRL_HUM, 0x01]))
    chip.write(bytes([bme280.REG_CTRL_MEAS, bme280.ctrl_meas(1, 1, bme280.MODE_FORCED)]))
    clock.now += 0.1
    chip.write(bytes([bme280.REG_DATA]))
    assert bme280.parse_data(chip.read(8))[2] != 0x8000  # humidity was measured


def test_bme280_normal_mode_keeps_measuring() -> None:
    clock = Clock()
    chip = Bme280Chip(clock=clock)
    chip.write(bytes([bme280.REG_CONFIG, 0b000 << 5]))  # t_standby 0.5 ms
    chip.write(bytes([bme280.REG_CTRL_MEAS, bme280.ctrl_meas(1, 1, bme280.MODE_NORMAL)]))
    for celsius in (10.0, 20.0):
        chip.set(temperature=celsius)
        clock.now += 0.05
        chip.write(bytes([bme280.REG_DATA]))
        reading = bme280.compensate(*bme280.parse_data(chip.read(8)), chip.calibration)
        assert reading.temperature == pytest.approx(celsius, abs=0.01)
    assert chip.measurements == 2


def test_sht3x_status_heater_and_no_data_nack() -> None:
    chip = Sht3xChip()
    with pytest.raises(OSError, match="Remote I/O") as info:
        chip.read(6)  # nothing to send
    assert info.value.errno == errno.EREMOTEIO
    chip.write(sht3x.command(sht3x.CMD_HEATER_ON))
    chip.write(sht3x.command(sht3x.CMD_CLEAR_STATUS))
    chip.write(sht3x.command(sht3x.CMD_READ_STATUS))
    ((status, ok),) = sht3x.words(chip.read(3))
    assert ok
    assert status == sht3x.STATUS_HEATER
    chip.write(b"\x12\x34")  # not a command
    chip.write(sht3x.command(sht3x.CMD_READ_STATUS))
    ((status, _),) = sht3x.words(chip.read(3))
    assert status & sht3x.STATUS_COMMAND_FAILED


def test_sht3x_measurement_nacks_until_done_then_answers_once() -> None:
    clock = Clock()
    chip = Sht3xChip(clock=clock)
    chip.set(temperature=25.0, humidity=50.0)
    chip.write(sht3x.command(sht3x.CMD_MEASURE["low"]))
    with pytest.raises(OSError, match="Remote I/O"):
        chip.read(6)
    clock.now += sht3x.DURATION_TYP["low"]
    (t, t_ok), (h, h_ok) = sht3x.words(chip.read(6))
    assert (t_ok, h_ok) == (True, True)
    assert sht3x.temperature(t) == pytest.approx(25.0, abs=0.002)
    assert sht3x.humidity(h) == pytest.approx(50.0, abs=0.001)
    with pytest.raises(OSError, match="Remote I/O"):
        chip.read(6)


def test_ads1115_os_bit_and_continuous_mode() -> None:
    clock = Clock()
    chip = Ads1115Chip(clock=clock)
    chip.set(ain1=0.5)
    for pointer, reset in [(1, 0x8583), (2, 0x8000), (3, 0x7FFF)]:
        chip.write(bytes([pointer]))
        assert word(chip.read(2)) == reset
    start = ads1115.single_shot("ain1", 2.048, 8)
    chip.write(bytes([ads1115.REG_CONFIG]) + start.to_bytes(2, "big"))
    assert not word(chip.read(2)) & ads1115.OS  # converting
    clock.now += 1 / 8
    assert word(chip.read(2)) & ads1115.OS
    continuous = start & ~ads1115.MODE_SINGLE & ~ads1115.OS
    chip.write(bytes([ads1115.REG_CONFIG]) + continuous.to_bytes(2, "big"))
    chip.set(ain1=0.25)
    clock.now += 3 / 8
    chip.write(bytes([ads1115.REG_CONVERSION]))
    assert ads1115.volts(word(chip.read(2)), 2.048) == pytest.approx(0.25, abs=1e-4)


def test_ina219_power_on_is_continuous_and_power_read_clears_cnvr() -> None:
    clock = Clock()
    chip = Ina219Chip(shunt_ohms=0.1, clock=clock)
    chip.set(current=0.3, bus_voltage=3.3)
    clock.now += 0.01
    chip.write(bytes([ina219.REG_BUS]))
    bus = ina219.bus(word(chip.read(2)))
    assert bus.ready
    assert bus.volts == pytest.approx(3.3, abs=0.002)
    chip.write(bytes([ina219.REG_CURRENT]))
    assert word(chip.read(2)) == 0  # no calibration yet: no current
    chip.write(bytes([ina219.REG_POWER]))
    chip.read(2)
    chip.write(bytes([ina219.REG_BUS]))
    assert not ina219.bus(word(chip.read(2))).ready
    chip.write(bytes([ina219.REG_CALIBRATION, 0x10, 0x01]))  # 4097: bit 0 is void
    chip.write(bytes([ina219.REG_CALIBRATION]))
    assert word(chip.read(2)) == 4096


def test_fake_bus_rejects_long_blocks_like_smbus2() -> None:
    fake = FakeSMBus({0x40: Ina219Chip()})
    with pytest.raises(ValueError, match="32"):
        fake.read_i2c_block_data(0x40, 0, 33)
    assert fake.read_word_data(0x40, ina219.REG_CONFIG) == 0x9F39  # SMBus words are LE
