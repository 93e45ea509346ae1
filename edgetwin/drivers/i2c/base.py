"""What every I2C chip driver shares: lazy start, quality per point, scale/offset/range."""

from __future__ import annotations

import asyncio
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from edgetwin.config.i2c import I2cDeviceConfig, I2cPointConfig
from edgetwin.core.types import Quality
from edgetwin.drivers.base import NO_VALUE, PollResult
from edgetwin.drivers.base import scaled as apply_scale
from edgetwin.errors import (
    DeviceExceptionError,
    DeviceTimeoutError,
    EdgetwinError,
    ProtocolError,
    TransientError,
)
from edgetwin.transports.i2c import I2cBus

log = logging.getLogger(__name__)

_NO_VALUE = NO_VALUE
_POLL_STEP = 0.001  # s between "is the conversion done?" reads


@dataclass(frozen=True, slots=True)
class Sample:
    """One quantity as the chip gave it, in the quantity's unit, with what the chip flagged."""

    value: float
    flags: Quality = Quality.GOOD
    error: EdgetwinError | None = None


def scaled(point: I2cPointConfig, raw: float) -> tuple[float, Quality]:
    """Apply the point's scale, offset and range, as every driver does."""
    return apply_scale(raw, point.scale, point.offset, point.range)


def quality_of(exc: EdgetwinError) -> Quality:
    """The quality a failed request leaves on its points."""
    if isinstance(exc, DeviceExceptionError):
        return Quality.DEVICE_ERROR
    if isinstance(exc, ProtocolError):
        return Quality.DECODE_ERROR
    return Quality.COMM_FAIL


class ChipDevice(ABC):
    """A chip on an I2C bus: ``start()`` prepares it, ``poll()`` never raises on bus faults.

    A poll starts the chip first when it has not been started, or when the previous
    measurement failed (the chip may have been power-cycled and lost its settings).
    """

    chip: ClassVar[str]

    def __init__(self, cfg: I2cDeviceConfig, bus: I2cBus) -> None:
        if cfg.chip != self.chip:
            raise ValueError(f"{type(self).__name__} drives {self.chip!r}, not {cfg.chip!r}")
        self.cfg = cfg
        self.bus = bus
        self.address = cfg.address
        self.started = False
        self.starts = 0
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        """The device's configured name."""
        return self.cfg.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r} at 0x{self.address:02X} on {self.bus})"

    async def start(self) -> None:
        """Identify and configure the chip (reading its calibration where it has one)."""
        async with self._lock:
            await self._started()

    async def poll(self, points: Sequence[int] | None = None) -> PollResult:
        """Read ``points`` (all when None); failures become qualities, never exceptions."""
        n = len(self.cfg.points)
        keys = list(range(n)) if points is None else sorted({int(p) for p in points})
        values = np.full(n, np.nan)
        quality = np.full(n, int(Quality.STALE), dtype=np.uint16)
        quality[keys] = Quality.COMM_FAIL
        groups = self._requests(keys)
        result = PollResult(values, quality, requests=len(groups))
        async with self._lock:
            try:
                if not self.started:
                    await self._started()
            except EdgetwinError as exc:
                result.fail(exc, len(groups))
                quality[keys] = quality_of(exc)
                return result
            for i, group in enumerate(groups):
                try:
                    samples = await self._measure(group)
                except TransientError as exc:
                    # Silent chip: the rest of this cycle would only add timeouts.
                    self.started = False
                    result.fail(exc, len(groups) - i)
                    break
                except EdgetwinError as exc:
                    self.started = False
                    result.fail(exc)
                    quality[group] = quality_of(exc)
                    continue
                self._fill(group, samples, result)
        values[(quality & _NO_VALUE) != 0] = np.nan
        return result

    def _fill(self, group: list[int], samples: dict[int, Sample], result: PollResult) -> None:
        corrupt = 0
        for k in group:
            sample = samples[k]
            corrupt += bool(sample.flags & Quality.DECODE_ERROR)
            if sample.error is not None and all(e is not sample.error for e in result.errors):
                result.errors.append(sample.error)
            if sample.flags & _NO_VALUE:
                result.values[k], result.quality[k] = math.nan, sample.flags
                continue
            value, q = scaled(self.cfg.points[k], sample.value)
            result.values[k] = value
            result.quality[k] = q | sample.flags
        # Only an answer corrupt throughout counts as a failed request: a chip that flags
        # its own result (e.g. INA219 overflow) is still answering.
        if corrupt == len(group):
            result.failed += 1
        else:
            result.ok += 1

    async def _started(self) -> None:
        self.started = False
        self.starts += 1
        await self._start()
        self.started = True

    def _requests(self, keys: list[int]) -> list[list[int]]:
        """Points measured together, one group per measurement (default: one for all)."""
        return [keys] if keys else []

    @abstractmethod
    async def _start(self) -> None:
        """Identify, reset and configure the chip."""

    @abstractmethod
    async def _measure(self, group: list[int]) -> dict[int, Sample]:
        """Run one measurement and return a sample for every point in ``group``."""

    async def _read_u16(self, register: int) -> int:
        """A big-endian 16-bit register (ADS1115, INA219)."""
        return int.from_bytes(await self.bus.read_block(self.address, register, 2), "big")

    async def _write_u16(self, register: int, word: int) -> None:
        await self.bus.write_block(self.address, register, word.to_bytes(2, "big"))

    async def _wait(self, ready: Callable[[], Awaitable[bool]], limit: float, what: str) -> None:
        """Poll ``ready`` until it is true; DeviceTimeoutError after ``limit`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not await ready():
            if loop.time() >= deadline:
                raise DeviceTimeoutError(f"{self.name}: {what} not ready after {limit * 1e3:g} ms")
            await asyncio.sleep(_POLL_STEP)
