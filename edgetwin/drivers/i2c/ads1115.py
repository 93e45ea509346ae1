"""TI ADS1115 driver: one single-shot conversion per (channel, full-scale range) polled."""

from __future__ import annotations

import asyncio

from edgetwin.config.i2c import DEFAULT_DATA_RATE, I2cDeviceConfig
from edgetwin.core.types import Quality
from edgetwin.drivers.i2c.base import ChipDevice, Sample
from edgetwin.protocols.i2c import ads1115 as proto
from edgetwin.transports.i2c import I2cBus

_MARGIN = 0.02  # s beyond 1 / DR (+10 % oscillator tolerance) before giving up


class Ads1115Device(ChipDevice):
    """Voltages (V) on the ADS1115's inputs or input pairs, each at its own PGA gain."""

    chip = "ads1115"

    def __init__(self, cfg: I2cDeviceConfig, bus: I2cBus) -> None:
        super().__init__(cfg, bus)
        self.data_rate: int = cfg.data_rate or DEFAULT_DATA_RATE
        self._setting = {k: (str(p.channel), cfg.point_fsr(k)) for k, p in enumerate(cfg.points)}

    def _requests(self, keys: list[int]) -> list[list[int]]:
        groups: dict[tuple[str, float], list[int]] = {}
        for k in keys:
            groups.setdefault(self._setting[k], []).append(k)
        return list(groups.values())

    async def _start(self) -> None:
        # The chip has no ID or reset of its own (general-call reset would hit the whole
        # bus); reading the config register proves it answers.
        await self._read_u16(proto.REG_CONFIG)

    async def _done(self) -> bool:
        return bool(await self._read_u16(proto.REG_CONFIG) & proto.OS)

    async def _measure(self, group: list[int]) -> dict[int, Sample]:
        channel, fsr = self._setting[group[0]]
        await self._write_u16(proto.REG_CONFIG, proto.single_shot(channel, fsr, self.data_rate))
        duration = proto.conversion_time(self.data_rate) * 1.1
        await asyncio.sleep(duration)
        await self._wait(self._done, duration + _MARGIN, f"conversion of {channel}")
        word = await self._read_u16(proto.REG_CONVERSION)
        flags = Quality.OUT_OF_RANGE if proto.saturated(word) else Quality.GOOD
        return {k: Sample(proto.volts(word, fsr), flags) for k in group}
