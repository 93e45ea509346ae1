"""TI INA219: registers, configuration fields, calibration and the measurement LSBs.

Source: INA219 datasheet SBOS448, 8.5.1 (calibration: Cal = trunc(0.04096 / (Current_LSB *
R_SHUNT)), Current_LSB = max expected current / 2^15, Power_LSB = 20 * Current_LSB; Current
register = Shunt voltage register * Cal / 4096; Power register = Current register * Bus
voltage register / 5000) and 8.6 (register map: configuration reset 399Fh; shunt voltage LSB
10 uV; bus voltage BD[12:0] at bits 15..3, LSB 4 mV, CNVR bit 1, OVF bit 0; bit 0 of the
calibration register is void and reads 0). The power register is unsigned (|current| * bus).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from edgetwin.protocols.i2c import to_int16

REG_CONFIG = 0
REG_SHUNT = 1
REG_BUS = 2
REG_POWER = 3
REG_CURRENT = 4
REG_CALIBRATION = 5

CONFIG_RESET = 0x399F
RST = 1 << 15
BRNG: dict[int, int] = {16: 0, 32: 1}
#: PG[12:11] code of each shunt full-scale range, volts.
PG: dict[float, int] = {0.04: 0, 0.08: 1, 0.16: 2, 0.32: 3}
SHUNT_RANGES: tuple[float, ...] = (0.04, 0.08, 0.16, 0.32)
ADC_12BIT = 0b0011
MODE_POWER_DOWN = 0b000
MODE_TRIGGERED = 0b011  # shunt and bus, triggered
MODE_CONTINUOUS = 0b111  # shunt and bus, continuous

SHUNT_LSB = 10e-6  # V
BUS_LSB = 0.004  # V
CNVR = 1 << 1
OVF = 1 << 0
CAL_MAX = 0xFFFE

#: ADC setting (BADC/SADC) -> conversion time, seconds (datasheet table 5, typical).
ADC_TIME: dict[int, float] = {
    0b0000: 84e-6,
    0b0001: 148e-6,
    0b0010: 276e-6,
    0b0011: 532e-6,
    0b1000: 532e-6,
    0b1001: 1.06e-3,
    0b1010: 2.13e-3,
    0b1011: 4.26e-3,
    0b1100: 8.51e-3,
    0b1101: 17.02e-3,
    0b1110: 34.05e-3,
    0b1111: 68.10e-3,
}


@dataclass(frozen=True, slots=True)
class Config:
    """The fields of the configuration register."""

    bus_range: int  # 16 or 32 V
    shunt_range: float  # 0.04, 0.08, 0.16 or 0.32 V
    badc: int = ADC_12BIT
    sadc: int = ADC_12BIT
    mode: int = MODE_CONTINUOUS
    reset: bool = False

    @classmethod
    def from_word(cls, word: int) -> Config:
        """Split a configuration register word into its fields."""
        return cls(
            bus_range=32 if word >> 13 & 1 else 16,
            shunt_range=SHUNT_RANGES[word >> 11 & 0b11],
            badc=word >> 7 & 0b1111,
            sadc=word >> 3 & 0b1111,
            mode=word & 0b111,
            reset=bool(word & RST),
        )

    def to_word(self) -> int:
        """The configuration register word of these fields."""
        return (
            (RST if self.reset else 0)
            | BRNG[self.bus_range] << 13
            | PG[self.shunt_range] << 11
            | self.badc << 7
            | self.sadc << 3
            | self.mode
        )

    @property
    def conversion_time(self) -> float:
        """Seconds for one shunt and one bus conversion (typical)."""
        return ADC_TIME[self.badc & 0b1111] + ADC_TIME[self.sadc & 0b1111]


def calibration(current_lsb: float, r_shunt: float) -> int:
    """Cal = trunc(0.04096 / (Current_LSB * R_SHUNT)), in decimal so 4096 stays 4096."""
    value = Decimal("0.04096") / (Decimal(repr(current_lsb)) * Decimal(repr(r_shunt)))
    return int(value.to_integral_value(ROUND_DOWN))


@dataclass(frozen=True, slots=True)
class Scaling:
    """What a shunt and a maximum current make of the calibration and the LSBs."""

    calibration: int  # the word written to the calibration register
    current_lsb: float  # A per current register count, as the chip's arithmetic gives it
    shunt_range: float  # smallest PGA range that covers max current * shunt, V

    @property
    def power_lsb(self) -> float:
        """W per power register count (20 * Current_LSB)."""
        return 20.0 * self.current_lsb


def scaling(r_shunt: float, max_expected_amps: float) -> Scaling:
    """Calibration for the finest current LSB that still covers ``max_expected_amps``.

    Current_LSB starts at max expected / (2^15 - 1), so the largest current fits the signed
    register; Cal is truncated, capped at FFFEh with its void bit 0 cleared, and lowered
    until the shunt reading at that current cannot overflow the chip's Current register.
    The LSB is then recomputed from the Cal the chip really uses.
    """
    needed = max_expected_amps * r_shunt
    shunt_range = next((r for r in SHUNT_RANGES if needed <= r * (1 + 1e-9)), None)
    if shunt_range is None:
        raise ValueError(
            f"{max_expected_amps:g} A through {r_shunt:g} ohm drops {needed * 1000:g} mV, "
            "beyond the INA219's 320 mV shunt range"
        )
    cal = min(calibration(max_expected_amps / 32767.0, r_shunt), CAL_MAX) & CAL_MAX
    top = round(needed / SHUNT_LSB)
    while cal > 2 and top * cal // 4096 > 32767:
        cal -= 2
    return Scaling(cal, 0.04096 / (cal * r_shunt), shunt_range)


def shunt_volts(word: int) -> float:
    """Volts from the shunt voltage register (signed, 10 uV per count at every PGA)."""
    return to_int16(word) * SHUNT_LSB


def shunt_saturated(word: int, shunt_range: float) -> bool:
    """True when the shunt reading sits at the end of its PGA range."""
    return abs(to_int16(word)) >= round(shunt_range / SHUNT_LSB)


@dataclass(frozen=True, slots=True)
class Bus:
    """The bus voltage register: 4 mV counts and the two flags."""

    volts: float
    counts: int
    ready: bool  # CNVR: a conversion completed since the last power register read
    overflow: bool  # OVF: the current or power calculation overflowed


def bus(word: int) -> Bus:
    """Decode the bus voltage register (BD at bits 15..3, CNVR bit 1, OVF bit 0)."""
    counts = word >> 3 & 0x1FFF
    return Bus(counts * BUS_LSB, counts, bool(word & CNVR), bool(word & OVF))


def current_amps(word: int, current_lsb: float) -> float:
    """Amperes from the current register (signed)."""
    return to_int16(word) * current_lsb


def power_watts(word: int, current_lsb: float) -> float:
    """Watts from the power register (unsigned, Power_LSB = 20 * Current_LSB)."""
    return (word & 0xFFFF) * 20.0 * current_lsb
