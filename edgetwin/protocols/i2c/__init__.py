"""I2C chip conversions: each datasheet's register layouts and formulas as pure functions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChipInfo:
    """What edgetwin knows of a chip before talking to it: quantities and addresses."""

    title: str
    quantities: tuple[str, ...]
    units: tuple[str, ...]
    addresses: tuple[int, ...]


CHIPS: dict[str, ChipInfo] = {
    "bme280": ChipInfo(
        "Bosch BME280",
        ("temperature", "pressure", "humidity"),
        ("°C", "Pa", "%RH"),
        (0x76, 0x77),
    ),
    "sht3x": ChipInfo("Sensirion SHT3x", ("temperature", "humidity"), ("°C", "%RH"), (0x44, 0x45)),
    "ads1115": ChipInfo("TI ADS1115", ("voltage",), ("V",), (0x48, 0x49, 0x4A, 0x4B)),
    "ina219": ChipInfo(
        "TI INA219",
        ("shunt_voltage", "bus_voltage", "current", "power"),
        ("V", "V", "A", "W"),
        tuple(range(0x40, 0x50)),
    ),
}


def to_int16(word: int) -> int:
    """A 16-bit register word read as two's complement."""
    word &= 0xFFFF
    return word - 0x10000 if word & 0x8000 else word
