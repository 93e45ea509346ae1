"""Each chip driver against its register-level emulator, through the real I2cBus."""

from __future__ import annotations

import asyncio
import logging
import math

import numpy as np
import pytest

from edgetwin.core.types import Quality
from edgetwin.drivers.i2c import (
    Ads1115Device,
    Bme280Device,
    Ina219Device,
    Sht3xDevice,
    make_chip,
)
from edgetwin.errors import DeviceTimeoutError, ProtocolError
from edgetwin.protocols.i2c import ads1115, bme280, ina219, sht3x
from edgetwin.transports.i2c import I2cBus
from firmware_stubs.i2c import (
    DATASHEET_CALIBRATION,
    Ads1115Chip,
    Bme280Chip,
    FakeSMBus,
    Ina219Chip,
    Sht3xChip,
)
from tests.i2c.support import device_cfg

BME_POINTS = ("temperature", "pressure", "humidity")
# Another plausible set of trimming words (a different part): the driver must use the chip's.
OTHER_CALIBRATION = bme280.Calibration(
    t1=28009, t2=26318, t3=50,
    p1=38013, p2=-10647, p3=3024, p4=7441, p5=-130, p6=-7, p7=9900, p8=-10230, p9=4285,
    h1=75, h2=346, h3=0, h4=328, h5=-5, h6=30,
)  # fmt: skip
# Datasheet resolutions (BME280 tables 13, 14; humidity 0.008 %RH) plus the output LSBs.
BME_TOLERANCE = {
    1: {"temperature": 0.005 + 0.005, "pressure": 2.62 + 0.01, "humidity": 0.01},
    16: {"temperature": 0.005 + 0.0025, "pressure": 0.16 + 0.01, "humidity": 0.01},
}
SHT_TOLERANCE = {"temperature": 175 / 65535, "humidity": 100 / 65535}


def bme(bus: I2cBus, address: int = 0x76, osrs: int = 1, **settings: object) -> Bme280Device:
    oversampling = {"temperature": osrs, "pressure": osrs, "humidity": osrs}
    cfg = device_cfg("bme280", address, *BME_POINTS, oversampling=oversampling, **settings)
    device = make_chip(cfg, bus)
    assert isinstance(device, Bme280Device)
    return device


def assert_good(result_quality: np.ndarray) -> None:
    assert [Quality(int(q)) for q in result_quality] == [Quality.GOOD] * len(result_quality)


# -- BME280 --------------------------------------------------------------------------------


@pytest.mark.parametrize("osrs", [1, 16])
async def test_bme280_reads_the_true_values(fake: FakeSMBus, bus: I2cBus, osrs: int) -> None:
    chip = Bme280Chip()
    fake.chips[0x76] = chip
    device = bme(bus, osrs=osrs)
    for truth in [(23.456, 98765.4, 56.78), (-12.3, 70123.0, 3.2), (61.07, 108000.0, 97.5)]:
        chip.set(**dict(zip(BME_POINTS, truth, strict=True)))
        result = await device.poll()
        assert_good(result.quality)
        for value, name, true in zip(result.values, BME_POINTS, truth, strict=True):
            assert value == pytest.approx(true, abs=BME_TOLERANCE[osrs][name]), name
    assert result.requests == result.ok == 1
    assert chip.measurements == 3  # one forced measurement per poll


async def test_bme280_uses_the_calibration_read_from_the_chip(fake: FakeSMBus, bus: I2cBus) -> None:
    chips = {0x76: Bme280Chip(DATASHEET_CALIBRATION), 0x77: Bme280Chip(OTHER_CALIBRATION)}
    fake.chips.update(chips)
    for address, chip in chips.items():
        chip.set(temperature=18.25, pressure=95000.0, humidity=33.3)
        device = bme(bus, address)
        result = await device.poll()
        assert device.calibration == chip.calibration
        assert result.values == pytest.approx([18.25, 95000.0, 33.3], abs=2.7)
        assert result.values[0] == pytest.approx(18.25, abs=0.01)


async def test_bme280_programs_oversampling_and_skips_what_is_not_configured(
    fake: FakeSMBus, bus: I2cBus
) -> None:
    chip = Bme280Chip()
    fake.chips[0x76] = chip
    both = device_cfg("bme280", 0x76, "pressure", oversampling={"temperature": 2, "pressure": 16})
    result = await make_chip(both, bus).poll()
    assert_good(result.quality)
    meas = chip.regs[bme280.REG_CTRL_MEAS]
    assert (meas >> 5, meas >> 2 & 7) == (0b010, 0b101)  # x2 temperature, x16 pressure
    assert chip.regs[bme280.REG_CTRL_HUM] == 0  # humidity is not configured: skipped
    assert bme280.parse_data(bytes(chip.regs[0xF7:0xFF]))[2] == bme280.SKIPPED_16BIT


