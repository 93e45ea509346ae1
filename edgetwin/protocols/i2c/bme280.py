"""Bosch BME280: register map, calibration words and the datasheet's compensation formulas.

Source: BME280 datasheet BST-BME280-DS002, section 4.2.2 (trimming parameter readout, table
16), 4.2.3 (integer compensation, rev. 1.1: 32-bit temperature and humidity, 64-bit pressure),
section 5 (register map) and appendix 8.1 (double precision) / 9 (measurement time). The
temperature and pressure formulas are those of the BMP280 (datasheet BST-BMP280-DS001, 3.11.3).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields

CHIP_ID = 0x60
BMP280_CHIP_IDS = (0x56, 0x57, 0x58)
BME680_CHIP_ID = 0x61

REG_CALIB_A = 0x88  # calib00..calib25: dig_T1..dig_P9, (0xA0 reserved), dig_H1 at 0xA1
CALIB_A_LEN = 26
REG_CALIB_B = 0xE1  # calib26..calib32: dig_H2..dig_H6
CALIB_B_LEN = 7
REG_ID = 0xD0
REG_RESET = 0xE0
RESET_WORD = 0xB6
REG_CTRL_HUM = 0xF2
REG_STATUS = 0xF3
REG_CTRL_MEAS = 0xF4
REG_CONFIG = 0xF5
REG_DATA = 0xF7  # press_msb .. hum_lsb
DATA_LEN = 8

STATUS_MEASURING = 0x08
STATUS_IM_UPDATE = 0x01
MODE_SLEEP = 0b00
MODE_FORCED = 0b01
MODE_NORMAL = 0b11

#: Oversampling factor -> osrs_x register code (0: measurement skipped).
OSRS_CODE: dict[int, int] = {0: 0, 1: 1, 2: 2, 4: 3, 8: 4, 16: 5}
#: What a skipped measurement leaves in the data registers.
SKIPPED_20BIT = 0x80000
SKIPPED_16BIT = 0x8000
#: Soft reset: the NVM copy (im_update) takes at most this long.
STARTUP_TIME = 0.002


_TP_NAMES = ("t1", "t2", "t3", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9")


@dataclass(frozen=True, slots=True)
class Calibration:
    """The trimming words dig_T1..dig_H6, as programmed in the chip's NVM."""

    t1: int
    t2: int
    t3: int
    p1: int
    p2: int
    p3: int
    p4: int
    p5: int
    p6: int
    p7: int
    p8: int
    p9: int
    h1: int
    h2: int
    h3: int
    h4: int
    h5: int
    h6: int

    @classmethod
    def from_bytes(cls, block_a: bytes, block_b: bytes) -> Calibration:
        """Parse calib00..calib25 (0x88..0xA1) and calib26..calib32 (0xE1..0xE7)."""
        if len(block_a) != CALIB_A_LEN or len(block_b) != CALIB_B_LEN:
            raise ValueError(
                f"calibration blocks are {CALIB_A_LEN} and {CALIB_B_LEN} bytes, "
                f"got {len(block_a)} and {len(block_b)}"
            )
        words = dict(zip(_TP_NAMES, struct.unpack("<HhhHhhhhhhhh", block_a[:24]), strict=True))
        h1 = block_a[25]
        h2, h3 = struct.unpack("<hB", block_b[:3])
        e4, e5, e6, h6 = block_b[3], block_b[4], block_b[5], block_b[6]
        # dig_H4 = 0xE4[7:0] << 4 | 0xE5[3:0]; dig_H5 = 0xE6[7:0] << 4 | 0xE5[7:4]. Both are
        # signed 12-bit: the whole byte is the signed high part (Bosch API: (int8_t)msb * 16).
        h4 = _int8(e4) * 16 | (e5 & 0x0F)
        h5 = _int8(e6) * 16 | (e5 >> 4)
        return cls(**words, h1=h1, h2=h2, h3=h3, h4=h4, h5=h5, h6=_int8(h6))

    def to_bytes(self) -> tuple[bytes, bytes]:
        """The two NVM blocks that :meth:`from_bytes` parses back into these words."""
        p = (self.p2, self.p3, self.p4, self.p5, self.p6, self.p7, self.p8, self.p9)
        block_a = struct.pack("<HhhHhhhhhhhh", self.t1, self.t2, self.t3, self.p1, *p)
        block_a += bytes([0x00, self.h1])
        e4 = (self.h4 >> 4) & 0xFF
        e5 = (self.h4 & 0x0F) | ((self.h5 & 0x0F) << 4)
        e6 = (self.h5 >> 4) & 0xFF
        block_b = struct.pack("<hB", self.h2, self.h3) + bytes([e4, e5, e6, self.h6 & 0xFF])
        return block_a, block_b

    def check(self) -> None:
        """ValueError unless every word fits its register type (unsigned, signed, 12-bit)."""
        limits = {
            "t1": (0, 0xFFFF),
            "p1": (0, 0xFFFF),
            "h1": (0, 0xFF),
            "h3": (0, 0xFF),
            "h4": (-2048, 2047),
            "h5": (-2048, 2047),
            "h6": (-128, 127),
        }
        for f in fields(self):
            lo, hi = limits.get(f.name, (-32768, 32767))
            value = getattr(self, f.name)
            if not lo <= value <= hi:
                raise ValueError(f"dig_{f.name.upper()} = {value} is outside {lo}..{hi}")


