"""Model groups of the twin stage: points of a device that share a model and a poll period; assets.

A group owns one batched estimator and updates it once per tick with its points' latest values.
Each group has a persistence ``key`` (stable across restarts while the config names the same
device, model and period) and ``params`` (what the estimator was built with): saved state is
restored only into a group with the same key and params, point by point by name, so adding a
point to a device does not restart the commissioning of the others.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edgetwin.config.schema import AssetConfig, TwinConfig
from edgetwin.core.types import Quality
from edgetwin.twin import (
    AssetEstimator,
    LagEstimator,
    LagOutput,
    LevelEstimator,
    LevelOutput,
    TrendEstimator,
    TrendOutput,
)

State = dict[str, npt.NDArray[Any]]
_STALE = int(Quality.STALE)

log = logging.getLogger(__name__)


class PointState(Protocol):
    """The latest per-point arrays of a device twin, which groups read and write."""

    names: list[str]
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.uint16]
    estimate: npt.NDArray[np.float64]
    score: npt.NDArray[np.float64]
    nis: npt.NDArray[np.float64]
    alarm: npt.NDArray[np.uint8]


def _common(twin: TwinConfig) -> dict[str, Any]:
    return {
        "commissioning": twin.commissioning,
        "threshold": twin.threshold,
        "cusum_k": twin.cusum_k,
        "cusum_h": twin.cusum_h,
        "alarm_on": twin.alarm_on,
        "alarm_off": twin.alarm_off,
    }


def _span(points: npt.NDArray[np.intp]) -> slice | npt.NDArray[np.intp]:
    """``points`` as a slice where they are consecutive: a view, not a gather and a scatter."""
    if len(points) and (np.diff(points) == 1).all():
        return slice(int(points[0]), int(points[-1]) + 1)
    return points


class PointGroup:
    """Points of one device with the same univariate model (level, trend or lag) and period."""

    def __init__(
        self,
        device: str,
        model: str,
        period: float,
        *,
        points: npt.NDArray[np.intp],
        names: list[str],
        twin: TwinConfig,
        quanta: list[float | None],
        inputs: npt.NDArray[np.intp] | None = None,
    ) -> None:
        self.key = f"{device}:{model}:{period:g}"
        self.model = model
        self.points = points
        self.names = [names[i] for i in points]
        self.inputs = inputs
        self._span = _span(points)
        self.params: dict[str, Any] = _common(twin)
        n = len(points)
        # A quantised value keeps at least one step of noise: constant commissioning data must
        # not make its first one-step change an alarm (one step, not step/sqrt(12): docs/twin.md).
        floor = np.array([quanta[i] or 0.0 for i in points], dtype=np.float64)
        self.estimator: LevelEstimator | TrendEstimator | LagEstimator
        if model == "level":
            self.estimator = LevelEstimator(n, **self.params, noise_floor=floor)
        elif model == "trend":
            self.estimator = TrendEstimator(n, **self.params, noise_floor=floor)
        elif model == "lag":
            self.params["horizon"] = twin.horizon
            self.estimator = LagEstimator(n, **self.params, noise_floor=floor)
        else:  # pragma: no cover - the schema allows no other model
            raise ValueError(f"unknown model {model!r}")
        # Outputs reused every tick: update() copies them out before the next one.
        self._level_out = (
            est.new_output() if isinstance(est := self.estimator, LevelEstimator) else None
        )
        self._trend_out = est.new_output() if isinstance(est, TrendEstimator) else None
        self._lag_out = est.new_output() if isinstance(est, LagEstimator) else None

    def update(self, t: PointState, polled: npt.NDArray[np.bool_]) -> None:
        """Advance the estimator one tick; points not polled this tick are predicted only."""
        pts = self.points
        mask = polled[pts]
        out = self._step(t, pts, np.where(mask, t.quality[pts], _STALE).astype(np.uint16))
        t.estimate[pts] = out.estimate
        t.score[pts] = out.score
        t.nis[pts] = np.where(mask, out.nis, np.nan)
        t.alarm[pts] = out.alarm

    def learning(self) -> npt.NDArray[np.bool_]:
        """Per point of the group: still commissioning (the twin is learning it)."""
        return ~self.estimator.calibrated

    def update_all(self, t: PointState) -> None:
        """``update`` when every point of the device was polled (fewer array operations)."""
        pts = self._span
        out = self._step(t, pts, t.quality[pts])
        t.estimate[pts] = out.estimate
        t.score[pts] = out.score
        t.nis[pts] = out.nis
        t.alarm[pts] = out.alarm

    def _step(
        self, t: PointState, pts: slice | npt.NDArray[np.intp], quality: npt.NDArray[np.uint16]
    ) -> LevelOutput | TrendOutput | LagOutput:
        est = self.estimator
        if isinstance(est, LagEstimator):
            # The input's latest value: it may be polled at another period than this point.
            assert self.inputs is not None
            return est.update(
                t.value[pts],
                t.value[self.inputs],
                quality,
                t.quality[self.inputs],
                out=self._lag_out,
            )
        if isinstance(est, TrendEstimator):
            return est.update(t.value[pts], quality, out=self._trend_out)
        return est.update(t.value[pts], quality, out=self._level_out)

    def state(self) -> State:
        """The estimator's state arrays (copies)."""
        return self.estimator.state()

    def restore(self, names: list[str], state: Mapping[str, npt.NDArray[Any]]) -> int:
        """Load the columns of the points in ``names`` that this group has; return how many."""
        old = {name: j for j, name in enumerate(names)}
        pairs = [(i, old[name]) for i, name in enumerate(self.names) if name in old]
        if not pairs:
            return 0
        merged = self.estimator.state()
        if set(merged) != set(state):
            raise ValueError("saved state has other fields")
        new_cols = np.array([i for i, _ in pairs])
        old_cols = np.array([j for _, j in pairs])
        for field, arr in merged.items():
            saved = np.asarray(state[field])
            if saved.dtype != arr.dtype or saved.shape[1:] != arr.shape[1:]:
                raise ValueError(f"saved field {field!r} does not fit")
            arr[new_cols] = saved[old_cols]
        self.estimator.load_state(merged)
        return len(pairs)


