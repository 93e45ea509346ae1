"""Readings → twin estimates, scores and alarms, as columnar batches over gateway point indexes.

Each device's points are split into rate groups (points polled together); every group with
twinned points has its own batched estimator. Runs on a worker thread (the Numba kernels
release the GIL); one call at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgetwin.config.schema import Config, TwinConfig
from edgetwin.core.types import Alarm, DeviceReading, Quality, TwinBatch
from edgetwin.twin.level import LevelEstimator


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """A point whose alarm state changed at this tick."""

    device: str
    point: str
    index: int
    before: Alarm
    after: Alarm
    ts: float
    value: float
    estimate: float
    score: float


class _Group:
    """The twinned points of one rate group and their estimator."""

    def __init__(self, points: np.ndarray, twin: TwinConfig) -> None:
        self.points = points  # device point indexes, ascending
        self.estimator = LevelEstimator(
            len(points),
            commissioning=twin.commissioning,
            threshold=twin.threshold,
            cusum_k=twin.cusum_k,
            cusum_h=twin.cusum_h,
            alarm_on=twin.alarm_on,
            alarm_off=twin.alarm_off,
        )


class _DeviceTwin:
    def __init__(
        self,
        names: list[str],
        models: Sequence[str],
        periods: Sequence[float],
        first: int,
        twin: TwinConfig,
    ) -> None:
        n = len(names)
        self.names = names
        self.first = first
        level = np.array([m == "level" for m in models], dtype=bool)
        per = np.asarray(periods, dtype=np.float64)
        self.groups = [
            _Group(np.flatnonzero(level & (per == p)), twin)
            for p in sorted(set(per[level].tolist()))
        ]
        self.value = np.full(n, np.nan)
        self.estimate = np.zeros(n)
        self.score = np.zeros(n)
        self.nis = np.full(n, np.nan)  # NaN: no model, or nothing to say this tick
        self.alarm = np.zeros(n, dtype=np.uint8)
        self.quality = np.full(n, int(Quality.STALE), dtype=np.uint16)
        self.ts = np.zeros(n)
        self.seen = np.zeros(n, dtype=bool)

    def step(self, r: DeviceReading) -> tuple[np.ndarray, TwinBatch]:
        """Update the points in ``r``; return their device indexes and the batch."""
        idx = r.index if r.index is not None else np.arange(len(self.names))
        good = (r.quality == 0) & np.isfinite(r.values)
        # Points without a model: the estimate is the last good value.
        self.estimate[idx] = np.where(good, r.values, self.estimate[idx])
        self.score[idx] = 0.0
        self.nis[idx] = np.nan
        self.alarm[idx] = Alarm.NORMAL
        self.value[idx] = r.values
        self.quality[idx] = r.quality
        self.ts[idx] = r.ts
        self.seen[idx] = True
        polled = np.zeros(len(self.names), dtype=bool)
        polled[idx] = True
        for g in self.groups:
            if not polled[g.points].any():
                continue
            # A group is always polled whole; anything missing is predicted, not measured.
            quality = np.where(polled[g.points], self.quality[g.points], int(Quality.STALE))
            out = g.estimator.update(self.value[g.points], quality.astype(np.uint16))
            self.estimate[g.points] = out.estimate
            self.score[g.points] = out.score
            self.nis[g.points] = np.where(polled[g.points], out.nis, np.nan)
            self.alarm[g.points] = out.alarm
        return idx, self._batch(idx)

    def _batch(self, idx: np.ndarray) -> TwinBatch:
        return TwinBatch(
            index=(idx + self.first).astype(np.int64),
            ts=self.ts[idx].copy(),
            value=self.value[idx].copy(),
            estimate=self.estimate[idx].copy(),
            score=self.score[idx].copy(),
            alarm=self.alarm[idx].copy(),
            quality=self.quality[idx].copy(),
        )

    def snapshot(self) -> TwinBatch | None:
        idx = np.flatnonzero(self.seen)
        return self._batch(idx) if len(idx) else None


class TwinStage:
    """All devices' twins, and the latest state of every point for snapshots."""

    def __init__(self, cfg: Config) -> None:
        self.devices: dict[str, _DeviceTwin] = {}
        first = 0
        for dev in cfg.devices:
            self.devices[dev.name] = _DeviceTwin(
                [p.name for p in dev.points],
                [p.model for p in dev.points],
                [p.interval or dev.interval for p in dev.points],
                first,
                cfg.twin,
            )
            first += len(dev.points)
        self.n_points = first

    def step(self, reading: DeviceReading) -> tuple[TwinBatch, np.ndarray, list[AlarmChange]]:
        """Update the device's twin with one reading; return its batch, NIS and alarm changes."""
        twin = self.devices[reading.device]
        before = twin.alarm.copy()
        idx, batch = twin.step(reading)
        changes = [
            AlarmChange(
                device=reading.device,
                point=twin.names[i],
                index=twin.first + int(i),
                before=Alarm(int(before[i])),
                after=Alarm(int(twin.alarm[i])),
                ts=reading.ts,
                value=float(twin.value[i]),
                estimate=float(twin.estimate[i]),
                score=float(twin.score[i]),
            )
            for i in idx[before[idx] != twin.alarm[idx]]
        ]
        return batch, twin.nis[idx].copy(), changes

    def snapshot(self) -> TwinBatch | None:
        """The latest state of every point that has been read, as one batch."""
        parts = [b for t in self.devices.values() if (b := t.snapshot()) is not None]
        if not parts:
            return None
        return TwinBatch(
            index=np.concatenate([p.index for p in parts]),
            ts=np.concatenate([p.ts for p in parts]),
            value=np.concatenate([p.value for p in parts]),
            estimate=np.concatenate([p.estimate for p in parts]),
            score=np.concatenate([p.score for p in parts]),
            alarm=np.concatenate([p.alarm for p in parts]),
            quality=np.concatenate([p.quality for p in parts]),
        )
