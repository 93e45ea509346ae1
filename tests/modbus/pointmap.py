"""One register map with every point type and order, and what each point must read.

The words come from the values through the byte layouts written out in lines.py; the
libmodbus peer (test_libmodbus.py) lays out the same map in C on its own.
"""

from __future__ import annotations

import math
import struct

from edgetwin.config.modbus import ModbusPointConfig
from tests.modbus.lines import text_words
from tests.support.wire import wire_words

ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
F32_PI = struct.unpack(">f", struct.pack(">f", math.pi))[0]
VALUES: dict[str, float] = {
    "int16": -12345,
    "uint16": 54321,
    "int32": -123456789,
    "uint32": 3_000_000_000,
    "int64": -(2**53) + 7,
    "uint64": 2**63 + 2**11,
    "float32": F32_PI,
    "float64": -math.e,
}
STATUS = 0xA5C3  # bits 0, 1, 6, 7, 8, 10, 13, 15 set
COILS = [True, False, True, True, False, False, True, False, False, True]


def build_map() -> tuple[list[int], list[ModbusPointConfig], dict[str, float], dict[str, str]]:
    """Holding registers, the points reading them, and what each point must read."""
    words: list[int] = []
    points: list[ModbusPointConfig] = []
    expect: dict[str, float] = {}
    for vtype, value in VALUES.items():
        for order in ORDERS:
            name = f"{vtype}_{order}"
            points.append(
                ModbusPointConfig(
                    name=name, table="holding", address=len(words), type=vtype, order=order
                )  # type: ignore[arg-type]
            )
            words += wire_words(value, vtype, order)
            expect[name] = float(value)
        words += [0xDEAD]  # an unused register between types: read through (max_gap)
    status_at = len(words)
    words.append(STATUS)
    for bit in (0, 1, 2, 7, 14, 15):
        name = f"status_bit{bit}"
        points.append(
            ModbusPointConfig(name=name, table="holding", address=status_at, type="bool", bit=bit)
        )
        expect[name] = float(STATUS >> bit & 1)
    scaled_at = len(words)
    words += wire_words(1234, "int16", "ABCD")
    points.append(
        ModbusPointConfig(
            name="scaled", table="holding", address=scaled_at, type="int16", scale=0.1, offset=-40
        )
    )
    expect["scaled"] = 1234 * 0.1 - 40
    texts = {"serial": "EDGETWIN-42", "model": "PD-100"}
    points.append(
        ModbusPointConfig(
            name="serial",
            table="holding",
            address=len(words),
            type="string",
            length=11,
            model="none",
        )
    )
    words += text_words("EDGETWIN-42", 6)
    points.append(
        ModbusPointConfig(
            name="model",
            table="holding",
            address=len(words),
            type="string",
            length=8,
            order="BADC",
            model="none",
        )
    )
    words += text_words("PD-100", 4, swap_bytes=True)
    for i, on in enumerate(COILS):
        points.append(ModbusPointConfig(name=f"coil{i}", table="coil", address=i, type="bool"))
        expect[f"coil{i}"] = float(on)
    points.append(
        ModbusPointConfig(name="in_f32", table="input", address=3, type="float32", order="CDAB")
    )
    expect["in_f32"] = F32_PI
    return words, points, expect, texts
