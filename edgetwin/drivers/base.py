"""What every driver returns and what the acquisition layer needs of a device."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edgetwin.core.types import Quality
from edgetwin.errors import EdgetwinError

# Qualities that leave no usable number; OUT_OF_RANGE keeps its value for the record.
NO_VALUE = Quality.COMM_FAIL | Quality.DEVICE_ERROR | Quality.DECODE_ERROR | Quality.NOT_FINITE


def scaled(
    raw: float, scale: float, offset: float, valid: tuple[float, float] | None
) -> tuple[float, Quality]:
    """``raw * scale + offset`` and its quality: NOT_FINITE, OUT_OF_RANGE (value kept) or GOOD."""
    value = raw * scale + offset
    if not math.isfinite(value):
        return math.nan, Quality.NOT_FINITE
    if valid is not None and not valid[0] <= value <= valid[1]:
        return value, Quality.OUT_OF_RANGE
    return value, Quality.GOOD


@dataclass(slots=True)
class PollResult:
    """Values and qualities in config point order, plus what went wrong, per request.

    Values are NaN where no number could be read; a point not polled this time is NaN with
    quality STALE. Both arrays must be new for every poll: the scheduler hands them on in the
    device's reading without a copy.
    """

    values: np.ndarray
    quality: np.ndarray
    requests: int
    failed: int = 0
    ok: int = 0
    errors: list[EdgetwinError] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        """True when at least one request got a valid answer (or none was needed)."""
        return self.failed < self.requests or self.requests == 0

    def fail(self, exc: EdgetwinError, requests: int = 1) -> None:
        """Record ``requests`` requests lost to ``exc``."""
        self.failed += requests
        self.errors.append(exc)


class Device(Protocol):
    """A device as pollers and schedulers see it."""

    @property
    def name(self) -> str:
        """The device's configured name."""
        ...

    async def poll(self, points: Sequence[int] | None = None) -> PollResult:
        """Read the given points (indexes into the config's point list; all when None)."""
        ...
