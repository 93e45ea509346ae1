"""Chip conversions: datasheet worked examples, and round trips through the emulators' inverses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.protocols.i2c import ads1115, bme280, ina219, sht3x
from firmware_stubs.i2c import ads1115 as ads_stub
from firmware_stubs.i2c import bme280 as bme_stub
from firmware_stubs.i2c import ina219 as ina_stub
from firmware_stubs.i2c import sht3x as sht_stub

# -- BME280 --------------------------------------------------------------------------------

# The trimming words of the Bosch BMP280 datasheet's worked compensation example, as the chip
# stores them (LSB first), followed by 0xA0 (reserved) and dig_H1 = 75 at 0xA1.
EXAMPLE_BLOCK_A = bytes.fromhex(
    "706b 4367 18fc"  # dig_T1..T3
    " 7d8e 43d6 d00b 270b 8c00 f9ff 8c3c f8c6 7017"  # dig_P1..P9
    " 00 4b"  # reserved, dig_H1
)
# 0xE1..0xE7: dig_H2 = 362, dig_H3 = 0, dig_H4 = 313 (0x139: E4 = 0x13, E5[3:0] = 9),
# dig_H5 = 50 (0x032: E6 = 0x03, E5[7:4] = 2), dig_H6 = 30.
EXAMPLE_BLOCK_B = bytes.fromhex("6a01 00 13 29 03 1e")

# Datasheet resolution by oversampling (BME280 datasheet tables 13 and 14).
PRESSURE_RESOLUTION = {1: 2.62, 2: 1.31, 4: 0.66, 8: 0.33, 16: 0.16}  # Pa
TEMPERATURE_RESOLUTION = {1: 0.005, 2: 0.0025, 4: 0.0012, 8: 0.0006, 16: 0.0003}  # °C
HUMIDITY_RESOLUTION = 0.008  # %RH


def example_calibration() -> bme280.Calibration:
    return bme280.Calibration.from_bytes(EXAMPLE_BLOCK_A, EXAMPLE_BLOCK_B)


def test_bme280_calibration_bytes_parse_to_the_datasheet_words() -> None:
    cal = example_calibration()
    assert (cal.t1, cal.t2, cal.t3) == (27504, 26435, -1000)
    assert (cal.p1, cal.p2, cal.p3, cal.p4, cal.p5) == (36477, -10685, 3024, 2855, 140)
    assert (cal.p6, cal.p7, cal.p8, cal.p9) == (-7, 15500, -14600, 6000)
    assert (cal.h1, cal.h2, cal.h3, cal.h4, cal.h5, cal.h6) == (75, 362, 0, 313, 50, 30)


def test_bme280_dig_h4_h5_are_signed_12_bit() -> None:
    # E4 = 0xFF, E5 = 0x0F, E6 = 0x80: dig_H4 = 0xFFF = -1, dig_H5 = 0x800 = -2048; E7 = -30.
    block_b = bytes.fromhex("6a01 00 ff 0f 80 e2")
    cal = bme280.Calibration.from_bytes(EXAMPLE_BLOCK_A, block_b)
    assert (cal.h4, cal.h5, cal.h6) == (-1, -2048, -30)


def test_bme280_datasheet_worked_example() -> None:
    # BMP280 datasheet example: adc_T = 519888 gives t_fine = 128422 and T = 25.08 °C;
    # adc_P = 415148 gives p = 100653.27 Pa (double precision formula).
    cal = example_calibration()
    fine = bme280.t_fine(519888, cal)
    assert fine == 128422
    assert bme280.temperature_int(fine) == 2508
    celsius, fine_double = bme280.temperature_double(519888, cal)
    assert fine_double == 128422
    assert celsius == pytest.approx(25.08, abs=0.005)
    # The table carries the unrounded t_fine (var1 + var2) into the pressure formula.
    assert bme280.pressure_double(415148, celsius * 5120.0, cal) == pytest.approx(
        100653.27, abs=0.005
    )
    # The 64-bit integer formula (truncated t_fine, Q24.8 result) agrees within 0.02 Pa.
    assert bme280.pressure_int(415148, fine, cal) / 256 == pytest.approx(100653.27, abs=0.02)


calibrations = st.builds(
    bme280.Calibration,
    t1=st.integers(0, 0xFFFF),
    t2=st.integers(-32768, 32767),
    t3=st.integers(-32768, 32767),
    p1=st.integers(0, 0xFFFF),
    p2=st.integers(-32768, 32767),
    p3=st.integers(-32768, 32767),
    p4=st.integers(-32768, 32767),
    p5=st.integers(-32768, 32767),
    p6=st.integers(-32768, 32767),
    p7=st.integers(-32768, 32767),
    p8=st.integers(-32768, 32767),
    p9=st.integers(-32768, 32767),
    h1=st.integers(0, 255),
    h2=st.integers(-32768, 32767),
    h3=st.integers(0, 255),
    h4=st.integers(-2048, 2047),
    h5=st.integers(-2048, 2047),
    h6=st.integers(-128, 127),
)


@given(calibrations)
def test_bme280_calibration_round_trips_through_the_nvm_blocks(cal: bme280.Calibration) -> None:
    block_a, block_b = cal.to_bytes()
    assert len(block_a) == bme280.CALIB_A_LEN
    assert len(block_b) == bme280.CALIB_B_LEN
    assert bme280.Calibration.from_bytes(block_a, block_b) == cal


@given(st.integers(0, 0xFFFFF), st.integers(0, 0xFFFFF), st.integers(0, 0xFFFF))
def test_bme280_data_registers_round_trip(adc_p: int, adc_t: int, adc_h: int) -> None:
    assert bme280.parse_data(bme280.encode_data(adc_p, adc_t, adc_h)) == (adc_p, adc_t, adc_h)


@given(
    adc_t=st.integers(300_000, 700_000),
    adc_p=st.integers(200_000, 650_000),
    adc_h=st.integers(20_000, 40_000),
)
def test_bme280_integer_and_double_formulas_agree(adc_t: int, adc_p: int, adc_h: int) -> None:
    cal = example_calibration()
    fine = bme280.t_fine(adc_t, cal)
    celsius, fine_double = bme280.temperature_double(adc_t, cal)
    # adc_T >> 3 drops up to 7/8 of a step of dig_T2 / 2048 in t_fine (1/5120 °C each).
    assert abs(fine - fine_double) <= 16
    assert bme280.temperature_int(fine) / 100 == pytest.approx(celsius, abs=0.005 + 16 / 5120)
    pressure = bme280.pressure_int(adc_p, fine, cal) / 256
    assert pressure == pytest.approx(bme280.pressure_double(adc_p, fine, cal), abs=0.05)
    humidity = bme280.humidity_int(adc_h, fine, cal) / 1024
    assert humidity == pytest.approx(bme280.humidity_double(adc_h, fine, cal), abs=0.02)


@settings(max_examples=150)
@given(
    celsius=st.floats(-40, 85),
    pascal=st.floats(30_000, 110_000),
    percent=st.floats(0, 100),
    osrs=st.sampled_from([1, 2, 4, 8, 16]),
)
def test_bme280_emulator_raw_values_compensate_back_to_the_truth(
    celsius: float, pascal: float, percent: float, osrs: int
) -> None:
    cal = bme_stub.DATASHEET_CALIBRATION
    adc_t = bme_stub.raw_temperature(celsius, cal, osrs)
    fine = bme280.t_fine(adc_t, cal)
    adc_p = bme_stub.raw_pressure(pascal, fine, cal, osrs)
    adc_h = bme_stub.raw_humidity(percent, fine, cal)
    # Oversampling x1 leaves 16 significant bits, x16 all 20.
    assert adc_t % (16 // osrs) == 0
    assert adc_p % (16 // osrs) == 0
    reading = bme280.compensate(adc_p, adc_t, adc_h, cal)
    # Output in 0.01 °C steps; the 32-bit formula reads adc_T >> 3, so t_fine itself moves
    # in steps of dig_T2 / 2048 (about 0.0025 °C) whatever the oversampling.
    t_step = max(TEMPERATURE_RESOLUTION[osrs], 0.0025)
    assert reading.temperature == pytest.approx(celsius, abs=0.005 + t_step)
    assert reading.pressure == pytest.approx(pascal, abs=PRESSURE_RESOLUTION[osrs] + 1 / 256)
    assert reading.humidity == pytest.approx(percent, abs=HUMIDITY_RESOLUTION + 1 / 1024)


def test_bme280_control_words_and_measurement_time() -> None:
    # osrs_t = x2 (010), osrs_p = x16 (101), forced (01): 010 101 01.
    assert bme280.ctrl_meas(2, 16, bme280.MODE_FORCED) == 0b010_101_01
    assert bme280.ctrl_hum(1) == 0b001
    # Datasheet 9.1: x1/x1/x1 takes at most 1.25 + 2.3 + 2.875 + 2.875 = 9.3 ms.
    assert bme280.measurement_time(1, 1, 1) == pytest.approx(0.0093)
    assert bme280.measurement_time(1, 1, 1, maximum=False) == pytest.approx(0.008)


# -- SHT3x ---------------------------------------------------------------------------------


def test_sht3x_crc_check_value() -> None:
    assert sht3x.crc8(b"\xbe\xef") == 0x92  # datasheet table 19


def test_sht3x_conversion_end_points() -> None:
    assert sht3x.temperature(0) == -45.0
    assert sht3x.temperature(0xFFFF) == 130.0
    assert sht3x.humidity(0) == 0.0
    assert sht3x.humidity(0xFFFF) == 100.0


@given(st.integers(0, 0xFFFF), st.integers(0, 23))
def test_sht3x_crc_catches_every_single_bit_error(word: int, bit: int) -> None:
    data = sht3x.word_with_crc(word)
    assert list(sht3x.words(data)) == [(word, True)]
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    ((_, ok),) = sht3x.words(bytes(flipped))
    assert not ok


@given(st.floats(-45, 130), st.floats(0, 100))
def test_sht3x_emulator_words_convert_back_to_the_truth(celsius: float, percent: float) -> None:
    assert sht3x.temperature(sht_stub.raw_temperature(celsius)) == pytest.approx(
        celsius, abs=175 / 65535 / 2 + 1e-9
    )
    assert sht3x.humidity(sht_stub.raw_humidity(percent)) == pytest.approx(
        percent, abs=100 / 65535 / 2 + 1e-9
    )


def test_sht3x_commands_are_msb_first() -> None:
    assert sht3x.command(sht3x.CMD_MEASURE["high"]) == b"\x24\x00"
    assert sht3x.command(sht3x.CMD_READ_STATUS) == b"\xf3\x2d"


# -- ADS1115 -------------------------------------------------------------------------------

# Datasheet table 1: full-scale range -> LSB size.
ADS_LSB = {
    6.144: 187.5e-6,
    4.096: 125e-6,
    2.048: 62.5e-6,
    1.024: 31.25e-6,
    0.512: 15.625e-6,
    0.256: 7.8125e-6,
}


def test_ads1115_config_reset_value_fields() -> None:
    cfg = ads1115.Config.from_word(0x8583)
    assert cfg.os  # no conversion in progress
    assert cfg.mux == 0  # AIN0 - AIN1
    assert cfg.fsr == 2.048
    assert cfg.single_shot
    assert cfg.data_rate == 128
    assert (cfg.comp_mode, cfg.comp_pol, cfg.comp_lat, cfg.comp_que) == (0, 0, 0, 0b11)
    assert cfg.to_word() == 0x8583


@pytest.mark.parametrize(("fsr", "lsb"), ADS_LSB.items())
def test_ads1115_lsb_and_output_codes(fsr: float, lsb: float) -> None:
    assert ads1115.lsb(fsr) == pytest.approx(lsb)
    # Datasheet table 3: ideal output codes.
    assert ads1115.volts(0x7FFF, fsr) == pytest.approx(fsr * 32767 / 32768)
    assert ads1115.volts(0x0001, fsr) == pytest.approx(fsr / 32768)
    assert ads1115.volts(0x0000, fsr) == 0.0
    assert ads1115.volts(0xFFFF, fsr) == pytest.approx(-fsr / 32768)
    assert ads1115.volts(0x8000, fsr) == pytest.approx(-fsr)


def test_ads1115_single_shot_word() -> None:
    # OS=1, MUX=100 (AIN0-GND), PGA=001 (4.096 V), MODE=1, DR=111 (860 SPS), COMP_QUE=11.
    assert ads1115.single_shot("ain0", 4.096, 860) == 0b1_100_001_1_111_0_0_0_11


@given(st.integers(0, 0xFFFF).filter(lambda w: (w >> 9 & 0b111) <= 5))
def test_ads1115_config_round_trips(word: int) -> None:
    assert ads1115.Config.from_word(word).to_word() == word


@given(st.sampled_from(list(ADS_LSB)), st.floats(-1.0, 1.0))
def test_ads1115_emulator_codes_convert_back(fsr: float, fraction: float) -> None:
    volts = fraction * fsr
    decoded = ads1115.volts(ads_stub.code(volts, fsr), fsr)
    if fraction < 32767 / 32768:
        assert decoded == pytest.approx(volts, abs=ADS_LSB[fsr] / 2 + 1e-12)
    else:
        assert decoded == pytest.approx(fsr * 32767 / 32768)  # clipped at +FS


# -- INA219 --------------------------------------------------------------------------------


def test_ina219_datasheet_calibration_example() -> None:
    # 0.1 ohm shunt, 2 A expected: a round Current_LSB of 100 uA gives Cal = 4096 and a
    # power LSB of 2 mW (datasheet 8.5.1, equations 1 and 3).
    assert ina219.calibration(0.0001, 0.1) == 4096
    assert ina219.Scaling(4096, 0.0001, 0.32).power_lsb == pytest.approx(0.002)


def test_ina219_config_reset_value_fields() -> None:
    cfg = ina219.Config.from_word(0x399F)
    assert cfg.bus_range == 32
    assert cfg.shunt_range == 0.32
    assert cfg.badc == cfg.sadc == 0b0011  # 12 bit
    assert cfg.mode == 0b111  # shunt and bus, continuous
    assert cfg.to_word() == 0x399F


def test_ina219_register_examples() -> None:
    # Bus voltage full scale: 32 V = 8000 counts of 4 mV, 16 V = 4000, in bits 15..3.
    full = ina219.bus(8000 << 3 | ina219.CNVR)
    assert (full.volts, full.ready, full.overflow) == (pytest.approx(32.0), True, False)
    assert ina219.bus(4000 << 3 | ina219.OVF).volts == pytest.approx(16.0)
    assert ina219.bus(4000 << 3 | ina219.OVF).overflow
    # Shunt voltage at PGA /8: +320 mV = 7D00h, -320 mV = 8300h.
    assert ina219.shunt_volts(0x7D00) == pytest.approx(0.32)
    assert ina219.shunt_volts(0x8300) == pytest.approx(-0.32)
    assert ina219.shunt_saturated(0x7D00, 0.32)
    assert not ina219.shunt_saturated(0x7CFF, 0.32)


def test_ina219_scaling_refuses_a_shunt_drop_beyond_320_mv() -> None:
    with pytest.raises(ValueError, match="320 mV"):
        ina219.scaling(0.1, 3.3)


shunts = st.floats(0.001, 10.0)


@given(shunts, st.floats(0.0001, 1.0))
def test_ina219_scaling_covers_the_expected_current(r_shunt: float, fraction: float) -> None:
    amps = fraction * 0.32 / r_shunt
    s = ina219.scaling(r_shunt, amps)
    assert 0 < s.calibration <= 0xFFFE
    assert s.calibration % 2 == 0  # bit 0 of the register is void
    assert s.current_lsb * 32767 >= amps * (1 - 1e-9)  # the current register does not overflow
    assert s.current_lsb * s.calibration * r_shunt == pytest.approx(0.04096)
    assert amps * r_shunt <= s.shunt_range * (1 + 1e-9)
    assert s.power_lsb == pytest.approx(20 * s.current_lsb)


@given(shunts, st.floats(0.0001, 1.0), st.floats(-1.0, 1.0), st.floats(0.0, 26.0))
def test_ina219_chip_arithmetic_decodes_back_to_the_truth(
    r_shunt: float, fraction: float, load: float, volts: float
) -> None:
    top = fraction * 0.32 / r_shunt
    amps = load * top
    s = ina219.scaling(r_shunt, top)
    shunt = ina_stub.shunt_counts(amps, r_shunt, s.shunt_range)
    bus = ina_stub.bus_counts(volts, 32)
    current, power, overflow = ina_stub.registers(shunt, bus, s.calibration)
    assert not overflow
    shunt_error = ina219.SHUNT_LSB / 2 / r_shunt  # the 10 uV step, in amperes
    decoded = ina219.current_amps(current, s.current_lsb)
    assert decoded == pytest.approx(amps, abs=shunt_error + s.current_lsb)
    assert ina219.shunt_volts(shunt & 0xFFFF) == pytest.approx(amps * r_shunt, abs=5e-6 + 1e-12)
    assert ina219.bus(bus << 3).volts == pytest.approx(volts, abs=0.002 + 1e-12)
    watts = ina219.power_watts(power, s.current_lsb)
    assert watts == pytest.approx(abs(decoded) * bus * 0.004, abs=s.power_lsb)
