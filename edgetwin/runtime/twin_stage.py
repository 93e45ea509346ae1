"""Readings → twin estimates, scores and alarms, as columnar batches over gateway point indexes.

Each device's points are split into rate groups (points polled together); every group with
twinned points has its own batched estimator. An asset on one device is one of its groups; an
asset over several devices takes each of their readings and ticks by the rule in
:class:`~edgetwin.runtime.twin_groups.AssetGroup`. Runs on a worker thread (the Numba kernels
release the GIL); one call at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgetwin.config.schema import AssetConfig, Config, DeviceConfig, TwinConfig
from edgetwin.core.types import Alarm, DeviceReading, Quality, TwinBatch
from edgetwin.runtime.twin_groups import AssetGroup, PointGroup

Severity = Literal["minor", "major", "critical"]


def severity(score: float, twin: TwinConfig) -> Severity:
    """How far over its threshold an alarm is: minor, major (>= twin.major), critical."""
    if score >= twin.critical:
        return "critical"
    return "major" if score >= twin.major else "minor"


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """A point or an asset whose alarm state changed at this tick."""

    device: str
    point: str | None  # None for an asset
    index: int | None
    before: Alarm
    after: Alarm
    ts: float
    value: float | None
    estimate: float | None
    score: float
    severity: Severity
    asset: str | None = None
    contributions: dict[str, float] | None = None  # keyed "device.point" across devices
    devices: tuple[str, ...] = ()  # an asset's devices, ``device`` first; () for a point


class _DeviceTwin:
    def __init__(self, dev: DeviceConfig, first: int, twin: TwinConfig) -> None:
        names = [p.name for p in dev.points]
        n = len(names)
        self.names = names
        self.first = first
        pos = {name: i for i, name in enumerate(names)}
        keys = [(p.model, p.interval or dev.interval) for p in dev.points]
        self.groups: list[PointGroup | AssetGroup] = []
        for model, period in sorted(set(keys)):
            if model == "none":
                continue
            pts = np.array([i for i, k in enumerate(keys) if k == (model, period)], dtype=np.intp)
            inputs = None
            if model == "lag":
                inputs = np.array([pos[str(dev.points[i].input)] for i in pts], dtype=np.intp)
            self.groups.append(
                PointGroup(
                    dev.name,
                    model,
                    period,
                    points=pts,
                    names=names,
                    twin=twin,
                    quanta=[p.quantum for p in dev.points],
                    inputs=inputs,
                )
            )
        self.assets: list[AssetGroup] = []
        self.value = np.full(n, np.nan)
        self.estimate = np.zeros(n)
        self.score = np.zeros(n)
        self.nis = np.full(n, np.nan)  # NaN: no model, or nothing to say this tick
        self.alarm = np.zeros(n, dtype=np.uint8)
        self.quality = np.full(n, int(Quality.STALE), dtype=np.uint16)
        self.ts = np.zeros(n)
        self.seen = np.zeros(n, dtype=bool)
        self._all_seen = False
        plain = np.array([i for i, k in enumerate(keys) if k[0] == "none"], dtype=np.intp)
        self._plain = plain if len(plain) < n else slice(None)
        self._has_plain = len(plain) > 0
        index = np.arange(first, first + n, dtype=np.int64)
        index.flags.writeable = False  # shared by every whole-device batch
        self._index = index

    def add_asset(self, asset: AssetConfig) -> None:
        pos = {name: i for i, name in enumerate(self.names)}
        group = AssetGroup(asset, np.array([pos[p] for _, p in asset.members], np.intp))
        self.assets.append(group)
        self.groups.append(group)

    def step(self, r: DeviceReading) -> tuple[np.ndarray | None, TwinBatch]:
        """Update the points in ``r``; return their device indexes (None: all) and the batch."""
        if r.index is None:
            return None, self._step_all(r)
        idx = r.index
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
            # A group is always polled whole; anything missing is predicted, not measured.
            if polled[g.points].any():
                g.update(self, polled)
        return idx, self._batch(idx)

    def _step_all(self, r: DeviceReading) -> TwinBatch:
        """``step`` for a poll of every point: the usual case, with the fewest array operations.

        A daemon at rest pays mostly for cold caches on each wake-up, and every numpy call
        costs microseconds then: this path does what ``step`` does in about half the calls.
        Points without a model keep score 0, NaN nis and NORMAL from the start.
        """
        n = len(self.names)
        if r.values.shape != (n,) or r.quality.shape != (n,):
            raise ValueError(f"device {r.device!r}: a reading of all points needs {n} values")
        np.copyto(self.value, r.values)
        np.copyto(self.quality, r.quality)
        self.ts.fill(r.ts)
        if not self._all_seen:
            self.seen.fill(True)
            self._all_seen = True
        if self._has_plain:
            # The estimate of a point without a model is its last good value.
            v, q, plain = r.values[self._plain], r.quality[self._plain], self._plain
            self.estimate[plain] = np.where((q == 0) & np.isfinite(v), v, self.estimate[plain])
        for g in self.groups:
            g.update_all(self)
        return TwinBatch(
            index=self._index,
            ts=np.full(n, r.ts),
            value=self.value.copy(),
            estimate=self.estimate.copy(),
            score=self.score.copy(),
            alarm=self.alarm.copy(),
            quality=self.quality.copy(),
        )

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

    def learning(self) -> np.ndarray:
        """Per point: still commissioning; False for points without a model."""
        out = np.zeros(len(self.names), dtype=bool)
        for g in self.groups:
            if isinstance(g, PointGroup):
                out[g.points] = g.learning()
        return out

    def snapshot(self) -> TwinBatch | None:
        idx = np.flatnonzero(self.seen)
        return self._batch(idx) if len(idx) else None


class TwinStage:
    """All devices' twins, and the latest state of every point for snapshots."""

    def __init__(self, cfg: Config) -> None:
        self.twin = cfg.twin
        self.devices: dict[str, _DeviceTwin] = {}
        first = 0
        for dev in cfg.devices:
            self.devices[dev.name] = _DeviceTwin(dev, first, cfg.twin)
            first += len(dev.points)
        self.spanning: list[AssetGroup] = []  # the assets over several devices
        # Per device: the assets over several devices that read it, with its part in each.
        self._readers: dict[str, list[tuple[AssetGroup, int]]] = {}
        pos = {d: {p: i for i, p in enumerate(t.names)} for d, t in self.devices.items()}
        for asset in cfg.assets:
            if len(asset.devices) == 1:
                self.devices[asset.primary].add_asset(asset)
                continue
            group = AssetGroup(asset, np.array([pos[d][p] for d, p in asset.members], np.intp))
            self.spanning.append(group)
            for part, dev_name in enumerate(group.devices):
                self._readers.setdefault(dev_name, []).append((group, part))
        # Every asset: those of one device, device by device, then those over several.
        self.assets = [*(a for t in self.devices.values() for a in t.assets), *self.spanning]
        self.n_points = first

    def groups(self) -> list[PointGroup | AssetGroup]:
        """Every model group of every device, and the assets over several (for persistence)."""
        return [*(g for t in self.devices.values() for g in t.groups), *self.spanning]

    def step(self, reading: DeviceReading) -> tuple[TwinBatch, np.ndarray, list[AlarmChange]]:
        """Update the device's twin with one reading; return its batch, NIS and alarm changes.

        The changes include those of assets over several devices that this reading ticked.
        """
        twin = self.devices[reading.device]
        before = twin.alarm.copy()
        assets_before = [a.alarm for a in twin.assets]
        idx, batch = twin.step(reading)
        if idx is None:
            changed = np.flatnonzero(before != twin.alarm)
        else:
            changed = idx[before[idx] != twin.alarm[idx]]
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
                severity=severity(float(twin.score[i]), self.twin),
            )
            for i in changed.tolist()
        ]
        changes += [
            self._asset_change(a, was, reading.ts)
            for a, was in zip(twin.assets, assets_before, strict=True)
            if a.alarm != was
        ]
        readers = self._readers.get(reading.device)
        if readers:
            polled = None
            if idx is not None:
                polled = np.zeros(len(twin.names), dtype=bool)
                polled[idx] = True
            for group, part in readers:
                was = group.alarm
                if group.report(part, twin, polled) and group.alarm != was:
                    changes.append(self._asset_change(group, was, reading.ts))
        return batch, twin.nis.copy() if idx is None else twin.nis[idx], changes

    def _asset_change(self, a: AssetGroup, was: int, ts: float) -> AlarmChange:
        return AlarmChange(
            device=a.device,
            point=None,
            index=None,
            before=Alarm(was),
            after=Alarm(a.alarm),
            ts=ts,
            value=None,
            estimate=None,
            score=a.score,
            severity=severity(a.score, self.twin),
            asset=a.name,
            contributions=a.contributions(),
            devices=tuple(a.devices),
        )

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