class AssetGroup:
    """One asset: a multivariate model over points of one device, or of several devices.

    On one device the asset ticks with every reading of its points (``update``, ``update_all``,
    called by that device's twin). Across devices it ticks through ``report``: when every
    device has a reading not yet used by a tick, or when a device reads again before the others
    have (faster, or another is late or offline); the points of devices without a new reading
    are STALE in that tick, so the model imputes them. A device that ticked the asset by
    reading again drives it from then on: each of its readings ticks it, and the slower
    devices' readings join the next tick. A reading's values are fresh in one tick only.
    """

    def __init__(self, asset: AssetConfig, points: npt.NDArray[np.intp]) -> None:
        self.key = f"asset:{asset.name}"
        self.name = asset.name
        self.devices = asset.devices
        self.device = self.devices[0]  # where one device is expected (events, metrics labels)
        self.points = points  # each column's position among its own device's points
        self._span = _span(points)
        self.names = asset.point_names
        self.params: dict[str, Any] = asset.params()
        self.estimator = AssetEstimator(1, len(points), **self.params)
        self.alarm = 0
        self.score = 0.0
        self.contribution = np.zeros(len(points))
        # scored against an operating point re-learnt after an alarm, not the commissioned one
        self.away = False
        owner = [d for d, _ in asset.members]
        # Per device: the asset's columns on it and those points' positions in the device.
        self.parts: list[tuple[str, npt.NDArray[np.intp], npt.NDArray[np.intp]]] = []
        for dev in self.devices:
            cols = np.array([j for j, d in enumerate(owner) if d == dev], dtype=np.intp)
            self.parts.append((dev, cols, points[cols]))
        self._value = np.full(len(points), np.nan)
        self._quality = np.full(len(points), _STALE, dtype=np.uint16)
        self._fresh = np.zeros(len(points), dtype=bool)  # per column: read since the last tick
        self._reported = np.zeros(len(self.parts), dtype=bool)  # per device: likewise
        self._driver: int | None = None  # the device that ticked it by reading again

    def update(self, t: PointState, polled: npt.NDArray[np.bool_]) -> None:
        """Advance the asset one tick with its points' latest values."""
        pts = self.points
        quality = np.where(polled[pts], t.quality[pts], _STALE).astype(np.uint16)
        self._step(t.value[pts], quality)

    @property
    def learning(self) -> bool:
        """Whether the asset is still commissioning (the twin is learning it)."""
        return not bool(self.estimator.calibrated[0])

    def update_all(self, t: PointState) -> None:
        """``update`` when every point of the device was polled."""
        self._step(t.value[self._span], t.quality[self._span])

    def report(self, part: int, t: PointState, polled: npt.NDArray[np.bool_] | None) -> bool:
        """Take a reading of device ``parts[part]`` (``polled``: its points read; None: all).

        Ticks the asset when due (see the class docstring); returns whether it ticked.
        """
        _, cols, pos = self.parts[part]
        if polled is not None:
            hit = polled[pos]
            if not hit.any():
                return False
            cols, pos = cols[hit], pos[hit]
        again = bool(self._reported[part]) or self._driver == part
        self._reported[part] = True
        self._value[cols] = t.value[pos]
        self._quality[cols] = t.quality[pos]
        self._fresh[cols] = True
        if not (again or self._reported.all()):
            return False
        self._step(self._value, np.where(self._fresh, self._quality, _STALE).astype(np.uint16))
        self._fresh.fill(False)
        self._reported.fill(False)
        self._driver = part if again else None
        return True

    def _step(self, values: npt.NDArray[np.float64], quality: npt.NDArray[np.uint16]) -> None:
        out = self.estimator.update(values[None, :], quality[None, :])
        self.alarm = int(out.alarm[0])
        self.score = float(out.score[0])
        self.contribution = out.contribution[0].copy()
        away = bool(self.estimator.away[0])
        if away != self.away:
            self.away = away
            log.info(
                "asset %s: %s",
                self.name,
                "re-learns where it now runs, away from its commissioned operating point"
                if away
                else "back at its commissioned operating point",
            )

    def contributions(self) -> dict[str, float]:
        """Each point's share of the score, 0..1 (a point that offsets the others counts 0)."""
        share = np.clip(self.contribution, 0.0, None)
        total = float(share.sum())
        if total > 0.0:
            share = share / total
        return {n: round(float(c), 4) for n, c in zip(self.names, share, strict=True)}

    def state(self) -> State:
        """The estimator's state arrays (copies)."""
        return self.estimator.state()

    def restore(self, names: list[str], state: Mapping[str, npt.NDArray[Any]]) -> int:
        """Load the saved state if it was saved for the same points; return how many points."""
        if names != self.names:
            return 0
        self.estimator.load_state(state)
        self.away = bool(self.estimator.away[0])
        return len(names)