def _int8(byte: int) -> int:
    return byte - 0x100 if byte & 0x80 else byte


def ctrl_hum(osrs_h: int) -> int:
    """ctrl_hum (0xF2) for a humidity oversampling factor (0 skips)."""
    return OSRS_CODE[osrs_h]


def ctrl_meas(osrs_t: int, osrs_p: int, mode: int) -> int:
    """ctrl_meas (0xF4): osrs_t[7:5], osrs_p[4:2], mode[1:0]."""
    return OSRS_CODE[osrs_t] << 5 | OSRS_CODE[osrs_p] << 2 | mode


def oversampling(code: int) -> int:
    """Oversampling factor of an osrs_x code (codes 5..7 all mean x16)."""
    return 0 if code == 0 else 1 << (min(code, 5) - 1)


def parse_data(block: bytes) -> tuple[int, int, int]:
    """(adc_P, adc_T, adc_H) from the burst read of 0xF7..0xFE."""
    if len(block) != DATA_LEN:
        raise ValueError(f"data block is {DATA_LEN} bytes, got {len(block)}")
    adc_p = block[0] << 12 | block[1] << 4 | block[2] >> 4
    adc_t = block[3] << 12 | block[4] << 4 | block[5] >> 4
    adc_h = block[6] << 8 | block[7]
    return adc_p, adc_t, adc_h


def encode_data(adc_p: int, adc_t: int, adc_h: int) -> bytes:
    """The data registers 0xF7..0xFE that hold these raw values (inverse of parse_data)."""
    return bytes(
        [
            adc_p >> 12 & 0xFF,
            adc_p >> 4 & 0xFF,
            (adc_p & 0x0F) << 4,
            adc_t >> 12 & 0xFF,
            adc_t >> 4 & 0xFF,
            (adc_t & 0x0F) << 4,
            adc_h >> 8 & 0xFF,
            adc_h & 0xFF,
        ]
    )


def measurement_time(osrs_t: int, osrs_p: int, osrs_h: int, *, maximum: bool = True) -> float:
    """Forced-mode measurement time in seconds (datasheet 9.1), maximum or typical."""
    k, base, extra = (2.3, 1.25, 0.575) if maximum else (2.0, 1.0, 0.5)
    ms = base + k * osrs_t
    if osrs_p:
        ms += k * osrs_p + extra
    if osrs_h:
        ms += k * osrs_h + extra
    return ms / 1000.0


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


# -- integer compensation (datasheet 4.2.3) ----------------------------------------------


def t_fine(adc_t: int, cal: Calibration) -> int:
    """The fine temperature carried into the pressure and humidity formulas."""
    var1 = (((adc_t >> 3) - (cal.t1 << 1)) * cal.t2) >> 11
    var2 = (((((adc_t >> 4) - cal.t1) * ((adc_t >> 4) - cal.t1)) >> 12) * cal.t3) >> 14
    return var1 + var2


def temperature_int(fine: int) -> int:
    """Temperature in 0.01 °C from t_fine (5123 means 51.23 °C)."""
    return (fine * 5 + 128) >> 8


