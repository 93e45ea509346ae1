"""Sensirion SHT3x driver: single-shot measurements without clock stretching, CRC per word."""

from __future__ import annotations

import asyncio
import logging
import math

from edgetwin.config.i2c import DEFAULT_REPEATABILITY, I2cDeviceConfig
from edgetwin.core.types import Quality
from edgetwin.drivers.i2c.base import ChipDevice, Sample
from edgetwin.errors import DeviceTimeoutError, ProtocolError
from edgetwin.protocols.i2c import sht3x as proto
from edgetwin.transports.i2c import I2cBus

log = logging.getLogger(__name__)

_MARGIN = 0.02  # s beyond the datasheet's maximum duration before giving up


class Sht3xDevice(ChipDevice):
    """Temperature (°C) and humidity (%RH) from an SHT30/31/35."""

    chip = "sht3x"

    def __init__(self, cfg: I2cDeviceConfig, bus: I2cBus) -> None:
        super().__init__(cfg, bus)
        self.repeatability: proto.Repeatability = cfg.repeatability or DEFAULT_REPEATABILITY
        self.crc_errors = 0

    async def _start(self) -> None:
        await self.bus.write(self.address, proto.command(proto.CMD_SOFT_RESET))
        await asyncio.sleep(proto.SOFT_RESET_TIME)
        await self.bus.write(self.address, proto.command(proto.CMD_READ_STATUS))
        ((status, ok),) = proto.words(await self.bus.read(self.address, 3))
        if not ok:
            self.crc_errors += 1
            raise ProtocolError(f"{self.name}: status word failed its CRC: not an SHT3x?")
        log.debug("%s: status 0x%04X after reset", self.name, status)
        await self.bus.write(self.address, proto.command(proto.CMD_CLEAR_STATUS))

    async def _measure(self, group: list[int]) -> dict[int, Sample]:
        await self.bus.write(self.address, proto.command(proto.CMD_MEASURE[self.repeatability]))
        duration = proto.DURATION_MAX[self.repeatability]
        await asyncio.sleep(duration)
        data = await self._result(duration + _MARGIN)
        (t_raw, t_ok), (h_raw, h_ok) = proto.words(data)
        decoded = {
            "temperature": (proto.temperature(t_raw), t_ok),
            "humidity": (proto.humidity(h_raw), h_ok),
        }
        samples = {}
        for k in group:
            quantity = self.cfg.quantity(k)
            value, ok = decoded[quantity]
            if ok:
                samples[k] = Sample(value)
                continue
            error = ProtocolError(f"{self.name}: {quantity} word failed its CRC")
            samples[k] = Sample(math.nan, Quality.DECODE_ERROR, error)
        self.crc_errors += (not t_ok) + (not h_ok)
        return samples

    async def _result(self, limit: float) -> bytes:
        """Read the six result bytes; the sensor NACKs the read until it has them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            try:
                return await self.bus.read(self.address, 6)
            except DeviceTimeoutError as exc:
                if loop.time() >= deadline:
                    raise DeviceTimeoutError(
                        f"{self.name}: no measurement after {limit * 1e3:g} ms: {exc}"
                    ) from exc
            await asyncio.sleep(0.001)
