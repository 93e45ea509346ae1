"""Register words as devices put them on the wire, written out per byte order.

A reference independent of edgetwin's codec (its swap logic is what the tests check).
"""

from __future__ import annotations

import struct

# Byte positions on the wire for each order, A = most significant byte of the big-endian
# value: the layouts the order names stand for, written out rather than computed.
WIRE_BYTES = {
    2: {"ABCD": [0, 1], "CDAB": [0, 1], "BADC": [1, 0], "DCBA": [1, 0]},
    4: {"ABCD": [0, 1, 2, 3], "CDAB": [2, 3, 0, 1], "BADC": [1, 0, 3, 2], "DCBA": [3, 2, 1, 0]},
    8: {
        "ABCD": [0, 1, 2, 3, 4, 5, 6, 7],
        "CDAB": [6, 7, 4, 5, 2, 3, 0, 1],
        "BADC": [1, 0, 3, 2, 5, 4, 7, 6],
        "DCBA": [7, 6, 5, 4, 3, 2, 1, 0],
    },
}
FORMATS = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}


def wire_words(value: float, vtype: str, order: str) -> list[int]:
    """Register words of ``value`` as a device with that order puts them on the wire."""
    big = struct.pack(">" + FORMATS[vtype], value)
    wire = bytes(big[i] for i in WIRE_BYTES[len(big)][order])
    return [wire[i] << 8 | wire[i + 1] for i in range(0, len(wire), 2)]
