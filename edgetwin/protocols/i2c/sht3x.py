"""Sensirion SHT3x (SHT30/31/35): commands, CRC-8 and the conversions of the datasheet.

Source: SHT3x-DIS datasheet, section 4.3-4.13 (commands, status register), 4.12 (CRC: poly
0x31, init 0xFF, check 0xBEEF -> 0x92) and 4.13 (conversion of signal output). A measurement
answers six bytes: temperature word, CRC, humidity word, CRC; every word carries its own CRC.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

Repeatability = Literal["high", "medium", "low"]

#: Single shot, clock stretching disabled: the sensor NACKs a read header until it is done.
CMD_MEASURE: dict[Repeatability, int] = {"high": 0x2400, "medium": 0x240B, "low": 0x2416}
#: Single shot, clock stretching enabled: the sensor holds SCL until it is done.
CMD_MEASURE_STRETCH: dict[Repeatability, int] = {"high": 0x2C06, "medium": 0x2C0D, "low": 0x2C10}
CMD_READ_STATUS = 0xF32D
CMD_CLEAR_STATUS = 0x3041
CMD_SOFT_RESET = 0x30A2
CMD_HEATER_ON = 0x306D
CMD_HEATER_OFF = 0x3066
CMD_BREAK = 0x3093

#: Measurement duration (datasheet table 4), seconds: typical and maximum.
DURATION_TYP: dict[Repeatability, float] = {"high": 0.0125, "medium": 0.0045, "low": 0.0025}
DURATION_MAX: dict[Repeatability, float] = {"high": 0.015, "medium": 0.006, "low": 0.004}
#: Soft reset to idle, seconds (datasheet table 4, t_SR max 1.5 ms).
SOFT_RESET_TIME = 0.0015

STATUS_ALERT_PENDING = 1 << 15
STATUS_HEATER = 1 << 13
STATUS_RH_ALERT = 1 << 11
STATUS_T_ALERT = 1 << 10
STATUS_RESET_DETECTED = 1 << 4
STATUS_COMMAND_FAILED = 1 << 1
STATUS_WRITE_CRC_FAILED = 1 << 0
#: Status after power-up or a reset: alert pending and reset detected.
STATUS_AFTER_RESET = STATUS_ALERT_PENDING | STATUS_RESET_DETECTED


def crc8(data: bytes) -> int:
    """Sensirion CRC-8: polynomial 0x31 (x^8 + x^5 + x^4 + 1), init 0xFF, no final XOR."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def command(cmd: int) -> bytes:
    """The two bytes of a 16-bit command, MSB first."""
    return bytes([cmd >> 8 & 0xFF, cmd & 0xFF])


def word_with_crc(word: int) -> bytes:
    """A 16-bit word as the sensor sends it: MSB, LSB, CRC."""
    data = bytes([word >> 8 & 0xFF, word & 0xFF])
    return data + bytes([crc8(data)])


def words(data: bytes) -> Iterator[tuple[int, bool]]:
    """Each 3-byte group of an answer as (word, CRC valid)."""
    if len(data) % 3:
        raise ValueError(f"an answer is whole 3-byte words, got {len(data)} bytes")
    for i in range(0, len(data), 3):
        yield data[i] << 8 | data[i + 1], crc8(data[i : i + 2]) == data[i + 2]


def temperature(raw: int) -> float:
    """°C from the temperature word: T = -45 + 175 * S_T / (2^16 - 1)."""
    return -45.0 + 175.0 * raw / 65535.0


def humidity(raw: int) -> float:
    """%RH from the humidity word: RH = 100 * S_RH / (2^16 - 1)."""
    return 100.0 * raw / 65535.0
