"""Modbus buses, points and devices: the config fragment of the Modbus driver."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edgetwin.config.common import DeviceBase, Model, Name, PointBase
from edgetwin.protocols.modbus.codec import REGISTER_COUNT, ByteOrder, ValueType


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


class ModbusPointConfig(PointBase):
    """One value read from a Modbus device."""

    table: Table
    address: int = Field(ge=0, le=65535)
    type: ValueType = "uint16"
    order: ByteOrder = "ABCD"
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _fits(self) -> ModbusPointConfig:
        bit_table = self.table in {"coil", "discrete"}
        if bit_table != (self.type == "bool"):
            raise ValueError(
                f"type {self.type!r} does not fit table {self.table!r} "
                "(coils and discrete inputs are bool; registers are numeric)"
            )
        last = self.address + REGISTER_COUNT[self.type] - 1
        if last > 65535:
            raise ValueError(f"register out of range: {self.type} at {self.address} ends at {last}")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self


class ModbusDeviceConfig(DeviceBase):
    """A Modbus unit on a bus and the points read from it."""

    driver: Literal["modbus"] = "modbus"
    unit: int = Field(1, ge=0, le=255)
    max_gap: int = Field(8, ge=0, le=124, description="unused registers read through")
    max_registers: int = Field(125, ge=1, le=125)
    points: list[ModbusPointConfig] = Field(min_length=1)