async def test_bme280_points_scale_offset_and_range(fake: FakeSMBus, bus: I2cBus) -> None:
    chip = Bme280Chip()
    chip.set(temperature=25.0, pressure=101325.0)
    fake.chips[0x76] = chip
    cfg = device_cfg(
        "bme280",
        0x76,
        {"name": "fahrenheit", "quantity": "temperature", "scale": 1.8, "offset": 32.0},
        {"name": "hpa", "quantity": "pressure", "scale": 0.01, "range": [950.0, 1000.0]},
    )
    result = await make_chip(cfg, bus).poll()
    assert result.values[0] == pytest.approx(77.0, abs=0.02)
    assert result.values[1] == pytest.approx(1013.25, abs=0.03)  # kept, but flagged
    assert list(result.quality) == [Quality.GOOD, Quality.OUT_OF_RANGE]


async def test_bme280_another_chip_id_is_a_decode_error(fake: FakeSMBus, bus: I2cBus) -> None:
    fake.chips[0x76] = Bme280Chip(chip_id=0x58)
    result = await bme(bus).poll()
    assert list(result.quality) == [Quality.DECODE_ERROR] * 3
    assert np.isnan(result.values).all()
    assert isinstance(result.errors[0], ProtocolError)
    assert "BMP280" in str(result.errors[0])


async def test_bme280_survives_a_chip_reset_between_polls(fake: FakeSMBus, bus: I2cBus) -> None:
    chip = Bme280Chip()
    chip.set(humidity=61.0)
    fake.chips[0x76] = chip
    device = bme(bus)
    await device.poll()
    chip.write(bytes([bme280.REG_RESET, bme280.RESET_WORD]))  # e.g. a brown-out
    await asyncio.sleep(bme280.STARTUP_TIME)
    result = await device.poll()
    assert_good(result.quality)
    assert result.values[2] == pytest.approx(61.0, abs=0.01)


async def test_bme280_conversion_never_ready_is_comm_fail_then_recovers(
    fake: FakeSMBus, bus: I2cBus
) -> None:
    chip = Bme280Chip()
    fake.chips[0x76] = chip
    device = bme(bus)
    await device.poll()
    chip.faults.not_ready = True
    result = await device.poll()
    assert list(result.quality) == [Quality.COMM_FAIL] * 3
    assert not result.answered
    assert isinstance(result.errors[0], DeviceTimeoutError)
    assert "not ready" in str(result.errors[0])
    chip.faults.not_ready = False
    result = await device.poll()
    assert_good(result.quality)
    assert device.starts == 2  # the failure made the next poll start the chip again


async def test_bme280_stuck_chip_repeats_its_last_values(fake: FakeSMBus, bus: I2cBus) -> None:
    chip = Bme280Chip()
    chip.set(temperature=20.0)
    fake.chips[0x76] = chip
    device = bme(bus)
    await device.poll()
    chip.faults.stuck = True
    chip.set(temperature=30.0)
    result = await device.poll()
    assert result.values[0] == pytest.approx(20.0, abs=0.01)


# -- SHT3x ---------------------------------------------------------------------------------


@pytest.mark.parametrize("repeatability", ["high", "medium", "low"])
async def test_sht3x_reads_the_true_values(
    fake: FakeSMBus, bus: I2cBus, repeatability: str
) -> None:
    chip = Sht3xChip()
    fake.chips[0x45] = chip
    cfg = device_cfg("sht3x", 0x45, "temperature", "humidity", repeatability=repeatability)
    device = make_chip(cfg, bus)
    for celsius, percent in [(21.37, 45.6), (-30.5, 2.5), (99.9, 99.1)]:
        chip.set(temperature=celsius, humidity=percent)
        result = await device.poll()
        assert_good(result.quality)
        assert result.values[0] == pytest.approx(celsius, abs=SHT_TOLERANCE["temperature"])
        assert result.values[1] == pytest.approx(percent, abs=SHT_TOLERANCE["humidity"])
    assert chip.commands[-1] == sht3x.CMD_MEASURE[repeatability]  # type: ignore[index]
    assert sht3x.CMD_SOFT_RESET in chip.commands  # start() reset the sensor


