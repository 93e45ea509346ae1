"""Register codec: known wire layouts, and round trips for every type and order."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetwin.protocols.modbus.codec import REGISTER_COUNT, decode, encode

ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]

# The wire bytes of float32 1.0 are 3F 80 00 00 (A=3F B=80 C=00 D=00).
KNOWN_FLOAT32_ONE = {
    "ABCD": [0x3F80, 0x0000],
    "CDAB": [0x0000, 0x3F80],
    "BADC": [0x803F, 0x0000],
    "DCBA": [0x0000, 0x803F],
}


@pytest.mark.parametrize("order", ORDERS)
def test_float32_known_layouts(order: str) -> None:
    assert encode(1.0, "float32", order) == KNOWN_FLOAT32_ONE[order]  # type: ignore[arg-type]
    assert decode(KNOWN_FLOAT32_ONE[order], "float32", order) == 1.0  # type: ignore[arg-type]


def test_uint32_word_swap_and_int16_sign() -> None:
    assert decode([0x0002, 0x0001], "uint32", "CDAB") == 0x00010002
    assert decode([0x0001, 0x0002], "uint32", "ABCD") == 0x00010002
    assert decode([0xFFFF], "int16") == -1
    assert decode([0xFFFF], "uint16") == 65535
    assert decode([0x0100], "int16", "BADC") == 1


def test_int64_orders_match_struct() -> None:
    raw = struct.pack(">q", -1234567890123)
    words = [raw[i] << 8 | raw[i + 1] for i in range(0, 8, 2)]
    assert decode(words, "int64", "ABCD") == -1234567890123
    assert decode(list(reversed(words)), "int64", "CDAB") == -1234567890123


INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**53), 2**53),  # exactly representable as float
    "uint64": (0, 2**53),
}


@given(data=st.data(), order=st.sampled_from(ORDERS), vtype=st.sampled_from(sorted(INT_RANGES)))
def test_integer_round_trip(data: st.DataObject, order: str, vtype: str) -> None:
    lo, hi = INT_RANGES[vtype]
    value = data.draw(st.integers(lo, hi))
    words = encode(value, vtype, order)  # type: ignore[arg-type]
    assert len(words) == REGISTER_COUNT[vtype]
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode(words, vtype, order) == value  # type: ignore[arg-type]


@given(value=st.floats(width=32), order=st.sampled_from(ORDERS))
def test_float32_round_trip(value: float, order: str) -> None:
    out = decode(encode(value, "float32", order), "float32", order)  # type: ignore[arg-type]
    assert (math.isnan(out) and math.isnan(value)) or out == value


@given(value=st.floats(), order=st.sampled_from(ORDERS))
def test_float64_round_trip(value: float, order: str) -> None:
    out = decode(encode(value, "float64", order), "float64", order)  # type: ignore[arg-type]
    assert (math.isnan(out) and math.isnan(value)) or out == value


def test_decode_rejects_wrong_length_and_non_words() -> None:
    with pytest.raises(ValueError, match="needs 2 registers"):
        decode([1], "float32")
    with pytest.raises(ValueError, match="16-bit"):
        decode([0x10000], "uint16")
    with pytest.raises(ValueError, match="bit tables"):
        decode([1], "bool")
