"""Register codec: known wire layouts, and round trips for every type and order."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetwin.protocols.modbus.codec import (
    INT_RANGE,
    REGISTER_COUNT,
    WordDecoder,
    decode,
    decode_string,
    encode,
    encode_string,
    get_bit,
    register_count,
    set_bit,
)
from tests.support.wire import FORMATS, wire_words

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


@given(data=st.data(), order=st.sampled_from(ORDERS), vtype=st.sampled_from(sorted(FORMATS)))
def test_decode_matches_the_written_out_byte_layout(
    data: st.DataObject, order: str, vtype: str
) -> None:
    if vtype.startswith("float"):
        value: float = data.draw(st.floats(width=32 if vtype == "float32" else 64))
    else:
        lo, hi = INT_RANGE[vtype]
        value = data.draw(st.integers(lo, hi))
    words = wire_words(value, vtype, order)
    out = decode(words, vtype, order)  # type: ignore[arg-type]
    assert (math.isnan(out) and math.isnan(value)) or out == float(value)
    if math.isnan(out) or (isinstance(value, int) and abs(value) > 2**53):
        return  # NaN payloads and integers beyond float64's exact range do not come back
    assert encode(out, vtype, order) == words  # type: ignore[arg-type]


def _outcome(fn: object, *args: object) -> tuple[str, object]:
    try:
        value = fn(*args)  # type: ignore[operator]
    except ValueError as exc:
        return "ValueError", str(exc)
    return "value", "nan" if math.isnan(value) else value


@given(
    words=st.lists(st.integers(-2, 0x10001), max_size=5),
    vtype=st.sampled_from(sorted(FORMATS)),
    order=st.sampled_from(ORDERS),
)
def test_word_decoder_is_decode(words: list[int], vtype: str, order: str) -> None:
    # Any words, also too few, too many or not 16-bit: the same value or the same error.
    fast = WordDecoder(vtype, order)  # type: ignore[arg-type]
    assert _outcome(fast, words) == _outcome(decode, words, vtype, order)


@given(data=st.data(), order=st.sampled_from(ORDERS), vtype=st.sampled_from(sorted(FORMATS)))
def test_word_decoder_reads_wire_layouts(data: st.DataObject, order: str, vtype: str) -> None:
    if vtype.startswith("float"):
        value: float = data.draw(st.floats(width=32 if vtype == "float32" else 64))
    else:
        value = data.draw(st.integers(*INT_RANGE[vtype]))
    out = WordDecoder(vtype, order)(wire_words(value, vtype, order))  # type: ignore[arg-type]
    assert (math.isnan(out) and math.isnan(value)) or out == float(value)


def test_word_decoder_refuses_bool() -> None:
    with pytest.raises(ValueError, match="bit tables"):
        WordDecoder("bool")


@given(
    words=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4), order=st.sampled_from(ORDERS)
)
def test_any_words_decode_to_a_float_and_re_encode(words: list[int], order: str) -> None:
    vtype = {1: "uint16", 2: "uint32", 4: "uint64"}.get(len(words))
    if vtype is None:
        return
    value = decode(words, vtype, order)  # type: ignore[arg-type]
    if value <= 2**53:
        assert encode(value, vtype, order) == words  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "vtype"),
    [
        (70000, "uint16"),
        (-1, "uint16"),
        (40000, "int16"),
        (2**32, "uint32"),
        (-(2**31) - 1, "int32"),
    ],
)
def test_encode_refuses_values_outside_the_type(value: int, vtype: str) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode(value, vtype)  # type: ignore[arg-type]


def test_encode_rounds_to_the_nearest_integer_and_refuses_non_finite() -> None:
    assert encode(1449.6, "uint16") == [1450]
    assert encode(-0.4, "int16") == [0]
    with pytest.raises(ValueError, match="cannot hold"):
        encode(math.nan, "int32")
    with pytest.raises(ValueError, match="does not fit"):
        encode(1e39, "float32")


def test_string_known_layouts() -> None:
    # "PD-100" = 50 44 2D 31 30 30; a 7-character field takes 4 registers, NUL padded.
    assert encode_string("PD-100", 7) == [0x5044, 0x2D31, 0x3030, 0x0000]
    assert encode_string("PD-100", 7, "BADC") == [0x4450, 0x312D, 0x3030, 0x0000]
    assert decode_string([0x5044, 0x2D31, 0x3030, 0x0000]) == "PD-100"
    assert decode_string([0x4450, 0x312D, 0x3030, 0x0000], "BADC") == "PD-100"
    assert decode_string([0x4142, 0x2020]) == "AB"  # space padding goes
    assert decode_string([0x4100, 0x4243]) == "A"  # text ends at the first NUL
    assert register_count("string", 7) == 4
    with pytest.raises(ValueError, match="holds 3"):
        encode_string("ABCD", 3)


@given(
    text=st.text(st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=40).map(str.rstrip),
    order=st.sampled_from(ORDERS),
    spare=st.integers(0, 5),
)
def test_string_round_trip(text: str, order: str, spare: int) -> None:
    length = len(text.encode()) + spare or 1
    words = encode_string(text, length, order)  # type: ignore[arg-type]
    assert len(words) == register_count("string", length)
    assert decode_string(words, order) == text  # type: ignore[arg-type]


@given(words=st.lists(st.integers(0, 0xFFFF), max_size=8), order=st.sampled_from(ORDERS))
def test_any_words_decode_to_some_text(words: list[int], order: str) -> None:
    text = decode_string(words, order)  # type: ignore[arg-type]
    assert "\0" not in text
    assert len(text) <= 2 * len(words)


@given(word=st.integers(0, 0xFFFF), bit=st.integers(0, 15), on=st.booleans())
def test_bits_of_a_register(word: int, bit: int, on: bool) -> None:
    assert get_bit(word, bit) == bool(word & (1 << bit))
    changed = set_bit(word, bit, on)
    assert get_bit(changed, bit) is on
    assert changed & ~(1 << bit) == word & ~(1 << bit)  # the other bits stay
    assert 0 <= changed <= 0xFFFF


def test_bit_numbers_are_checked() -> None:
    with pytest.raises(ValueError, match=r"0\.\.15"):
        get_bit(1, 16)
    with pytest.raises(ValueError, match=r"0\.\.15"):
        set_bit(1, -1, True)
