"""Report by exception: which samples of a twin batch go upstream; pure, no I/O.

A point's sample is sent when any of these holds, compared with what was last *sent* for it:

* it was never sent, or its quality or alarm state changed;
* its heartbeat expired: ``now - last sent >= heartbeat``;
* mode ``full``: always;
* mode ``deadband``: the value moved more than the deadband;
* mode ``model``: the twin was surprised, ``nis > sigmas**2`` (the prediction error exceeds
  ``sigmas`` standard deviations of the predicted measurement), or the twin's estimate moved
  more than the deadband (so the cloud's copy of the twin never lags a tracked drift by more
  than that). Rows without a usable nis (None or not finite) fall back to ``deadband``.

With a resolution r, values are compared on the wire's grid: ``rint(v / r)`` counts, and the
deadband d allows ``floor(d / r)`` counts (so the default d = r suppresses one-count flicker
and float rounding cannot make a 0.1 step count differently at 1.0 than at 0.5). Without a
resolution values are compared as float64: ``|v - last| > d`` (d = 0: any change). NaN equals
NaN and an infinity equals itself, so a point stuck at NaN is not resent every poll.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgetwin.core.types import TwinBatch
from edgetwin.uplink.codec import REPORT_MODES, PointInfo, ReportMode

__all__ = ["Policy", "Reporter"]

_MODE_CODE = {mode: i for i, mode in enumerate(REPORT_MODES)}
_DEADBAND, _MODEL, _FULL = (_MODE_CODE[m] for m in ("deadband", "model", "full"))


@dataclass(frozen=True, slots=True)
class Policy:
    """How one point is reported; ``deadband`` None means its resolution, or 0 without one."""

    mode: ReportMode = "deadband"
    deadband: float | None = None
    heartbeat: float | None = None  # s; None: never resent for age alone
    resolution: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in REPORT_MODES:
            raise ValueError(f"report mode must be one of {REPORT_MODES}, not {self.mode!r}")
        for name in ("deadband", "heartbeat", "resolution"):
            x = getattr(self, name)
            if x is not None and not (math.isfinite(x) and x >= 0):
                raise ValueError(f"{name} must be finite and >= 0, not {x!r}")
        if self.resolution == 0 or self.heartbeat == 0:
            raise ValueError("resolution and heartbeat must be > 0 (or None)")

    @classmethod
    def of(cls, point: PointInfo) -> Policy:
        """The policy a birth's point table announces."""
        return cls(point.report, point.deadband, point.heartbeat, point.resolution)


