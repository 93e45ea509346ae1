"""Bus scan: which addresses acknowledge, and which chip each one looks like.

Probing follows i2cdetect's default: a quick write everywhere except 0x30-0x37 and 0x50-0x5F,
where a quick write can corrupt some EEPROMs and a receive byte is used instead. A quick read
would miss an SHT3x, which NACKs read headers when it has no data to send. Identification
reads ID or power-on registers only where the address range says a known chip could sit;
an SHT3x is asked for its status word (checked by CRC). A chip reconfigured since power-up
may show no power-on values and is then reported as unknown (None).
"""

from __future__ import annotations

from edgetwin.errors import DeviceTimeoutError, ProtocolError
from edgetwin.protocols.i2c import ads1115, bme280, ina219, sht3x
from edgetwin.transports.i2c import I2cBus

FIRST, LAST = 0x03, 0x77
_READ_PROBE = (range(0x30, 0x38), range(0x50, 0x60))
_BOSCH_IDS = {
    bme280.CHIP_ID: "bme280",
    **dict.fromkeys(bme280.BMP280_CHIP_IDS, "bmp280"),
    bme280.BME680_CHIP_ID: "bme680",
}


async def scan(bus: I2cBus, first: int = FIRST, last: int = LAST) -> list[tuple[int, str | None]]:
    """Addresses in ``first..last`` that acknowledge, each with a best guess of its chip."""
    found: list[tuple[int, str | None]] = []
    for address in range(first, last + 1):
        try:
            if any(address in r for r in _READ_PROBE):
                await bus.read_byte(address)
            else:
                await bus.write_quick(address)
        except (DeviceTimeoutError, ProtocolError):
            continue
        found.append((address, await identify(bus, address)))
    return found


async def identify(bus: I2cBus, address: int) -> str | None:
    """Best guess of the chip at ``address`` from its ID or power-on registers, else None."""
    for probe in (_bosch, _sht3x, _ina219, _ads1115):
        try:
            chip = await probe(bus, address)
        except (DeviceTimeoutError, ProtocolError):
            continue
        if chip is not None:
            return chip
    return None


async def _word(bus: I2cBus, address: int, register: int) -> int:
    return int.from_bytes(await bus.read_block(address, register, 2), "big")


async def _bosch(bus: I2cBus, address: int) -> str | None:
    if address not in (0x76, 0x77):
        return None
    return _BOSCH_IDS.get(await bus.read_byte_data(address, bme280.REG_ID))


async def _sht3x(bus: I2cBus, address: int) -> str | None:
    if address not in (0x44, 0x45):
        return None
    await bus.write(address, sht3x.command(sht3x.CMD_READ_STATUS))
    ((_, ok),) = sht3x.words(await bus.read(address, 3))
    return "sht3x" if ok else None


async def _ina219(bus: I2cBus, address: int) -> str | None:
    if not 0x40 <= address <= 0x4F:
        return None
    return "ina219" if await _word(bus, address, ina219.REG_CONFIG) == ina219.CONFIG_RESET else None


async def _ads1115(bus: I2cBus, address: int) -> str | None:
    if not 0x48 <= address <= 0x4B:
        return None
    # OS reads 0 while a conversion runs; the comparator thresholds are rarely changed.
    if (
        await _word(bus, address, ads1115.REG_CONFIG) & ~ads1115.OS
        == ads1115.CONFIG_RESET & ~ads1115.OS
    ):
        return "ads1115"
    lo = await _word(bus, address, ads1115.REG_LO_THRESH)
    hi = await _word(bus, address, ads1115.REG_HI_THRESH)
    return "ads1115" if (lo, hi) == (ads1115.LO_THRESH_RESET, ads1115.HI_THRESH_RESET) else None
