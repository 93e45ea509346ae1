"""I2C buses and chips: the config fragment of the I2C drivers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from edgetwin.config.common import DeviceBase, Model, Name, PointBase


class I2cBusConfig(Model):
    """An I2C bus, /dev/i2c-N."""

    kind: Literal["i2c"]
    name: Name
    bus: int = Field(ge=0, le=255, description="N of /dev/i2c-N")
    timeout: float = Field(1.0, gt=0, le=60)


class I2cPointConfig(PointBase):
    """One quantity a chip measures (its name is the quantity, e.g. temperature)."""


class I2cDeviceConfig(DeviceBase):
    """A chip at an address on an I2C bus."""

    driver: Literal["i2c"]
    chip: str
    address: int = Field(ge=0x03, le=0x77)
    points: list[I2cPointConfig] = Field(min_length=1)
