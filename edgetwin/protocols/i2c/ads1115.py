"""TI ADS1115: pointer registers, config register fields and the PGA conversion.

Source: ADS111x datasheet SBAS444, 9.3.3 (full-scale range and LSB, table 1), 9.5
(output codes, table 3: 7FFFh at +FS, 8000h at -FS) and 9.6 (register map; config register
reset value 8583h, Lo_thresh 8000h, Hi_thresh 7FFFh). Registers are big-endian 16-bit words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edgetwin.protocols.i2c import to_int16

REG_CONVERSION = 0
REG_CONFIG = 1
REG_LO_THRESH = 2
REG_HI_THRESH = 3

CONFIG_RESET = 0x8583
LO_THRESH_RESET = 0x8000
HI_THRESH_RESET = 0x7FFF

OS = 1 << 15  # write: start a single conversion; read: 1 = no conversion in progress
MODE_SINGLE = 1 << 8
COMP_QUE_DISABLE = 0b11

Channel = Literal[
    "ain0-ain1", "ain0-ain3", "ain1-ain3", "ain2-ain3", "ain0", "ain1", "ain2", "ain3"
]
#: MUX[14:12] code of each input pair (single-ended inputs are measured against GND).
MUX: dict[str, int] = {
    "ain0-ain1": 0,
    "ain0-ain3": 1,
    "ain1-ain3": 2,
    "ain2-ain3": 3,
    "ain0": 4,
    "ain1": 5,
    "ain2": 6,
    "ain3": 7,
}
#: PGA[11:9] code of each full-scale range, volts (codes 6 and 7 also mean 0.256 V).
PGA: dict[float, int] = {6.144: 0, 4.096: 1, 2.048: 2, 1.024: 3, 0.512: 4, 0.256: 5}
FSR_OF_CODE: tuple[float, ...] = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256)
#: DR[7:5] code of each data rate, samples per second.
DATA_RATE: dict[int, int] = {8: 0, 16: 1, 32: 2, 64: 3, 128: 4, 250: 5, 475: 6, 860: 7}
RATE_OF_CODE: tuple[int, ...] = (8, 16, 32, 64, 128, 250, 475, 860)


@dataclass(frozen=True, slots=True)
class Config:
    """The fields of the config register."""

    os: bool
    mux: int
    fsr: float
    single_shot: bool
    data_rate: int
    comp_mode: int = 0
    comp_pol: int = 0
    comp_lat: int = 0
    comp_que: int = COMP_QUE_DISABLE

    @classmethod
    def from_word(cls, word: int) -> Config:
        """Split a config register word into its fields."""
        return cls(
            os=bool(word & OS),
            mux=word >> 12 & 0b111,
            fsr=FSR_OF_CODE[word >> 9 & 0b111],
            single_shot=bool(word & MODE_SINGLE),
            data_rate=RATE_OF_CODE[word >> 5 & 0b111],
            comp_mode=word >> 4 & 1,
            comp_pol=word >> 3 & 1,
            comp_lat=word >> 2 & 1,
            comp_que=word & 0b11,
        )

    def to_word(self) -> int:
        """The config register word of these fields."""
        return (
            (OS if self.os else 0)
            | self.mux << 12
            | PGA[self.fsr] << 9
            | (MODE_SINGLE if self.single_shot else 0)
            | DATA_RATE[self.data_rate] << 5
            | self.comp_mode << 4
            | self.comp_pol << 3
            | self.comp_lat << 2
            | self.comp_que
        )


def single_shot(channel: str, fsr: float, data_rate: int) -> int:
    """Config word that starts one conversion of ``channel`` (comparator disabled)."""
    return Config(True, MUX[channel], fsr, True, data_rate).to_word()


def lsb(fsr: float) -> float:
    """Volts per code at a full-scale range (FSR / 2^15)."""
    return fsr / 32768.0


def volts(word: int, fsr: float) -> float:
    """Volts from a conversion register word."""
    return to_int16(word) * lsb(fsr)


def saturated(word: int) -> bool:
    """True when the code is clipped at +FS or -FS (the input may be beyond the range)."""
    return word in (0x7FFF, 0x8000)


def conversion_time(data_rate: int) -> float:
    """Seconds one single-shot conversion takes at a data rate (1 / DR, nominal)."""
    return 1.0 / data_rate