async def test_sht3x_noisy_values_match_what_the_sensor_measured(
    fake: FakeSMBus, bus: I2cBus
) -> None:
    chip = Sht3xChip(seed=7)
    chip.noise = {"temperature": 0.3, "humidity": 1.0}
    fake.chips[0x44] = chip
    device = make_chip(device_cfg("sht3x", 0x44, "temperature", "humidity"), bus)
    seen = []
    for _ in range(3):
        result = await device.poll()
        measured = chip.measured
        assert result.values[0] == pytest.approx(measured["temperature"], abs=0.003)
        assert result.values[1] == pytest.approx(measured["humidity"], abs=0.002)
        seen.append(measured["temperature"])
    assert len(set(seen)) == 3  # the noise really varied


async def test_sht3x_crc_failure_is_a_counted_decode_error(fake: FakeSMBus, bus: I2cBus) -> None:
    chip = Sht3xChip()
    fake.chips[0x44] = chip
    device = make_chip(device_cfg("sht3x", 0x44, "temperature", "humidity"), bus)
    assert isinstance(device, Sht3xDevice)
    await device.poll()
    chip.faults.crc_error = True
    result = await device.poll()
    assert list(result.quality) == [Quality.DECODE_ERROR, Quality.DECODE_ERROR]
    assert np.isnan(result.values).all()
    assert device.crc_errors == 2
    assert result.failed == 1
    assert all(isinstance(e, ProtocolError) and "CRC" in str(e) for e in result.errors)
    chip.faults.crc_error = False
    result = await device.poll()
    assert_good(result.quality)
    assert device.crc_errors == 2


async def test_sht3x_nack_is_comm_fail_without_raising(fake: FakeSMBus, bus: I2cBus) -> None:
    chip = Sht3xChip()
    fake.chips[0x44] = chip
    device = make_chip(device_cfg("sht3x", 0x44, "humidity"), bus)
    await device.poll()
    chip.faults.nack = True
    result = await device.poll()
    assert list(result.quality) == [Quality.COMM_FAIL]
    assert math.isnan(result.values[0])
    assert not result.answered
    chip.faults.nack = False
    assert_good((await device.poll()).quality)


async def test_sht3x_measurement_never_ready_is_comm_fail(fake: FakeSMBus, bus: I2cBus) -> None:
    chip = Sht3xChip()
    fake.chips[0x44] = chip
    device = make_chip(device_cfg("sht3x", 0x44, "temperature"), bus)
    await device.poll()
    chip.faults.not_ready = True
    result = await device.poll()
    assert list(result.quality) == [Quality.COMM_FAIL]
    assert "no measurement" in str(result.errors[0])


# -- ADS1115 -------------------------------------------------------------------------------


@pytest.mark.parametrize("fsr", sorted(ads1115.PGA))
async def test_ads1115_every_gain(fake: FakeSMBus, bus: I2cBus, fsr: float) -> None:
    chip = Ads1115Chip()
    chip.set(ain0=0.61 * fsr, ain1=-0.27 * fsr, ain3=0.05 * fsr)
    fake.chips[0x49] = chip
    cfg = device_cfg(
        "ads1115",
        0x49,
        {"name": "a0", "channel": "ain0"},
        {"name": "d01", "channel": "ain0-ain1"},
        {"name": "d13", "channel": "ain1-ain3"},
        fsr=fsr,
        data_rate=860,
    )
    result = await make_chip(cfg, bus).poll()
    assert_good(result.quality)
    lsb = fsr / 32768
    expected = [0.61 * fsr, 0.88 * fsr, -0.32 * fsr]
    assert result.values == pytest.approx(expected, abs=lsb)
    cfg_word = ads1115.Config.from_word(chip.regs[ads1115.REG_CONFIG])
    assert (cfg_word.fsr, cfg_word.data_rate, cfg_word.single_shot) == (fsr, 860, True)
    assert chip.conversions == 3


async def test_ads1115_per_point_gain_and_one_conversion_per_setting(
    fake: FakeSMBus, bus: I2cBus
) -> None:
    chip = Ads1115Chip()
    chip.set(ain2=0.1234, ain3=4.0)
    fake.chips[0x48] = chip
    cfg = device_cfg(
        "ads1115",
        0x48,
        {"name": "fine", "channel": "ain2", "fsr": 0.256},
        {"name": "fine_ma", "channel": "ain2", "fsr": 0.256, "scale": 1000 / 250},
        {"name": "supply", "channel": "ain3", "fsr": 6.144},
    )
    result = await make_chip(cfg, bus).poll()
    assert_good(result.quality)
    assert result.values[0] == pytest.approx(0.1234, abs=0.256 / 32768)
    assert result.values[1] == pytest.approx(0.1234 * 4, abs=4 * 0.256 / 32768)
    assert result.values[2] == pytest.approx(4.0, abs=6.144 / 32768)
    assert result.requests == chip.conversions == 2


