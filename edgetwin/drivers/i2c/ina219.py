"""TI INA219 driver: triggered conversions, calibration from the shunt and the current range."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from edgetwin.config.i2c import DEFAULT_BUS_VOLTAGE_RANGE, I2cDeviceConfig
from edgetwin.core.types import Quality
from edgetwin.drivers.i2c.base import ChipDevice, Sample
from edgetwin.errors import DeviceExceptionError, ProtocolError
from edgetwin.protocols.i2c import ina219 as proto
from edgetwin.transports.i2c import I2cBus

log = logging.getLogger(__name__)

_MARGIN = 0.02  # s beyond the conversion time before giving up


class Ina219Device(ChipDevice):
    """Shunt voltage (V), bus voltage (V), current (A) and power (W) from an INA219."""

    chip = "ina219"

    def __init__(self, cfg: I2cDeviceConfig, bus: I2cBus) -> None:
        super().__init__(cfg, bus)
        assert cfg.shunt_ohms is not None  # the config requires both for an ina219
        assert cfg.max_expected_amps is not None
        self.scaling = proto.scaling(cfg.shunt_ohms, cfg.max_expected_amps)
        self.config = proto.Config(
            bus_range=cfg.bus_voltage_range or DEFAULT_BUS_VOLTAGE_RANGE,
            shunt_range=self.scaling.shunt_range,
            mode=proto.MODE_TRIGGERED,
        )
        self._bus_word = 0

    async def _start(self) -> None:
        await self._write_u16(proto.REG_CONFIG, proto.RST)
        config = await self._read_u16(proto.REG_CONFIG)
        if config != proto.CONFIG_RESET:
            raise ProtocolError(
                f"{self.name}: config reads 0x{config:04X} after reset, not 0x399F: not an INA219?"
            )
        await self._calibrate()
        idle = dataclasses.replace(self.config, mode=proto.MODE_POWER_DOWN)
        await self._write_u16(proto.REG_CONFIG, idle.to_word())

    async def _calibrate(self) -> None:
        await self._write_u16(proto.REG_CALIBRATION, self.scaling.calibration)
        cal = await self._read_u16(proto.REG_CALIBRATION)
        if cal != self.scaling.calibration:
            raise ProtocolError(
                f"{self.name}: calibration reads {cal}, wrote {self.scaling.calibration}"
            )

    async def _converted(self) -> bool:
        self._bus_word = await self._read_u16(proto.REG_BUS)
        return bool(self._bus_word & proto.CNVR)

    async def _measure(self, group: list[int]) -> dict[int, Sample]:
        # A brown-out resets the chip and zeroes the calibration: current and power would
        # then read 0 while looking valid, so check it before every conversion.
        if await self._read_u16(proto.REG_CALIBRATION) != self.scaling.calibration:
            log.warning("%s: calibration lost (chip reset?); writing it again", self.name)
            await self._calibrate()
        await self._write_u16(proto.REG_CONFIG, self.config.to_word())  # triggers a conversion
        duration = self.config.conversion_time * 1.1
        await asyncio.sleep(duration)
        await self._wait(self._converted, duration + _MARGIN, "conversion")
        shunt = await self._read_u16(proto.REG_SHUNT)
        current = await self._read_u16(proto.REG_CURRENT)
        power = await self._read_u16(proto.REG_POWER)  # read last: this clears CNVR
        bus = proto.bus(self._bus_word)
        lsb = self.scaling.current_lsb
        clipped = proto.shunt_saturated(shunt, self.config.shunt_range)
        top = 0x1FFF if self.config.bus_range == 32 else 0x0FFF
        overflow = DeviceExceptionError(
            f"{self.name}: current/power math overflow (OVF)", proto.OVF
        )
        by_quantity = {
            "shunt_voltage": Sample(proto.shunt_volts(shunt), _flag(clipped)),
            "bus_voltage": Sample(bus.volts, _flag(bus.counts >= top)),
            "current": (
                Sample(proto.current_amps(current, lsb), _flag(clipped))
                if not bus.overflow
                else Sample(float("nan"), Quality.DEVICE_ERROR, overflow)
            ),
            "power": (
                Sample(proto.power_watts(power, lsb))
                if not bus.overflow
                else Sample(float("nan"), Quality.DEVICE_ERROR, overflow)
            ),
        }
        return {k: by_quantity[self.cfg.quantity(k)] for k in group}


def _flag(saturated: bool) -> Quality:
    return Quality.OUT_OF_RANGE if saturated else Quality.GOOD
