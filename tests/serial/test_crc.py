"""CRCs against published check values and a slow, obviously-correct bitwise reference."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgetwin.protocols.serial.crc import crc, crc8_maxim_dow, crc8_sensirion, crc16_modbus

CHECK = b"123456789"


def test_published_check_values() -> None:
    # reveng CRC catalogue: CRC-16/MODBUS, CRC-8/MAXIM-DOW, CRC-8/NRSC-5 (Sensirion's CRC).
    assert crc16_modbus(CHECK) == 0x4B37
    assert crc8_maxim_dow(CHECK) == 0xA1
    assert crc8_sensirion(CHECK) == 0xF7


def test_modbus_request_from_the_spec_examples() -> None:
    # Read 10 holding registers from unit 1: 01 03 00 00 00 0A, CRC on the wire C5 CD.
    value = crc16_modbus(bytes.fromhex("01030000000A"))
    assert value.to_bytes(2, "little") == bytes.fromhex("C5CD")


def test_sensirion_datasheet_example() -> None:
    # SHT3x datasheet, "Checksum Calculation": CRC(0xBEEF) = 0x92.
    assert crc8_sensirion(b"\xbe\xef") == 0x92


def _reference(data: bytes, *, width: int, poly: int, init: int, reflect: bool) -> int:
    """Bit by bit, straight from the Rocksoft model (xorout 0 for all three)."""
    top, mask = 1 << (width - 1), (1 << width) - 1
    reg = init
    for value in data:
        byte = int(f"{value:08b}"[::-1], 2) if reflect else value
        reg ^= byte << (width - 8)
        for _ in range(8):
            reg = ((reg << 1) ^ poly) & mask if reg & top else (reg << 1) & mask
    if reflect:
        reg = int(f"{reg:0{width}b}"[::-1], 2)
    return reg


@given(st.binary(max_size=64))
def test_tables_match_the_bitwise_reference(data: bytes) -> None:
    assert crc("crc16_modbus", data) == _reference(
        data, width=16, poly=0x8005, init=0xFFFF, reflect=True
    )
    assert crc("crc8_maxim_dow", data) == _reference(
        data, width=8, poly=0x31, init=0x00, reflect=True
    )
    assert crc("crc8_sensirion", data) == _reference(
        data, width=8, poly=0x31, init=0xFF, reflect=False
    )


@given(st.binary(min_size=1, max_size=64))
def test_appending_the_crc_leaves_a_zero_residue(data: bytes) -> None:
    framed = data + crc16_modbus(data).to_bytes(2, "little")
    assert crc16_modbus(framed) == 0