class Reporter:
    """Selects the rows of twin batches to send and remembers what was sent, per point.

    Rows are taken one at a time, in order, in plain Python: a batch is one device's poll,
    a handful of points, where a numpy call costs more than the arithmetic it would save.
    """

    def __init__(self, policies: Sequence[Policy]) -> None:
        n = len(policies)
        self._mode = [_MODE_CODE[p.mode] for p in policies]
        self._res = [p.resolution for p in policies]  # None: compared as float64
        self._band = [_band(p) for p in policies]
        self._heartbeat = [math.inf if p.heartbeat is None else p.heartbeat for p in policies]
        # What was last sent, per point; values in counts where there is a resolution.
        self._seen = [False] * n
        self._value = [math.nan] * n
        self._estimate = [math.nan] * n
        self._alarm = [0] * n
        self._quality = [0] * n
        self._sent_at = [-math.inf] * n

    @classmethod
    def from_points(cls, points: Sequence[PointInfo]) -> Reporter:
        """A reporter for a birth's point table (ordered by index)."""
        if [p.index for p in points] != list(range(len(points))):
            raise ValueError("points must be ordered by index 0..n-1")
        return cls([Policy.of(p) for p in points])

    @property
    def n_points(self) -> int:
        """Number of points."""
        return len(self._mode)

    def select(
        self,
        batch: TwinBatch,
        now: float,
        nis: npt.ArrayLike | None = None,
        sigmas: float = 3.0,
    ) -> npt.NDArray[np.bool_]:
        """Return the mask of rows to send, and remember them as sent at ``now``."""
        index = self._index(batch)
        nis_rows = None if nis is None else np.asarray(nis, dtype=np.float64)
        if nis_rows is not None and nis_rows.shape != (len(index),):
            raise ValueError(f"nis must have shape ({len(index)},), got {nis_rows.shape}")
        r_nis = None if nis_rows is None else nis_rows.tolist()
        bound = float(sigmas) ** 2
        value, estimate = batch.value.tolist(), batch.estimate.tolist()
        alarm, quality = batch.alarm.tolist(), batch.quality.tolist()
        mode, band = self._mode, self._band
        mask = []
        # Row by row: a point met twice in a batch compares with its earlier row if sent.
        for k, i in enumerate(index):
            v, e = self._grid(value[k], i), self._grid(estimate[k], i)
            send = (
                not self._seen[i]
                or quality[k] != self._quality[i]
                or alarm[k] != self._alarm[i]
                or now - self._sent_at[i] >= self._heartbeat[i]
            )
            if not send:
                m = mode[i]
                if m == _FULL:
                    send = True
                elif m == _DEADBAND or r_nis is None or not _isfinite(r_nis[k]):
                    send = _moved(v, self._value[i], band[i])
                else:  # model, with a usable nis
                    send = r_nis[k] > bound or _moved(e, self._estimate[i], band[i])
            if send:
                self._remember(i, v, e, alarm[k], quality[k], now=now)
            mask.append(send)
        return np.array(mask, dtype=bool)

    def record(self, batch: TwinBatch, now: float) -> None:
        """Remember every row of ``batch`` as sent at ``now`` (e.g. a snapshot)."""
        index = self._index(batch)
        value, estimate = batch.value.tolist(), batch.estimate.tolist()
        alarm, quality = batch.alarm.tolist(), batch.quality.tolist()
        for k, i in enumerate(index):
            v, e = self._grid(value[k], i), self._grid(estimate[k], i)
            self._remember(i, v, e, alarm[k], quality[k], now=now)

    def _remember(
        self, i: int, v: float, e: float, alarm: int, quality: int, *, now: float
    ) -> None:
        self._seen[i] = True
        self._value[i] = v
        self._estimate[i] = e
        self._alarm[i] = alarm
        self._quality[i] = quality
        self._sent_at[i] = now

    def _index(self, batch: TwinBatch) -> list[int]:
        index = np.asarray(batch.index)
        n = len(index)
        for name in ("ts", "value", "estimate", "score", "alarm", "quality"):
            col = getattr(batch, name)
            if (col.shape if isinstance(col, np.ndarray) else np.shape(col)) != (n,):
                raise ValueError(f"batch column {name!r} must be 1-D with {n} rows")
        rows: list[int] = index.tolist()
        inside = not rows or 0 <= min(rows) <= max(rows) < self.n_points
        if index.dtype.kind not in "iu" or not inside:
            raise ValueError(f"batch point indexes must be integers in 0..{self.n_points - 1}")
        return rows

    def _grid(self, x: float, i: int) -> float:
        """``x`` in counts of point ``i``'s resolution (``rint(x / r)``), unchanged without one."""
        r = self._res[i]
        if r is None:
            return x
        q = x / r
        # round() rounds half to even, as rint does; a value beyond the grid stays as it is.
        return float(round(q)) if _isfinite(q) else q


_isfinite = math.isfinite


def _band(p: Policy) -> float:
    """How far a value may move unsent: counts of the resolution, else the value's units."""
    if p.resolution is None:
        return p.deadband or 0.0
    deadband = p.resolution if p.deadband is None else p.deadband
    # The epsilon keeps 0.3 / 0.1 = 2.9999999999999996 at 3 counts.
    return float(math.floor(deadband / p.resolution * (1 + 1e-9)))


def _moved(new: float, old: float, band: float) -> bool:
    """Whether ``new`` left the band around ``old``; NaN equals NaN, an infinity itself."""
    if _isfinite(new) and _isfinite(old):
        return abs(new - old) > band
    return not (new == old or (new != new and old != old))  # noqa: PLR0124 - NaN checks
