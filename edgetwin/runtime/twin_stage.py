"""Readings → twin estimates, scores and alarms, as columnar batches over gateway point indexes.

Runs on a worker thread (the Numba kernels release the GIL); one call at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgetwin.config.schema import Config, TwinConfig
from edgetwin.core.types import Alarm, DeviceReading, TwinBatch
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


class _DeviceTwin:
    def __init__(
        self, names: list[str], models: Sequence[str], first: int, twin: TwinConfig
    ) -> None:
        n = len(names)
        self.names = names
        self.index = np.arange(first, first + n, dtype=np.int64)
        self.level = np.array([i for i, m in enumerate(models) if m == "level"], dtype=np.int64)
        self.estimator = (
            LevelEstimator(
                len(self.level),
                commissioning=twin.commissioning,
                threshold=twin.threshold,
                cusum_k=twin.cusum_k,
                cusum_h=twin.cusum_h,
                alarm_on=twin.alarm_on,
                alarm_off=twin.alarm_off,
            )
            if len(self.level)
            else None
        )
        self.estimate = np.zeros(n)
        self.alarm = np.zeros(n, dtype=np.uint8)

    def step(self, r: DeviceReading) -> TwinBatch:
        n = len(self.names)
        good = (r.quality == 0) & np.isfinite(r.values)
        # Points without a model: the estimate is the last good value.
        self.estimate = np.where(good, r.values, self.estimate)
        score = np.zeros(n)
        alarm = np.zeros(n, dtype=np.uint8)
        if self.estimator is not None:
            out = self.estimator.update(r.values[self.level], r.quality[self.level])
            self.estimate[self.level] = out.estimate
            score[self.level] = out.score
            alarm[self.level] = out.alarm
        self.alarm = alarm
        return TwinBatch(
            index=self.index.copy(),
            ts=np.full(n, r.ts),
            value=r.values.astype(np.float64, copy=True),
            estimate=self.estimate.copy(),
            score=score,
            alarm=alarm,
            quality=r.quality.astype(np.uint16, copy=True),
        )


class TwinStage:
    """All devices' twins, and the latest state of every point for snapshots."""

    def __init__(self, cfg: Config) -> None:
        self.devices: dict[str, _DeviceTwin] = {}
        first = 0
        for dev in cfg.devices:
            names = [p.name for p in dev.points]
            models = [p.model for p in dev.points]
            self.devices[dev.name] = _DeviceTwin(names, models, first, cfg.twin)
            first += len(names)
        self.n_points = first
        self._latest: dict[str, TwinBatch] = {}

    def step(self, reading: DeviceReading) -> tuple[TwinBatch, list[AlarmChange]]:
        """Update the device's twin with one reading; return its batch and alarm changes."""
        twin = self.devices[reading.device]
        before = twin.alarm.copy()
        batch = twin.step(reading)
        self._latest[reading.device] = batch
        changes = [
            AlarmChange(
                device=reading.device,
                point=twin.names[i],
                index=int(twin.index[i]),
                before=Alarm(int(before[i])),
                after=Alarm(int(batch.alarm[i])),
                ts=reading.ts,
                value=float(batch.value[i]),
                estimate=float(batch.estimate[i]),
                score=float(batch.score[i]),
            )
            for i in np.flatnonzero(before != batch.alarm)
        ]
        return batch, changes

    def snapshot(self) -> TwinBatch | None:
        """The latest batch of every device that has been read, as one batch."""
        if not self._latest:
            return None
        parts = list(self._latest.values())
        return TwinBatch(
            index=np.concatenate([p.index for p in parts]),
            ts=np.concatenate([p.ts for p in parts]),
            value=np.concatenate([p.value for p in parts]),
            estimate=np.concatenate([p.estimate for p in parts]),
            score=np.concatenate([p.score for p in parts]),
            alarm=np.concatenate([p.alarm for p in parts]),
            quality=np.concatenate([p.quality for p in parts]),
        )
