"""Plain data types that flow through the pipeline: readings in, twin samples out."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Uint16Array = npt.NDArray[np.uint16]


class Quality(enum.IntFlag):
    """Why a value is not to be trusted; GOOD (0) means nothing is wrong."""

    GOOD = 0
    COMM_FAIL = 1  # no answer, timeout or transport error
    DEVICE_ERROR = 2  # the device answered with an exception / error
    DECODE_ERROR = 4  # bytes arrived but could not be turned into a value
    OUT_OF_RANGE = 8  # outside the point's configured range
    NOT_FINITE = 16  # NaN or infinity
    STALE = 32  # older than the point's maximum age


class Alarm(enum.IntEnum):
    """Alarm state of one point, in increasing severity."""

    NORMAL = 0
    WARNING = 1
    ALARM = 2


def point_id(device: str, point: str) -> str:
    """Return the gateway-wide point id ``device/point``."""
    return f"{device}/{point}"


@dataclass(frozen=True, slots=True)
class DeviceReading:
    """One poll of one device: a value and a quality per point polled, in config order.

    Values are NaN where no number could be read; OUT_OF_RANGE keeps the value it read.
    """

    device: str
    ts: float  # unix seconds at which the poll completed
    values: FloatArray
    quality: Uint16Array
    index: IntArray | None = None  # which of the device's points these are; None: all


@dataclass(frozen=True, slots=True)
class TwinBatch:
    """Twin output for a set of points at one tick: columnar, indexes are gateway point indexes."""

    index: IntArray  # gateway-wide point index (position in the birth's point table)
    ts: FloatArray  # unix seconds
    value: FloatArray  # raw value (NaN when quality is bad)
    estimate: FloatArray  # twin estimate (never NaN once the point has had a good sample)
    score: FloatArray  # anomaly score: 1.0 is the alarm threshold
    alarm: npt.NDArray[np.uint8]  # Alarm per point
    quality: Uint16Array  # Quality per point
