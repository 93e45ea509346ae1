"""Bus scan over the emulated bus: who answers, and which chip each address looks like."""

from __future__ import annotations

import errno

import pytest

from edgetwin.drivers.i2c import identify, make_chip, scan
from edgetwin.errors import ConnectionLostError
from edgetwin.protocols.i2c import ads1115
from edgetwin.transports.i2c import I2cBus
from firmware_stubs.i2c import (
    Ads1115Chip,
    Bme280Chip,
    Chip,
    FakeSMBus,
    Ina219Chip,
    Sht3xChip,
)
from firmware_stubs.i2c.bus import nack
from tests.i2c.support import device_cfg


class Eeprom(Chip):
    """A 24C02-like EEPROM that counts the quick writes it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.quick_writes = 0
        self.memory = bytearray(range(256))
        self.pointer = 0

    def quick(self) -> None:
        self.quick_writes += 1

    def write(self, data: bytes) -> None:
        if data:
            self.pointer = data[0]
            self.memory[self.pointer : self.pointer + len(data) - 1] = data[1:]

    def read(self, length: int) -> bytes:
        out = bytes(self.memory[(self.pointer + i) & 0xFF] for i in range(length))
        self.pointer = (self.pointer + length) & 0xFF
        return out


class WriteOnly(Chip):
    """Acknowledges its address on writes but NACKs every read (like an idle SHT3x)."""

    def write(self, data: bytes) -> None:
        pass

    def read(self, length: int) -> bytes:
        raise nack()


async def test_scan_finds_each_chip_at_its_address(fake: FakeSMBus, bus: I2cBus) -> None:
    garbled = Sht3xChip()
    garbled.faults.crc_error = True
    silent = Bme280Chip()
    silent.faults.nack = True
    eeprom = Eeprom()
    fake.chips.update(
        {
            0x40: Ina219Chip(),
            0x44: Sht3xChip(),
            0x45: garbled,  # answers, but its status word fails the CRC: not recognised
            0x48: Ads1115Chip(),
            0x49: Ina219Chip(),  # an INA219 inside the ADS1115's address range
            0x50: eeprom,
            0x60: silent,
            0x6A: WriteOnly(),
            0x76: Bme280Chip(),
            0x77: Bme280Chip(chip_id=0x58),
        }
    )
    found = await scan(bus)
    assert found == [
        (0x40, "ina219"),
        (0x44, "sht3x"),
        (0x45, None),
        (0x48, "ads1115"),
        (0x49, "ina219"),
        (0x50, None),
        (0x6A, None),
        (0x76, "bme280"),
        (0x77, "bmp280"),
    ]
    assert eeprom.quick_writes == 0  # EEPROM addresses are probed by reading


async def test_scan_of_an_empty_bus_finds_nothing(fake: FakeSMBus, bus: I2cBus) -> None:
    assert await scan(bus) == []
    assert bus.transactions == 0x77 - 0x03 + 1


async def test_an_ads1115_in_use_is_still_recognised(fake: FakeSMBus, bus: I2cBus) -> None:
    chip = Ads1115Chip()
    chip.set(ain1=1.0)
    fake.chips[0x4B] = chip
    cfg = device_cfg("ads1115", 0x4B, {"name": "v", "channel": "ain1"}, fsr=4.096)
    await make_chip(cfg, bus).poll()
    assert chip.regs[ads1115.REG_CONFIG] != ads1115.CONFIG_RESET  # reconfigured by the driver
    assert await identify(bus, 0x4B) == "ads1115"  # by its untouched comparator thresholds


async def test_scan_of_a_missing_adapter_raises(fake: FakeSMBus, bus: I2cBus) -> None:
    fake.error = errno.ENOENT  # /dev/i2c-N does not exist
    with pytest.raises(ConnectionLostError, match="cannot open"):
        await scan(bus)
