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

from edgetwin.core.types import FloatArray, TwinBatch
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
    """Selects the rows of twin batches to send and remembers what was sent, per point."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        n = len(policies)
        self._mode = np.array([_MODE_CODE[p.mode] for p in policies], dtype=np.int8)
        self._res = np.array([p.resolution or np.nan for p in policies], dtype=np.float64)
        deadband = np.array(
            [(p.resolution or 0.0) if p.deadband is None else p.deadband for p in policies],
            dtype=np.float64,
        )
        with np.errstate(invalid="ignore"):
            # counts within the deadband; the epsilon keeps 0.3/0.1 = 2.9999999999999996 at 3
            counts = np.floor(deadband / self._res * (1 + 1e-9))
        self._band = np.where(np.isnan(self._res), deadband, counts)
        self._heartbeat = np.array(
            [np.inf if p.heartbeat is None else p.heartbeat for p in policies], dtype=np.float64
        )
        self._seen = np.zeros(n, dtype=bool)
        self._value = np.full(n, np.nan)  # last sent, in counts where there is a resolution
        self._estimate = np.full(n, np.nan)
        self._alarm = np.zeros(n, dtype=np.uint8)
        self._quality = np.zeros(n, dtype=np.uint16)
        self._sent_at = np.full(n, -np.inf)
        self._exact = np.isnan(self._res)
        self._slot = np.zeros(n, dtype=np.int64)  # scratch for the duplicate check

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
        n = len(index)
        nis_rows = None if nis is None else np.asarray(nis, dtype=np.float64)
        if nis_rows is not None and nis_rows.shape != (n,):
            raise ValueError(f"nis must have shape ({n},), got {nis_rows.shape}")
        mask = np.zeros(n, dtype=bool)
        # A point may appear more than once in a batch; each later row compares with the
        # earlier one if that was sent, so rows are taken in waves of distinct points.
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            for rows in self._waves(index):
                p = index[rows]
                value = self._grid(batch.value[rows], p)
                estimate = self._grid(batch.estimate[rows], p)
                mode = self._mode[p]
                send = (
                    ~self._seen[p]
                    | (batch.quality[rows] != self._quality[p])
                    | (batch.alarm[rows] != self._alarm[p])
                    | (now - self._sent_at[p] >= self._heartbeat[p])
                    | (mode == _FULL)
                )
                moved = self._moved(value, self._value[p], p)
                send |= (mode == _DEADBAND) & moved
                model = mode == _MODEL
                if model.any():
                    if nis_rows is None:
                        send |= model & moved
                    else:
                        r = nis_rows[rows]
                        tracked = (r > float(sigmas) ** 2) | self._moved(
                            estimate, self._estimate[p], p
                        )
                        send |= model & np.where(np.isfinite(r), tracked, moved)
                mask[rows[send]] = True
                self._remember(p[send], value[send], estimate[send], batch, rows[send], now=now)
        return mask

    def record(self, batch: TwinBatch, now: float) -> None:
        """Remember every row of ``batch`` as sent at ``now`` (e.g. a snapshot)."""
        index = self._index(batch)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            for rows in self._waves(index):
                p = index[rows]
                value = self._grid(batch.value[rows], p)
                estimate = self._grid(batch.estimate[rows], p)
                self._remember(p, value, estimate, batch, rows, now=now)

    def _remember(
        self,
        p: npt.NDArray[np.int64],
        value: FloatArray,
        estimate: FloatArray,
        batch: TwinBatch,
        rows: npt.NDArray[np.int64],
        *,
        now: float,
    ) -> None:
        self._seen[p] = True
        self._value[p] = value
        self._estimate[p] = estimate
        self._alarm[p] = batch.alarm[rows]
        self._quality[p] = batch.quality[rows]
        self._sent_at[p] = now

    def _index(self, batch: TwinBatch) -> npt.NDArray[np.int64]:
        index = np.asarray(batch.index)
        n = len(index)
        for name in ("ts", "value", "estimate", "score", "alarm", "quality"):
            if np.shape(getattr(batch, name)) != (n,):
                raise ValueError(f"batch column {name!r} must be 1-D with {n} rows")
        if index.dtype.kind not in "iu" or (
            n and (index.min() < 0 or index.max() >= self.n_points)
        ):
            raise ValueError(f"batch point indexes must be integers in 0..{self.n_points - 1}")
        return index.astype(np.int64, copy=False)

    def _waves(self, index: npt.NDArray[np.int64]) -> list[npt.NDArray[np.int64]]:
        """Row numbers grouped so each group holds a point at most once, in row order."""
        rows = np.arange(len(index))
        self._slot[index] = rows
        if (self._slot[index] == rows).all():  # the usual case: every point once
            return [rows] if len(rows) else []
        return _waves(index)

    def _grid(self, values: FloatArray, p: npt.NDArray[np.int64]) -> FloatArray:
        """Values in counts of the resolution (as float64), or unchanged without one."""
        res = self._res[p]
        return np.where(self._exact[p], values, np.rint(values / res))

    def _moved(
        self, new: FloatArray, old: FloatArray, p: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        beyond = np.abs(new - old) > self._band[p]
        if np.isfinite(new).all() and np.isfinite(old).all():
            return beyond
        same_special = (new == old) | (np.isnan(new) & np.isnan(old))
        return np.where(np.isfinite(new) & np.isfinite(old), beyond, ~same_special)


def _waves(index: npt.NDArray[np.int64]) -> list[npt.NDArray[np.int64]]:
    """Row numbers grouped so each group holds a point at most once, in row order."""
    n = len(index)
    if n == 0:
        return []
    order = np.argsort(index, kind="stable")
    ps = index[order]
    start = np.ones(n, dtype=bool)
    start[1:] = ps[1:] != ps[:-1]
    run_start = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - run_start
    if rank.max() == 0:
        return [np.arange(n)]
    return [np.flatnonzero(rank == r) for r in range(int(rank.max()) + 1)]
