"""Serial sensor buses and devices: the config fragment of the serial sensor driver."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgetwin.config.common import DeviceBase, Model, Name, PointBase


class SerialBusConfig(Model):
    """A serial port (RS-232/RS-485/USB-serial) with one sensor on it."""

    kind: Literal["serial"]
    name: Name
    port: str
    baudrate: int = Field(9600, ge=50, le=4_000_000)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: float = Field(1, description="1, 1.5 or 2")
    timeout: float = Field(1.0, gt=0, le=60)


class SerialPointConfig(PointBase):
    """One value a serial sensor reports."""

    field: str = Field(description="the named group, key or frame field the value comes from")
    scale: float = 1.0
    offset: float = 0.0


class SerialDeviceConfig(DeviceBase):
    """A sensor that speaks a line, NMEA or binary-frame protocol on a serial bus."""

    driver: Literal["serial"]
    points: list[SerialPointConfig] = Field(min_length=1)
