"""I2C chip drivers (BME280, SHT3x, ADS1115, INA219) and the bus scan; see docs/i2c-chips.md."""

from __future__ import annotations

from edgetwin.config.i2c import I2cDeviceConfig
from edgetwin.drivers.i2c.ads1115 import Ads1115Device
from edgetwin.drivers.i2c.base import ChipDevice
from edgetwin.drivers.i2c.bme280 import Bme280Device
from edgetwin.drivers.i2c.ina219 import Ina219Device
from edgetwin.drivers.i2c.scan import identify, scan
from edgetwin.drivers.i2c.sht3x import Sht3xDevice
from edgetwin.transports.i2c import I2cBus

DRIVERS: dict[str, type[ChipDevice]] = {
    "bme280": Bme280Device,
    "sht3x": Sht3xDevice,
    "ads1115": Ads1115Device,
    "ina219": Ina219Device,
}

__all__ = [
    "DRIVERS",
    "Ads1115Device",
    "Bme280Device",
    "ChipDevice",
    "Ina219Device",
    "Sht3xDevice",
    "identify",
    "make_chip",
    "scan",
]


def make_chip(cfg: I2cDeviceConfig, bus: I2cBus) -> ChipDevice:
    """The driver for a configured chip on its bus (nothing is sent until start or poll)."""
    return DRIVERS[cfg.chip](cfg, bus)
