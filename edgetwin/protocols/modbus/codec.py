"""Register words ⇄ typed values, with per-point byte and word order.

Orders name the bytes of a 32-bit value as they travel on the wire, A being the most
significant: ABCD is big-endian words of big-endian bytes (the Modbus default), CDAB swaps
the words, BADC swaps the bytes inside each word, DCBA does both. The same two choices
apply to 16- and 64-bit values (a word swap reverses all four words of a 64-bit value) and
to strings (first character in the high byte under ABCD; a word swap reverses the words).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Literal, get_args

ValueType = Literal[
    "bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"
]
PointType = Literal[
    "bool",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
    "string",
]
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]

VALUE_TYPES: tuple[str, ...] = get_args(ValueType)
POINT_TYPES: tuple[str, ...] = get_args(PointType)
MAX_STRING = 250  # characters: 125 registers, one read

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

INT_RANGE: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


def register_count(vtype: str, length: int | None = None) -> int:
    """Registers one value occupies; a string of ``length`` characters needs ceil(length/2)."""
    if vtype == "string":
        if length is None or not 1 <= length <= MAX_STRING:
            raise ValueError(f"a string needs a length of 1..{MAX_STRING} characters")
        return (length + 1) // 2
    return REGISTER_COUNT[vtype]


def _swaps(order: ByteOrder) -> tuple[bool, bool]:
    """Return (swap bytes within words, reverse word order)."""
    return order in {"BADC", "DCBA"}, order in {"CDAB", "DCBA"}


def _to_bytes(words: Sequence[int], order: ByteOrder) -> bytes:
    """Wire words → the value's bytes, most significant (or first character) first."""
    byte_swap, word_swap = _swaps(order)
    seq = list(reversed(words)) if word_swap else list(words)
    raw = bytearray()
    for w in seq:
        if not 0 <= w <= 0xFFFF:
            raise ValueError(f"register word {w} is not 16-bit")
        hi, lo = w >> 8, w & 0xFF
        raw += bytes((lo, hi)) if byte_swap else bytes((hi, lo))
    return bytes(raw)


def _to_words(raw: bytes, order: ByteOrder) -> list[int]:
    """The inverse of :func:`_to_bytes`."""
    byte_swap, word_swap = _swaps(order)
    words = []
    for i in range(0, len(raw), 2):
        hi, lo = raw[i], raw[i + 1]
        words.append((lo << 8 | hi) if byte_swap else (hi << 8 | lo))
    return list(reversed(words)) if word_swap else words


def decode(words: Sequence[int], vtype: ValueType, order: ByteOrder = "ABCD") -> float:
    """Decode the register words of one value (len == REGISTER_COUNT[vtype])."""
    if vtype == "bool":
        raise ValueError("bool values come from bit tables, not registers")
    need = REGISTER_COUNT[vtype]
    if len(words) != need:
        raise ValueError(f"{vtype} needs {need} registers, got {len(words)}")
    (value,) = struct.unpack(">" + _STRUCT[vtype], _to_bytes(words, order))
    return float(value)


class WordDecoder:
    """:func:`decode` for one type and order, its struct formats resolved once (a poll's hot path).

    ``WordDecoder(vtype, order)(words)`` returns what ``decode(words, vtype, order)`` returns and
    raises ValueError where it does.
    """

    __slots__ = ("_need", "_swap_words", "_value", "_vtype", "_words")

    def __init__(self, vtype: ValueType, order: ByteOrder = "ABCD") -> None:
        if vtype == "bool":
            raise ValueError("bool values come from bit tables, not registers")
        byte_swap, self._swap_words = _swaps(order)
        self._vtype = vtype
        self._need = REGISTER_COUNT[vtype]
        # Each word as two bytes, high first unless the order swaps them: the value's bytes.
        self._words = struct.Struct(("<" if byte_swap else ">") + f"{self._need}H")
        self._value = struct.Struct(">" + _STRUCT[vtype])

    def __call__(self, words: Sequence[int]) -> float:
        """The value of the register words of one value."""
        if len(words) != self._need:
            raise ValueError(f"{self._vtype} needs {self._need} registers, got {len(words)}")
        try:
            raw = self._words.pack(*(reversed(words) if self._swap_words else words))
        except struct.error as exc:
            _to_bytes(words, "ABCD")  # raises what decode() raises: the word that is not 16-bit
            raise ValueError(f"register words {list(words)} do not fit {self._vtype}") from exc
        return float(self._value.unpack(raw)[0])


def encode(value: float, vtype: ValueType, order: ByteOrder = "ABCD") -> list[int]:
    """Encode one value into register words; the inverse of :func:`decode`.

    Integer types take the value rounded to the nearest integer; ValueError if it is not
    finite or does not fit the type (float32 likewise if it overflows).
    """
    if vtype == "bool":
        raise ValueError("bool values go to bit tables, not registers")
    if vtype in INT_RANGE:
        if not math.isfinite(value):
            raise ValueError(f"{vtype} cannot hold {value}")
        number = round(value)
        lo, hi = INT_RANGE[vtype]
        if not lo <= number <= hi:
            raise ValueError(f"{number} does not fit {vtype} ({lo}..{hi})")
        packed = struct.pack(">" + _STRUCT[vtype], number)
    else:
        try:
            packed = struct.pack(">" + _STRUCT[vtype], value)
        except OverflowError as exc:
            raise ValueError(f"{value} does not fit {vtype}") from exc
    return _to_words(packed, order)


def decode_string(words: Sequence[int], order: ByteOrder = "ABCD") -> str:
    """Text from register words: two characters per word, cut at the first NUL.

    Trailing spaces (the usual padding) are removed; bytes that are not UTF-8 become U+FFFD.
    """
    raw = _to_bytes(words, order).split(b"\0", 1)[0]
    return raw.decode("utf-8", errors="replace").rstrip(" ")


def encode_string(text: str, length: int, order: ByteOrder = "ABCD") -> list[int]:
    """Register words for ``text`` in a field of ``length`` characters, NUL-padded."""
    raw = text.encode("utf-8")
    if len(raw) > length:
        raise ValueError(f"{text!r} is {len(raw)} bytes long; the field holds {length}")
    if b"\0" in raw:
        raise ValueError("text must not contain NUL")
    raw += b"\0" * (register_count("string", length) * 2 - len(raw))
    return _to_words(raw, order)


def get_bit(word: int, bit: int) -> bool:
    """Bit ``bit`` (0 = least significant) of a register word."""
    if not 0 <= bit <= 15:
        raise ValueError(f"bit {bit} is not 0..15")
    return bool(word >> bit & 1)


def set_bit(word: int, bit: int, on: bool) -> int:
    """``word`` with bit ``bit`` set or cleared."""
    if not 0 <= bit <= 15:
        raise ValueError(f"bit {bit} is not 0..15")
    return word | 1 << bit if on else word & ~(1 << bit) & 0xFFFF