async def test_ads1115_clipped_input_is_out_of_range(fake: FakeSMBus, bus: I2cBus) -> None:
    chip = Ads1115Chip()
    chip.set(ain0=3.0)
    fake.chips[0x48] = chip
    cfg = device_cfg("ads1115", 0x48, {"name": "v", "channel": "ain0"}, fsr=2.048)
    result = await make_chip(cfg, bus).poll()
    assert list(result.quality) == [Quality.OUT_OF_RANGE]
    assert result.values[0] == pytest.approx(2.048, abs=0.001)  # the value is kept


async def test_ads1115_polls_only_the_points_asked(fake: FakeSMBus, bus: I2cBus) -> None:
    chip = Ads1115Chip()
    chip.set(ain0=1.0, ain1=0.5)
    fake.chips[0x48] = chip
    cfg = device_cfg(
        "ads1115", 0x48, {"name": "a", "channel": "ain0"}, {"name": "b", "channel": "ain1"}
    )
    result = await make_chip(cfg, bus).poll([1])
    assert list(result.quality) == [Quality.STALE, Quality.GOOD]
    assert math.isnan(result.values[0])
    assert result.values[1] == pytest.approx(0.5, abs=2.048 / 32768)
    assert chip.conversions == 1


async def test_ads1115_conversion_never_ready_fails_the_rest_of_the_poll(
    fake: FakeSMBus, bus: I2cBus
) -> None:
    chip = Ads1115Chip()
    chip.faults.not_ready = True
    fake.chips[0x48] = chip
    cfg = device_cfg(
        "ads1115",
        0x48,
        {"name": "a", "channel": "ain0"},
        {"name": "b", "channel": "ain1"},
        data_rate=860,
    )
    device = make_chip(cfg, bus)
    assert isinstance(device, Ads1115Device)
    result = await device.poll()
    assert list(result.quality) == [Quality.COMM_FAIL, Quality.COMM_FAIL]
    assert (result.requests, result.failed) == (2, 2)
    assert "conversion of ain0 not ready" in str(result.errors[0])


async def test_the_event_loop_ticks_while_a_slow_chip_is_polled(
    fake: FakeSMBus, bus: I2cBus
) -> None:
    chip = Ads1115Chip()
    chip.faults.delay = 0.1  # each transfer holds the bus (clock stretching) for 0.1 s
    chip.set(ain0=1.5)
    fake.chips[0x48] = chip
    device = make_chip(device_cfg("ads1115", 0x48, {"name": "v", "channel": "ain0"}), bus)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker(), name="ticker")
    try:
        result = await device.poll()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert result.values[0] == pytest.approx(1.5, abs=0.001)
    assert fake.transfers >= 4  # at least 0.4 s of blocked transfers
    assert ticks >= 20


# -- INA219 --------------------------------------------------------------------------------


def ina_cfg(shunt: float = 0.1, amps: float = 2.0, **settings: object) -> object:
    return device_cfg(
        "ina219",
        0x40,
        "shunt_voltage",
        "bus_voltage",
        "current",
        "power",
        shunt_ohms=shunt,
        max_expected_amps=amps,
        **settings,
    )


@pytest.mark.parametrize(("shunt", "amps"), [(0.1, 2.0), (0.01, 15.0), (0.002, 40.0)])
async def test_ina219_calibration_for_the_shunt_and_true_values(
    fake: FakeSMBus, bus: I2cBus, shunt: float, amps: float
) -> None:
    chip = Ina219Chip(shunt_ohms=shunt)
    fake.chips[0x40] = chip
    device = make_chip(ina_cfg(shunt, amps), bus)  # type: ignore[arg-type]
    assert isinstance(device, Ina219Device)
    await device.start()
    cal = chip.regs[ina219.REG_CALIBRATION]
    assert cal == device.scaling.calibration
    # Datasheet equation 1: Cal = trunc(0.04096 / (Current_LSB * R_SHUNT)).
    assert cal == math.trunc(0.04096 / (device.scaling.current_lsb * shunt) + 1e-9)
    assert device.scaling.current_lsb >= amps / 32767
    started = chip.conversions
    for current, volts in [(0.73 * amps, 12.0), (-0.41 * amps, 5.02), (0.0, 24.0)]:
        chip.set(current=current, bus_voltage=volts)
        result = await device.poll()
        assert_good(result.quality)
        lsb = device.scaling.current_lsb
        shunt_v, bus_v, amps_read, watts = result.values
        assert shunt_v == pytest.approx(current * shunt, abs=5e-6 + 1e-12)
        assert bus_v == pytest.approx(volts, abs=0.002 + 1e-12)
        assert amps_read == pytest.approx(current, abs=lsb + 5e-6 / shunt)
        error = 20 * lsb + volts * (lsb + 5e-6 / shunt) + abs(current) * 0.002
        assert watts == pytest.approx(abs(current) * volts, abs=error)
    assert chip.conversions - started == 3  # triggered: one conversion per poll