def pressure_int(adc_p: int, fine: int, cal: Calibration) -> int:
    """Pressure in Pa as Q24.8 (24674867 means 96386.2 Pa), 64-bit formula."""
    var1 = fine - 128000
    var2 = var1 * var1 * cal.p6
    var2 = var2 + ((var1 * cal.p5) << 17)
    var2 = var2 + (cal.p4 << 35)
    var1 = ((var1 * var1 * cal.p3) >> 8) + ((var1 * cal.p2) << 12)
    var1 = (((1 << 47) + var1) * cal.p1) >> 33
    if var1 == 0:
        return 0  # avoid a division by zero, as the datasheet does
    p = 1048576 - adc_p
    p = _cdiv(((p << 31) - var2) * 3125, var1)
    var1 = (cal.p9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal.p8 * p) >> 19
    p = ((p + var1 + var2) >> 8) + (cal.p7 << 4)
    return p & 0xFFFFFFFF


def humidity_int(adc_h: int, fine: int, cal: Calibration) -> int:
    """Relative humidity in %RH as Q22.10 (47445 means 46.333 %RH), 32-bit formula."""
    x = fine - 76800
    a = ((adc_h << 14) - (cal.h4 << 20) - cal.h5 * x + 16384) >> 15
    b = (((((x * cal.h6) >> 10) * (((x * cal.h3) >> 11) + 32768)) >> 10) + 2097152) * cal.h2
    v = a * ((b + 8192) >> 14)
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * cal.h1) >> 4)
    v = max(0, min(v, 419430400))
    return v >> 12


@dataclass(frozen=True, slots=True)
class Reading:
    """One compensated measurement: °C, Pa, %RH."""

    temperature: float
    pressure: float
    humidity: float
    t_fine: int


def compensate(adc_p: int, adc_t: int, adc_h: int, cal: Calibration) -> Reading:
    """Compensate one raw triple with the integer formulas.

    A skipped measurement leaves 0x80000 / 0x8000, which is also a valid reading: only the
    oversampling settings tell the two apart, so the caller decides what was measured.
    """
    fine = t_fine(adc_t, cal)
    return Reading(
        temperature_int(fine) / 100.0,
        pressure_int(adc_p, fine, cal) / 256.0,
        humidity_int(adc_h, fine, cal) / 1024.0,
        fine,
    )


# -- double-precision compensation (datasheet 8.1) ---------------------------------------


def temperature_double(adc_t: int, cal: Calibration) -> tuple[float, int]:
    """(°C, t_fine) with the floating-point formula."""
    var1 = (adc_t / 16384.0 - cal.t1 / 1024.0) * cal.t2
    var2 = (adc_t / 131072.0 - cal.t1 / 8192.0) ** 2 * cal.t3
    return (var1 + var2) / 5120.0, int(var1 + var2)


def pressure_double(adc_p: int, fine: float, cal: Calibration) -> float:
    """Pa with the floating-point formula."""
    var1 = fine / 2.0 - 64000.0
    var2 = var1 * var1 * cal.p6 / 32768.0
    var2 = var2 + var1 * cal.p5 * 2.0
    var2 = var2 / 4.0 + cal.p4 * 65536.0
    var1 = (cal.p3 * var1 * var1 / 524288.0 + cal.p2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * cal.p1
    if var1 == 0.0:
        return 0.0
    p = 1048576.0 - adc_p
    p = (p - var2 / 4096.0) * 6250.0 / var1
    var1 = cal.p9 * p * p / 2147483648.0
    var2 = p * cal.p8 / 32768.0
    return p + (var1 + var2 + cal.p7) / 16.0


def humidity_double(adc_h: int, fine: float, cal: Calibration) -> float:
    """%RH with the floating-point formula, clamped to 0..100 as the datasheet does."""
    h = fine - 76800.0
    h = (adc_h - (cal.h4 * 64.0 + cal.h5 / 16384.0 * h)) * (
        cal.h2 / 65536.0 * (1.0 + cal.h6 / 67108864.0 * h * (1.0 + cal.h3 / 67108864.0 * h))
    )
    h = h * (1.0 - cal.h1 * h / 524288.0)
    return min(100.0, max(0.0, h))
