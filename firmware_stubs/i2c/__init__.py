"""Register-level I2C chip emulators behind the smbus2.SMBus method interface.

``FakeSMBus({0x76: Bme280Chip(), 0x44: Sht3xChip()})`` stands in for ``smbus2.SMBus(N)``;
pass its ``opener`` to ``edgetwin.transports.i2c.I2cBus``. Each chip holds true physical
values (``set()``, plus seeded ``noise`` and ``drift``) and a ``faults`` switchboard.
"""

from firmware_stubs.i2c.ads1115 import Ads1115Chip
from firmware_stubs.i2c.bme280 import DATASHEET_CALIBRATION, Bme280Chip
from firmware_stubs.i2c.bus import Chip, FakeSMBus, Faults
from firmware_stubs.i2c.ina219 import Ina219Chip
from firmware_stubs.i2c.sht3x import Sht3xChip

__all__ = [
    "DATASHEET_CALIBRATION",
    "Ads1115Chip",
    "Bme280Chip",
    "Chip",
    "FakeSMBus",
    "Faults",
    "Ina219Chip",
    "Sht3xChip",
]
