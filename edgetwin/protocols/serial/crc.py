"""CRC-16/MODBUS and two CRC-8s, table-driven.

Parameters (Williams/"Rocksoft" model, as catalogued by reveng):
CRC-16/MODBUS  poly 0x8005 reflected, init 0xFFFF, xorout 0; check("123456789") = 0x4B37.
CRC-8/MAXIM-DOW (Dallas 1-Wire) poly 0x31 reflected, init 0x00; check = 0xA1.
CRC-8 Sensirion (SHT3x/SHT4x/SCD4x; catalogued as CRC-8/NRSC-5) poly 0x31, not reflected,
init 0xFF; check = 0xF7.
"""

from __future__ import annotations

from typing import Literal

CrcKind = Literal["crc16_modbus", "crc8_maxim_dow", "crc8_sensirion"]
CRC_SIZE: dict[str, int] = {"crc16_modbus": 2, "crc8_maxim_dow": 1, "crc8_sensirion": 1}


def _reflected_table(poly: int, width: int) -> tuple[int, ...]:
    table = []
    for byte in range(256):
        reg = byte
        for _ in range(8):
            reg = (reg >> 1) ^ poly if reg & 1 else reg >> 1
        table.append(reg & ((1 << width) - 1))
    return tuple(table)


def _msb_table(poly: int) -> tuple[int, ...]:
    table = []
    for byte in range(256):
        reg = byte
        for _ in range(8):
            reg = ((reg << 1) ^ poly) if reg & 0x80 else reg << 1
        table.append(reg & 0xFF)
    return tuple(table)


_CRC16_MODBUS = _reflected_table(0xA001, 16)  # 0x8005 bit-reversed
_CRC8_MAXIM = _reflected_table(0x8C, 8)  # 0x31 bit-reversed
_CRC8_SENSIRION = _msb_table(0x31)


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` (sent low byte first in Modbus RTU)."""
    reg = 0xFFFF
    for b in data:
        reg = (reg >> 8) ^ _CRC16_MODBUS[(reg ^ b) & 0xFF]
    return reg


def crc8_maxim_dow(data: bytes) -> int:
    """CRC-8/MAXIM-DOW (Dallas/Maxim 1-Wire) of ``data``."""
    reg = 0
    for b in data:
        reg = _CRC8_MAXIM[reg ^ b]
    return reg


def crc8_sensirion(data: bytes) -> int:
    """The CRC-8 of Sensirion sensors (poly 0x31, init 0xFF, MSB first) of ``data``."""
    reg = 0xFF
    for b in data:
        reg = _CRC8_SENSIRION[reg ^ b]
    return reg


def crc(kind: CrcKind, data: bytes) -> int:
    """The CRC of ``data`` by kind."""
    if kind == "crc16_modbus":
        return crc16_modbus(data)
    if kind == "crc8_maxim_dow":
        return crc8_maxim_dow(data)
    return crc8_sensirion(data)
