"""Register words ⇄ typed values, with per-point byte and word order.

Orders name the bytes of a 32-bit value as they travel on the wire, A being the most
significant: ABCD is big-endian words of big-endian bytes (the Modbus default), CDAB swaps
the words, BADC swaps the bytes inside each word, DCBA does both. The same two choices
apply to 16- and 64-bit values.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Literal, get_args

ValueType = Literal[
    "bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"
]
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]

VALUE_TYPES: tuple[str, ...] = get_args(ValueType)

REGISTER_COUNT: dict[str, int] = {
    "bool": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "int64": 4,
    "uint64": 4,
    "float32": 2,
    "float64": 4,
}

_STRUCT: dict[str, str] = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}


def _swaps(order: ByteOrder) -> tuple[bool, bool]:
    """Return (swap bytes within words, reverse word order)."""
    return order in {"BADC", "DCBA"}, order in {"CDAB", "DCBA"}


def decode(words: Sequence[int], vtype: ValueType, order: ByteOrder = "ABCD") -> float:
    """Decode the register words of one value (len == REGISTER_COUNT[vtype])."""
    if vtype == "bool":
        raise ValueError("bool values come from bit tables, not registers")
    need = REGISTER_COUNT[vtype]
    if len(words) != need:
        raise ValueError(f"{vtype} needs {need} registers, got {len(words)}")
    byte_swap, word_swap = _swaps(order)
    seq = list(reversed(words)) if word_swap else list(words)
    raw = bytearray()
    for w in seq:
        if not 0 <= w <= 0xFFFF:
            raise ValueError(f"register word {w} is not 16-bit")
        hi, lo = w >> 8, w & 0xFF
        raw += bytes((lo, hi)) if byte_swap else bytes((hi, lo))
    (value,) = struct.unpack(">" + _STRUCT[vtype], bytes(raw))
    return float(value)


def encode(value: float, vtype: ValueType, order: ByteOrder = "ABCD") -> list[int]:
    """Encode one value into register words; the inverse of :func:`decode`."""
    if vtype == "bool":
        raise ValueError("bool values go to bit tables, not registers")
    fmt = ">" + _STRUCT[vtype]
    packed = struct.pack(fmt, value if vtype.startswith("float") else int(value))
    byte_swap, word_swap = _swaps(order)
    words = []
    for i in range(0, len(packed), 2):
        hi, lo = packed[i], packed[i + 1]
        words.append((lo << 8 | hi) if byte_swap else (hi << 8 | lo))
    return list(reversed(words)) if word_swap else words
