"""Bosch BME280 driver: forced-mode measurements, compensation with the chip's own NVM words."""

from __future__ import annotations

import asyncio

from edgetwin.config.i2c import Bme280Oversampling, I2cDeviceConfig
from edgetwin.drivers.i2c.base import ChipDevice, Sample
from edgetwin.errors import ProtocolError
from edgetwin.protocols.i2c import bme280 as proto
from edgetwin.transports.i2c import I2cBus

_MARGIN = 0.02  # s beyond the datasheet's maximum measurement time before giving up


class Bme280Device(ChipDevice):
    """Temperature (°C), pressure (Pa) and humidity (%RH) from a BME280."""

    chip = "bme280"

    def __init__(self, cfg: I2cDeviceConfig, bus: I2cBus) -> None:
        super().__init__(cfg, bus)
        osrs = cfg.oversampling or Bme280Oversampling()
        wanted = {cfg.quantity(i) for i in range(len(cfg.points))}
        # Temperature is always measured: t_fine feeds the other two formulas.
        self.osrs_t: int = osrs.temperature
        self.osrs_p: int = osrs.pressure if "pressure" in wanted else 0
        self.osrs_h: int = osrs.humidity if "humidity" in wanted else 0
        self.calibration: proto.Calibration | None = None

    async def _start(self) -> None:
        chip_id = await self.bus.read_byte_data(self.address, proto.REG_ID)
        if chip_id != proto.CHIP_ID:
            what = " (a BMP280: no humidity)" if chip_id in proto.BMP280_CHIP_IDS else ""
            raise ProtocolError(
                f"{self.name}: 0x{self.address:02X} has chip id 0x{chip_id:02X}{what}, "
                f"not a BME280 (0x{proto.CHIP_ID:02X})"
            )
        await self.bus.write_byte_data(self.address, proto.REG_RESET, proto.RESET_WORD)
        await asyncio.sleep(proto.STARTUP_TIME)
        await self._wait(self._nvm_copied, 0.05, "NVM copy after reset")
        block_a = await self.bus.read_block(self.address, proto.REG_CALIB_A, proto.CALIB_A_LEN)
        block_b = await self.bus.read_block(self.address, proto.REG_CALIB_B, proto.CALIB_B_LEN)
        if len(set(block_a[:24])) == 1:
            raise ProtocolError(f"{self.name}: calibration words are blank ({block_a[:4].hex()}…)")
        self.calibration = proto.Calibration.from_bytes(block_a, block_b)
        await self.bus.write_byte_data(self.address, proto.REG_CONFIG, 0x00)  # IIR filter off
        await self._write_controls(proto.MODE_SLEEP)

    async def _nvm_copied(self) -> bool:
        status = await self.bus.read_byte_data(self.address, proto.REG_STATUS)
        return not status & proto.STATUS_IM_UPDATE

    async def _idle(self) -> bool:
        status = await self.bus.read_byte_data(self.address, proto.REG_STATUS)
        return not status & proto.STATUS_MEASURING

    async def _write_controls(self, mode: int) -> None:
        # ctrl_hum only takes effect with the next ctrl_meas write, so it goes first.
        await self.bus.write_byte_data(
            self.address, proto.REG_CTRL_HUM, proto.ctrl_hum(self.osrs_h)
        )
        meas = proto.ctrl_meas(self.osrs_t, self.osrs_p, mode)
        await self.bus.write_byte_data(self.address, proto.REG_CTRL_MEAS, meas)

    async def _measure(self, group: list[int]) -> dict[int, Sample]:
        assert self.calibration is not None  # set by _start
        await self._write_controls(proto.MODE_FORCED)
        duration = proto.measurement_time(self.osrs_t, self.osrs_p, self.osrs_h)
        await asyncio.sleep(duration)
        await self._wait(self._idle, duration + _MARGIN, "measurement")
        block = await self.bus.read_block(self.address, proto.REG_DATA, proto.DATA_LEN)
        # Every quantity configured here was enabled by the ctrl_meas write that started this
        # measurement, so 0x80000 / 0x8000 are readings, not "skipped" markers.
        reading = proto.compensate(*proto.parse_data(block), self.calibration)
        by_quantity = {
            "temperature": reading.temperature,
            "pressure": reading.pressure,
            "humidity": reading.humidity,
        }
        return {k: Sample(by_quantity[self.cfg.quantity(k)]) for k in group}