async def test_ina219_16_volt_range_and_clipping(fake: FakeSMBus, bus: I2cBus) -> None:
    chip = Ina219Chip()
    chip.set(current=0.2, bus_voltage=20.0)
    fake.chips[0x40] = chip
    result = await make_chip(ina_cfg(bus_voltage_range=16), bus).poll()  # type: ignore[arg-type]
    assert ina219.Config.from_word(chip.regs[ina219.REG_CONFIG]).bus_range == 16
    assert result.quality[1] == Quality.OUT_OF_RANGE
    assert result.values[1] == pytest.approx(4095 * 0.004)


async def test_ina219_math_overflow_flags_current_and_power(fake: FakeSMBus, bus: I2cBus) -> None:
    chip = Ina219Chip(shunt_ohms=0.1)
    chip.set(current=1.5, bus_voltage=12.0)  # 150 mV: beyond the 80 mV range of 0.5 A
    fake.chips[0x40] = chip
    result = await make_chip(ina_cfg(0.1, 0.5), bus).poll()  # type: ignore[arg-type]
    assert list(result.quality) == [
        Quality.OUT_OF_RANGE,
        Quality.GOOD,
        Quality.DEVICE_ERROR,
        Quality.DEVICE_ERROR,
    ]
    assert result.values[0] == pytest.approx(0.08)
    assert math.isnan(result.values[2])
    assert result.answered  # the chip answered; it flagged its own result
    assert any("OVF" in str(e) for e in result.errors)


async def test_ina219_rewrites_a_lost_calibration(
    fake: FakeSMBus, bus: I2cBus, caplog: pytest.LogCaptureFixture
) -> None:
    chip = Ina219Chip()
    chip.set(current=1.0)
    fake.chips[0x40] = chip
    device = make_chip(ina_cfg(), bus)  # type: ignore[arg-type]
    await device.poll()
    chip.write(bytes([ina219.REG_CONFIG, 0x80, 0x00]))  # reset: calibration back to 0
    with caplog.at_level(logging.WARNING):
        result = await device.poll()
    assert result.values[2] == pytest.approx(1.0, abs=0.001)
    assert "calibration lost" in caplog.text


@pytest.mark.parametrize("fault", ["nack", "not_ready"])
async def test_ina219_failures_are_comm_fail_without_raising(
    fake: FakeSMBus, bus: I2cBus, fault: str
) -> None:
    chip = Ina219Chip()
    fake.chips[0x40] = chip
    device = make_chip(ina_cfg(), bus)  # type: ignore[arg-type]
    await device.poll()
    setattr(chip.faults, fault, True)
    result = await device.poll()
    assert list(result.quality) == [Quality.COMM_FAIL] * 4
    assert not result.answered
    setattr(chip.faults, fault, False)
    assert_good((await device.poll()).quality)


# -- shared behaviour ----------------------------------------------------------------------


async def test_a_missing_chip_does_not_disturb_its_neighbour(fake: FakeSMBus, bus: I2cBus) -> None:
    fake.chips[0x44] = Sht3xChip()
    missing = make_chip(device_cfg("bme280", 0x77, "temperature"), bus)
    present = make_chip(device_cfg("sht3x", 0x44, "temperature"), bus)
    lost, found = await asyncio.gather(missing.poll(), present.poll())
    assert list(lost.quality) == [Quality.COMM_FAIL]
    assert isinstance(lost.errors[0], DeviceTimeoutError)
    assert list(found.quality) == [Quality.GOOD]
    assert fake.max_active == 1


def test_a_driver_refuses_another_chips_config(fake: FakeSMBus) -> None:
    cfg = device_cfg("sht3x", 0x44, "temperature")
    with pytest.raises(ValueError, match="drives 'bme280'"):
        Bme280Device(cfg, I2cBus(1, opener=fake.opener))
