"""Modbus buses, points and devices: the config fragment of the Modbus driver.

Point and forbidden addresses are written as the device's manual numbers them; the wire
address is that plus the device's ``address_offset`` for the table (-1 for a manual that
counts from 1). Point types and worked examples: docs/modbus-points.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edgetwin.config.common import DeviceBase, Model, Name, PointBase
from edgetwin.protocols.modbus.codec import MAX_STRING, ByteOrder, PointType, register_count
from edgetwin.protocols.modbus.plan import MAX_BITS, MAX_REGISTERS, merge_ranges


class ModbusTcpBusConfig(Model):
    """A Modbus TCP endpoint (a device, or a gateway with several unit ids behind it)."""

    kind: Literal["modbus_tcp"]
    name: Name
    host: str
    port: int = Field(502, ge=1, le=65535)
    timeout: float = Field(1.0, gt=0, le=60)


class ModbusRtuBusConfig(Model):
    """An RS-485/RS-232 line with Modbus RTU units on it; one transaction at a time."""

    kind: Literal["modbus_rtu"]
    name: Name
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...")
    baudrate: int = Field(9600, ge=300, le=4_000_000)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    timeout: float = Field(1.0, gt=0, le=60)


class ModbusRtuTcpBusConfig(Model):
    """A serial gateway that passes raw RTU frames (with CRC) over a TCP connection."""

    kind: Literal["modbus_rtu_tcp"]
    name: Name
    host: str
    port: int = Field(502, ge=1, le=65535)
    timeout: float = Field(1.0, gt=0, le=60)


ModbusBusConfig = ModbusTcpBusConfig | ModbusRtuBusConfig | ModbusRtuTcpBusConfig

Table = Literal["coil", "discrete", "holding", "input"]
BIT_TABLES = frozenset({"coil", "discrete"})


class ModbusPointConfig(PointBase):
    """One value read from a Modbus device."""

    table: Table
    address: int = Field(ge=0, le=65535)
    type: PointType = "uint16"
    order: ByteOrder = "ABCD"
    bit: int | None = Field(None, ge=0, le=15, description="bool in a register: which bit")
    length: int | None = Field(
        None, ge=1, le=MAX_STRING, description="string: characters (two per register)"
    )
    scale: float = 1.0
    offset: float = 0.0

    @property
    def quantum(self) -> float | None:
        """The resolution if given, else one raw count of an integer or bit point, scaled."""
        if self.resolution is not None:
            return self.resolution
        if self.type.startswith(("int", "uint")) or self.type == "bool":
            return abs(self.scale)
        return None

    @property
    def count(self) -> int:
        """Addresses the point occupies in its table (registers, or 1 bit)."""
        if self.table in BIT_TABLES or self.type == "bool":
            return 1
        return register_count(self.type, self.length)

    @model_validator(mode="after")
    def _fits(self) -> ModbusPointConfig:
        bit_table = self.table in BIT_TABLES
        if bit_table and self.type != "bool":
            raise ValueError(
                f"type {self.type!r} does not fit table {self.table!r} "
                "(coils and discrete inputs are bool; registers are numeric, string or a bit)"
            )
        if self.bit is not None and (bit_table or self.type != "bool"):
            raise ValueError(
                "bit selects a bool in a register: needs type 'bool' and a register table"
            )
        if not bit_table and self.type == "bool" and self.bit is None:
            raise ValueError(
                f"type 'bool' does not fit table {self.table!r} without a bit "
                "(a bool in a register names its bit: bit = 0..15)"
            )
        if (self.length is not None) != (self.type == "string"):
            raise ValueError("length (characters) is required for strings and only for them")
        if self.type == "string":
            self._text_only()
        last = self.address + self.count - 1
        if last > 65535:
            raise ValueError(f"register out of range: {self.type} at {self.address} ends at {last}")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self

    def _text_only(self) -> None:
        if self.model != "none":
            raise ValueError("a string point is not twinned: set model = 'none'")
        numeric = {
            "scale": self.scale != 1.0,
            "offset": self.offset != 0.0,
            "range": self.range is not None,
            "resolution": self.resolution is not None,
            "deadband": self.deadband is not None,
        }
        if wrong := [key for key, used in numeric.items() if used]:
            raise ValueError(f"a string point takes no {', '.join(wrong)}")


class ModbusDeviceConfig(DeviceBase):
    """A Modbus unit on a bus, its quirks and the points read from it."""

    driver: Literal["modbus"] = "modbus"
    unit: int = Field(1, ge=0, le=255)
    max_gap: int = Field(8, ge=0, le=124, description="unused registers read through")
    max_registers: int = Field(MAX_REGISTERS, ge=1, le=MAX_REGISTERS)
    max_bits: int = Field(MAX_BITS, ge=1, le=MAX_BITS, description="coils/inputs per read")
    one_point_per_request: bool = Field(False, description="quirk: never coalesce points")
    request_pause: float = Field(
        0.0, ge=0, le=10, description="quirk: s of quiet line before each request to it"
    )
    address_offset: dict[Table, int] = Field(
        default_factory=dict, description="wire address = address + offset, per table"
    )
    write_multiple: bool = Field(False, description="quirk: only FC15/FC16, never FC05/FC06")
    forbidden: dict[Table, list[tuple[int, int]]] = Field(
        default_factory=dict, description="inclusive address ranges never to be read"
    )
    points: list[ModbusPointConfig] = Field(min_length=1)

    def wire_address(self, table: Table, address: int) -> int:
        """The address on the wire for a configured ``address`` of ``table``."""
        return address + self.address_offset.get(table, 0)

    @model_validator(mode="after")
    def _addresses(self) -> ModbusDeviceConfig:
        for table, ranges in self.forbidden.items():
            for first, last in ranges:
                if not 0 <= first <= last <= 65535:
                    raise ValueError(
                        f"forbidden {table} range {first}..{last} is not within 0..65535"
                    )
        merged = {table: merge_ranges(ranges) for table, ranges in self.forbidden.items()}
        for p in self.points:
            limit = self.max_bits if p.table in BIT_TABLES else self.max_registers
            if p.count > limit:
                raise ValueError(
                    f"point {p.name!r} takes {p.count} registers, more than max_registers {limit}"
                )
            first = self.wire_address(p.table, p.address)
            if first < 0 or first + p.count - 1 > 65535:
                raise ValueError(
                    f"point {p.name!r}: wire address {first} (address_offset "
                    f"{self.address_offset.get(p.table, 0)}) is out of 0..65535"
                )
            last = p.address + p.count - 1
            for lo, hi in merged.get(p.table, []):
                if lo <= last and p.address <= hi:
                    raise ValueError(
                        f"point {p.name!r} ({p.table} {p.address}..{last}) lies in the "
                        f"forbidden range {lo}..{hi}"
                    )
        return self
