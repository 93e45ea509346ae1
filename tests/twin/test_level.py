"""Level estimator: the Numba kernel against a slow per-point reference, and behaviour."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgetwin.core.types import Alarm, Quality
from edgetwin.twin import LevelEstimator, LevelOutput, _level_kernel, warmup
from tests.support.heavy_tails import spikes

GOOD = int(Quality.GOOD)
BAD = int(Quality.COMM_FAIL)

# ---------------------------------------------------------------------------------------------
# Reference: one point at a time, plain Python floats, straight from the documented semantics.
# ---------------------------------------------------------------------------------------------


HORIZON = 1000  # differences after which the noise statistics forget exponentially


class RunningStats:
    """Running mean and population variance: exact averages, exponential after ``horizon``."""

    def __init__(self, horizon: float = math.inf) -> None:
        self.horizon = horizon
        self.n = 0
        self.mean = 0.0
        self.var = 0.0

    def add(self, v: float) -> None:
        self.n += 1
        w = max(1.0 / self.n, 1.0 / self.horizon)
        delta = v - self.mean
        self.mean += w * delta
        self.var = (1.0 - w) * (self.var + w * delta * delta)


class RunningCovariance:
    """Running population covariance of pairs (a, b), weighted like RunningStats."""

    def __init__(self, horizon: float) -> None:
        self.horizon = horizon
        self.n = 0
        self.mean_a = 0.0
        self.mean_b = 0.0
        self.cov = 0.0

    def add(self, a: float, b: float) -> None:
        self.n += 1
        w = max(1.0 / self.n, 1.0 / self.horizon)
        da = a - self.mean_a
        self.mean_a += w * da
        self.mean_b += w * (b - self.mean_b)
        self.cov = (1.0 - w) * self.cov + w * da * (b - self.mean_b)


class ReferencePoint:
    """The level model of one point."""

    def __init__(
        self,
        commissioning: int = 30,
        threshold: float = 10.83,
        cusum_k: float = 0.5,
        cusum_h: float = 8.0,
        alarm_on: int = 3,
        alarm_off: int = 5,
        noise_floor: float = 0.0,
    ) -> None:
        self.commissioning = commissioning
        self.noise_floor = noise_floor
        self.threshold = threshold
        self.cusum_k = cusum_k
        self.cusum_h = cusum_h
        self.alarm_on = alarm_on
        self.alarm_off = alarm_off
        self.values = RunningStats()
        self.diffs = RunningStats(HORIZON)
        self.pairs = RunningCovariance(HORIZON)  # (d[t-1], d[t])
        self.last: float | None = None  # previous sample, if it was learnt from
        self.prev_diff: float | None = None  # previous difference, if the chain is unbroken
        self.calibrated = False
        self.x = 0.0
        self.p = self.q = self.r = 0.0
        self.cp = self.cm = 0.0
        self.alarm = Alarm.NORMAL
        self.streak = 0

    def step(self, z: float, quality: int) -> tuple[float, float, float, int, bool]:
        """Return estimate, score, nis, alarm, initialized after sample ``z``."""
        good = quality == 0 and math.isfinite(z) and abs(z) <= 1e100
        score = nis = 0.0
        if not good:
            self.break_chain()
            if self.calibrated:
                self.p += self.q
        elif not self.calibrated:
            self.commission(z)
        else:
            score, nis = self.filter(z)
        initialized = self.calibrated or self.values.n > 0
        return self.x, score, nis, int(self.alarm), initialized

    def break_chain(self) -> None:
        self.last = None
        self.prev_diff = None

    def learn(self, z: float) -> None:
        if self.last is not None:
            d = z - self.last
            self.diffs.add(d)
            if self.prev_diff is not None:
                self.pairs.add(self.prev_diff, d)
            self.prev_diff = d
        self.last = z

    def estimate_noise(self) -> None:
        if self.pairs.n >= 2:
            var_d = self.diffs.var  # = 2r + q
            r = min(max(-self.pairs.cov, 0.0), var_d / 2)  # lag-1 autocovariance = -r
            standard_error = 1.5 * var_d / math.sqrt(min(self.pairs.n, HORIZON))
            q = var_d - 2 * r + standard_error
        else:
            r = self.values.var
            q = 0.0
        floor = self.noise_floor * self.noise_floor
        self.r = max(r, 1e-12, (1e-6 * self.values.mean) ** 2, floor)
        self.q = max(q, 1e-3 * self.r)

    def commission(self, z: float) -> None:
        self.values.add(z)
        self.learn(z)
        self.x = self.values.mean
        if self.values.n >= self.commissioning:
            self.estimate_noise()
            self.p = self.r
            self.calibrated = True

    def filter(self, z: float) -> tuple[float, float]:
        p_pred = self.p + self.q
        s = p_pred + self.r
        nu = z - self.x
        nis = nu * nu / s
        # outside ALARM a sample beyond the bound that follows a score < 1 (streak 0) is
        # winsorized onto the bound; a later one in a row is a change, not learnt from
        learn = self.alarm != Alarm.ALARM and (nis <= self.threshold or self.streak == 0)
        if nis > self.threshold and learn:
            nu = math.copysign(math.sqrt(self.threshold * s), nu)
            z = self.x + nu
        gain = p_pred / s
        self.x += gain * nu
        self.p = (1 - gain) * p_pred
        if learn:
            self.learn(z)
            self.estimate_noise()
        else:
            self.break_chain()
        u = nu / math.sqrt(s)
        self.cp = min(max(0.0, self.cp + u - self.cusum_k), self.cusum_h)
        self.cm = min(max(0.0, self.cm - u - self.cusum_k), self.cusum_h)
        score = max(nis / self.threshold, max(self.cp, self.cm) / self.cusum_h)

        if self.alarm == Alarm.ALARM:
            self.streak = self.streak + 1 if score < 0.8 else 0
            if self.streak >= self.alarm_off:
                self.alarm = Alarm.WARNING if score >= 0.5 else Alarm.NORMAL
                self.streak = 0
                self.cp = self.cm = 0.0
        else:
            self.streak = self.streak + 1 if score >= 1 else 0
            if self.streak >= self.alarm_on:
                self.alarm = Alarm.ALARM
                self.streak = 0
            else:
                self.alarm = Alarm.WARNING if score >= 0.5 else Alarm.NORMAL
        return score, nis


FIELDS = ("estimate", "score", "nis", "alarm", "initialized")


def run_reference(values: np.ndarray, quality: np.ndarray, **params: Any) -> dict[str, np.ndarray]:
    """Run every column through its own ReferencePoint; outputs shaped (ticks, points)."""
    ticks, n = values.shape
    floors = params.pop("noise_floor", None)
    floors = np.zeros(n) if floors is None else np.asarray(floors, dtype=np.float64)
    out = {f: np.zeros((ticks, n)) for f in FIELDS}
    for i in range(n):
        point = ReferencePoint(noise_floor=float(floors[i]), **params)
        for t in range(ticks):
            row = point.step(float(values[t, i]), int(quality[t, i]))
            for f, v in zip(FIELDS, row, strict=True):
                out[f][t, i] = v
    return out


def run_kernel(
    values: np.ndarray, quality: np.ndarray, est: LevelEstimator | None = None, **params: Any
) -> dict[str, np.ndarray]:
    """Feed rows to a LevelEstimator; outputs shaped (ticks, points)."""
    est = est or LevelEstimator(values.shape[1], **params)
    outs = [est.update(values[t], quality[t]) for t in range(values.shape[0])]
    return {f: np.array([getattr(o, f) for o in outs]) for f in FIELDS}


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    for f in ("estimate", "score", "nis"):
        assert np.isfinite(got[f]).all(), f
        scale = max(1.0, float(np.abs(want[f]).max(initial=0.0)))
        np.testing.assert_allclose(got[f], want[f], rtol=1e-9, atol=1e-12 * scale, err_msg=f)
    np.testing.assert_array_equal(got["alarm"], want["alarm"])
    np.testing.assert_array_equal(got["initialized"], want["initialized"].astype(bool))


def random_walk(
    rng: np.random.Generator, ticks: int, n: int, q: float = 0.01, r: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Return (true level, measurements) of random walks plus white noise."""
    level = 5.0 + np.cumsum(rng.normal(0.0, math.sqrt(q), (ticks, n)), axis=0)
    return level, level + rng.normal(0.0, math.sqrt(r), (ticks, n))


def good(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, dtype=np.uint16)


def feed(est: LevelEstimator, z: np.ndarray, qual: np.ndarray | None = None) -> list[LevelOutput]:
    qual = good(z.shape) if qual is None else qual
    return [est.update(z[t], qual[t]) for t in range(z.shape[0])]


# ---------------------------------------------------------------------------------------------
# Kernel against reference
# ---------------------------------------------------------------------------------------------


def test_random_walks_match_reference() -> None:
    rng = np.random.default_rng(1)
    _, z = random_walk(rng, 300, 6)
    z[150:, 2] += 12.0  # a step, so the alarm path is exercised too
    assert_same(run_kernel(z, good(z.shape)), run_reference(z, good(z.shape)))


def test_long_run_past_the_noise_horizon_matches_reference() -> None:
    rng = np.random.default_rng(14)
    _, z = random_walk(rng, 2600, 2, q=0.3)
    qual = np.where(rng.random(z.shape) < 0.02, BAD, GOOD).astype(np.uint16)
    got = run_kernel(z, qual)
    assert_same(got, run_reference(z, qual))


def test_nan_inf_and_bad_quality_match_reference() -> None:
    rng = np.random.default_rng(2)
    _, z = random_walk(rng, 250, 8)
    qual = good(z.shape)
    mask = rng.random(z.shape)
    z[mask < 0.05] = np.nan
    z[(mask >= 0.05) & (mask < 0.08)] = np.inf
    z[(mask >= 0.08) & (mask < 0.10)] = -np.inf
    z[(mask >= 0.10) & (mask < 0.11)] = 1e300  # finite but unusable
    qual[(mask >= 0.11) & (mask < 0.2)] = int(Quality.STALE | Quality.OUT_OF_RANGE)
    z[40:60, 3] = np.nan  # an outage during commissioning
    z[100:180, 4] = np.nan  # a long outage after it
    got = run_kernel(z, qual, commissioning=20)
    assert_same(got, run_reference(z, qual, commissioning=20))
    unused = ~np.isfinite(z) | (qual != 0) | (np.abs(z) > 1e100)
    assert (got["score"][unused] == 0.0).all()


@pytest.mark.parametrize("level", [0.0, 3.25, -1e6, 1e-9])
def test_constant_data_matches_reference(level: float) -> None:
    z = np.full((120, 3), level)
    got = run_kernel(z, good(z.shape))
    assert_same(got, run_reference(z, good(z.shape)))
    assert (got["estimate"] == level).all()
    assert (got["alarm"] == Alarm.NORMAL).all()
    assert (got["score"] == 0.0).all()


def test_steps_and_ramps_match_reference() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(400.0)[:, None]
    z = rng.normal(0.0, 1.0, (400, 4))
    z[:, 0] += np.where(t[:, 0] >= 100, 10.0, 0.0)  # up, stays
    z[:, 1] += np.where((t[:, 0] >= 80) & (t[:, 0] < 200), -15.0, 0.0)  # down and back
    z[:, 2] += 0.3 * np.maximum(t[:, 0] - 60, 0)  # ramp
    z[:, 3] += np.where(t[:, 0] >= 150, 0.2 * (t[:, 0] - 150), 0.0) * (t[:, 0] < 250)
    got = run_kernel(z, good(z.shape), alarm_off=3)
    assert_same(got, run_reference(z, good(z.shape), alarm_off=3))
    assert (got["alarm"] == Alarm.ALARM).any(axis=0).all()  # the paths were exercised


def test_many_points_of_different_scales_match_reference() -> None:
    rng = np.random.default_rng(4)
    n = 257
    scale = 10.0 ** rng.uniform(-6, 6, n)
    _, z = random_walk(rng, 120, n)
    z = z * scale + 1000.0 * scale
    qual = np.where(rng.random(z.shape) < 0.03, BAD, GOOD).astype(np.uint16)
    got = run_kernel(z, qual, commissioning=25)
    assert_same(got, run_reference(z, qual, commissioning=25))


def test_noise_floors_match_reference() -> None:
    rng = np.random.default_rng(18)
    _, z = random_walk(rng, 400, 8, q=0.01, r=1.0)
    z[:, 4:] = np.round(z[:, 4:] * 2.0) / 2.0  # quantised in steps of 0.5
    z[:, 6] = 3.0  # constant
    z[200:, 6] = 3.5  # then one step
    z[250:, 3] += 6.0
    qual = np.where(rng.random(z.shape) < 0.03, BAD, GOOD).astype(np.uint16)
    # below, near and above the data's noise (sd 1), and the quantisation noise of 0.5 steps
    floors = np.array([0.0, 0.3, 1.0, 3.0, 0.5 / math.sqrt(12), 0.5, 0.0, 0.5])
    got = run_kernel(z, qual, noise_floor=floors)
    assert_same(got, run_reference(z, qual, noise_floor=floors))
    assert not np.array_equal(got["nis"], run_kernel(z, qual)["nis"])  # the floors did bind


floors_strategy = st.one_of(
    st.just(0.0),
    st.floats(0.0, 1e7),  # up to far above the noise of any drawn data
    st.sampled_from([1e-6, 0.5, 2.0, 1e3]),
)

values_strategy = st.one_of(
    st.floats(-1e6, 1e6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, math.nan, math.inf]),
)


@st.composite
def batches(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    ticks = draw(st.integers(1, 60))
    n = draw(st.integers(1, 4))
    z = draw(hnp.arrays(np.float64, (ticks, n), elements=values_strategy))
    qual = draw(hnp.arrays(np.uint16, (ticks, n), elements=st.sampled_from([0, 0, 0, 1, 32])))
    params = {
        "commissioning": draw(st.integers(4, 10)),
        "threshold": draw(st.floats(0.5, 20.0)),
        "cusum_k": draw(st.floats(0.0, 1.0)),
        "cusum_h": draw(st.floats(0.5, 10.0)),
        "alarm_on": draw(st.integers(1, 3)),
        "alarm_off": draw(st.integers(1, 3)),
        "noise_floor": draw(st.none() | hnp.arrays(np.float64, (n,), elements=floors_strategy)),
    }
    return z, qual, params


@settings(max_examples=60, deadline=None)
@given(batches())
def test_hypothesis_arrays_match_reference(
    batch: tuple[np.ndarray, np.ndarray, dict[str, Any]],
) -> None:
    z, qual, params = batch
    assert_same(run_kernel(z, qual, **params), run_reference(z, qual, **params))


# ---------------------------------------------------------------------------------------------
# Calibration against batch statistics
# ---------------------------------------------------------------------------------------------


def batch_calibration(z: np.ndarray, usable: np.ndarray) -> tuple[float, float]:
    """(r, q) from numpy's var and cov over runs of consecutive usable samples."""
    diffs, pairs = [], []
    run: list[float] = []
    for v, ok in zip(z, usable, strict=True):
        if not ok:
            run = []
            continue
        run.append(float(v))
        if len(run) >= 2:
            diffs.append(run[-1] - run[-2])
        if len(run) >= 3:
            pairs.append((run[-2] - run[-3], run[-1] - run[-2]))
    var_d = np.var(diffs)
    lag1_cov = np.cov(np.array(pairs).T, bias=True)[0, 1]
    r = min(max(-lag1_cov, 0.0), var_d / 2)
    q = var_d - 2 * r + 1.5 * var_d / math.sqrt(len(pairs))
    return float(r), float(q)


def test_calibration_equals_batch_statistics() -> None:
    rng = np.random.default_rng(5)
    commissioning, n = 200, 5
    _, z = random_walk(rng, 400, n, q=0.1, r=2.0)
    qual = np.where(rng.random(z.shape) < 0.1, BAD, GOOD).astype(np.uint16)
    for i in range(n):
        usable = qual[:, i] == GOOD
        last = np.flatnonzero(usable)[commissioning - 1]  # the calibrating sample
        est = LevelEstimator(1, commissioning=commissioning)
        feed(est, z[: last + 1, i : i + 1], qual[: last + 1, i : i + 1])
        state = est.state()
        assert state["calibrated"][0] == 1
        r, q = batch_calibration(z[: last + 1, i], usable[: last + 1])
        assert state["r"][0] == pytest.approx(r, rel=1e-9)
        assert state["q"][0] == pytest.approx(q, rel=1e-9)


def test_noise_levels_are_learnt_online() -> None:
    rng = np.random.default_rng(6)
    _, z = random_walk(rng, 6000, 4, q=1.0, r=2.0)
    est = LevelEstimator(4)
    feed(est, z)
    state = est.state()
    margin = 1.5 * state["diff_var"] / math.sqrt(HORIZON)
    # over ~2000 effective differences r is known to ~7 %, q to ~20 %
    np.testing.assert_allclose(state["r"], 2.0, rtol=0.2)
    np.testing.assert_allclose(state["q"] - margin, 1.0, rtol=0.5)


@pytest.mark.parametrize("q_over_r", [0.0, 0.01, 0.3, 3.0])
def test_clean_random_walks_rarely_alarm(q_over_r: float) -> None:
    rng = np.random.default_rng(13)
    _, z = random_walk(rng, 3000, 50, q=q_over_r, r=1.0)
    alarm = np.array([o.alarm for o in feed(LevelEstimator(50), z)])
    assert (alarm == Alarm.ALARM).mean() < 1e-3


def test_noise_floor_binds_r_at_calibration_and_online() -> None:
    rng = np.random.default_rng(19)
    _, z = random_walk(rng, 600, 3, q=0.01, r=1.0)
    z[:, 0] = 7.0  # constant
    floors = np.array([0.2, 3.0, 0.01])  # for constant data; above the noise (1); below it
    est, plain = LevelEstimator(3, noise_floor=floors), LevelEstimator(3)
    r, plain_r = [], []
    for t in range(z.shape[0]):
        est.update(z[t], good((3,)))
        plain.update(z[t], good((3,)))
        if t >= 29:  # calibrated
            r.append(est.state()["r"])
            plain_r.append(plain.state()["r"])
    r_arr, plain_arr = np.array(r), np.array(plain_r)
    assert (r_arr[:, 0] == 0.2 * 0.2).all()
    assert est.state()["q"][0] == 1e-3 * (0.2 * 0.2)
    assert (r_arr[:, 1] == 9.0).all()
    assert (plain_arr[:, 1] < 3.0).all()  # what the data alone says
    np.testing.assert_array_equal(r_arr[:, 2], plain_arr[:, 2])


# ---------------------------------------------------------------------------------------------
# Behaviour
# ---------------------------------------------------------------------------------------------

STEP = 0.1  # a temperature held in a Modbus register in steps of 0.1 degC
QUANTISATION = STEP / math.sqrt(12)  # the noise such a reading has at least


def held_step(start: int, steps: float, ticks: int = 300) -> np.ndarray:
    """20.0 for ``start`` samples, then ``steps`` * STEP higher; shape (ticks + start, 1)."""
    z = np.full((start + ticks, 1), 20.0)
    z[start:] += steps * STEP
    return z


@pytest.mark.parametrize(
    ("floor", "delay", "steps", "alarms"),
    [
        (QUANTISATION, 0, 1, False),  # the first sample after calibration, while P = r
        (QUANTISATION, 1000, 1, True),  # the settled filter flags a 3.5-sigma shift
        (STEP, 0, 1, False),
        (STEP, 1000, 1, False),
        (0.0, 0, 1, True),  # without a floor r = (1e-6 * 20)^2: the test can fail
        (0.0, 1000, 1, True),
        (STEP, 1000, 2, True),
        (QUANTISATION, 0, 20, True),
        (STEP, 1000, 20, True),
    ],
)
def test_constant_commissioning_then_a_held_one_step_change(
    floor: float, delay: int, steps: float, alarms: bool
) -> None:
    commissioning = 30
    z = held_step(commissioning + delay, steps)
    alarm = np.array([o.alarm[0] for o in feed(LevelEstimator(1, noise_floor=[floor]), z)])
    assert (alarm[: commissioning + delay] == Alarm.NORMAL).all()
    assert (alarm == Alarm.ALARM).any() == alarms


def test_step_raises_alarm_of_its_point_only() -> None:
    rng = np.random.default_rng(7)
    n, t0, alarm_on = 8, 150, 3
    _, z = random_walk(rng, 200, n, q=1e-4, r=1.0)
    stepped = z.copy()
    stepped[t0:, 3] += 10.0  # 10 sigma of the measurement noise
    outs = feed(LevelEstimator(n, alarm_on=alarm_on), stepped)
    plain = feed(LevelEstimator(n, alarm_on=alarm_on), z)
    alarm = np.array([o.alarm for o in outs])
    assert (alarm[:t0, 3] != Alarm.ALARM).all()
    assert alarm[t0 + alarm_on - 1, 3] == Alarm.ALARM
    others = np.arange(n) != 3
    assert (alarm[:, others] != Alarm.ALARM).all()
    # other points keep exactly what they would have had without the step (their occasional
    # WARNING is the chi-square tail of white noise, ~2 % of samples)
    for o, p in zip(outs, plain, strict=True):
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(o, f)[others], getattr(p, f)[others])
    assert (alarm[30:, others] == Alarm.NORMAL).mean() > 0.9


def test_slow_ramp_is_caught_by_cusum_not_by_nis() -> None:
    rng = np.random.default_rng(0)
    ticks, t0 = 1300, 1000
    _, z = random_walk(rng, ticks, 1, q=1e-4, r=1.0)
    z[t0:, 0] += 0.3 * np.arange(ticks - t0)  # 0.3 sigma per sample
    outs = feed(LevelEstimator(1), z)
    alarm = np.array([o.alarm[0] for o in outs])
    nis = np.array([o.nis[0] for o in outs])
    raised = int(np.argmax(alarm == Alarm.ALARM))
    assert alarm[raised] == Alarm.ALARM
    assert t0 < raised < t0 + 100
    assert nis[: raised + 1].max() < 10.83  # no single innovation crossed the NIS bound
    blind = feed(LevelEstimator(1, cusum_h=1e9), z[: raised + 1])
    assert all(o.alarm[0] != Alarm.ALARM for o in blind)


def test_alarm_clears_after_alarm_off_quiet_samples_and_resets_cusum() -> None:
    rng = np.random.default_rng(9)
    _, z = random_walk(rng, 400, 1, q=1e-4, r=1.0)
    z[100:110, 0] += 30.0  # a short excursion
    est = LevelEstimator(1, alarm_off=5)
    alarm, score, sums = [], [], []
    for t in range(z.shape[0]):
        out = est.update(z[t], good(1))
        state = est.state()
        alarm.append(int(out.alarm[0]))
        score.append(float(out.score[0]))
        sums.append((state["cusum_pos"][0], state["cusum_neg"][0]))
    raised = alarm.index(Alarm.ALARM)
    assert 100 <= raised < 110
    cleared = raised + next(k for k, a in enumerate(alarm[raised:]) if a != Alarm.ALARM)
    assert cleared > 110
    assert all(a == Alarm.ALARM for a in alarm[raised:cleared])
    assert all(s < 0.8 for s in score[cleared - 4 : cleared + 1])
    assert score[cleared - 5] >= 0.8
    assert sums[cleared] == (0.0, 0.0)
    assert max(sums[cleared - 1]) > 0.0


def test_estimate_beats_raw_measurements_on_noisy_random_walk() -> None:
    rng = np.random.default_rng(10)
    level, z = random_walk(rng, 2000, 20, q=0.01, r=1.0)
    est = np.array([o.estimate for o in feed(LevelEstimator(20), z)])
    after = slice(30, None)
    rmse_est = np.sqrt(np.mean((est[after] - level[after]) ** 2))
    rmse_raw = np.sqrt(np.mean((z[after] - level[after]) ** 2))
    assert rmse_est < 0.5 * rmse_raw


def test_heavy_tails_spikes_and_bursts_match_reference() -> None:
    rng = np.random.default_rng(21)
    _, z = random_walk(rng, 600, 6)
    z = z + spikes(rng, z.shape, rate=0.03)
    z[:, 4] = 5.0 + rng.standard_t(2, 600)  # Student-t with 2 dof: infinite variance
    z[300:302, 5] += 12.0  # a burst of two samples
    z[400:, 5] += 12.0  # and a held step
    qual = np.where(rng.random(z.shape) < 0.03, BAD, GOOD).astype(np.uint16)
    got = run_kernel(z, qual)
    assert_same(got, run_reference(z, qual))
    assert (got["nis"] > 10.83).sum() > 20  # the winsorized and the confirmed paths ran
    assert (got["alarm"] == Alarm.ALARM).any()


def test_a_single_spike_neither_alarms_nor_drags_the_estimate() -> None:
    rng = np.random.default_rng(5)
    _, z = random_walk(rng, 400, 8, q=1e-3, r=1.0)
    sign = np.where(np.arange(8) % 2 == 0, 1.0, -1.0)
    runs = []
    for size in (25.0, 50.0):  # sigmas, one sample every 60 ticks
        spiked = z.copy()
        spiked[100::60] += size * sign
        runs.append(feed(LevelEstimator(8), spiked))
    plain = feed(LevelEstimator(8), z)
    for outs in runs:
        assert (np.array([o.alarm for o in outs]) != Alarm.ALARM).all()
        assert all((outs[t].score > 10).all() for t in range(100, 400, 60))  # still reported
    # winsorized onto the bound: a spike twice as large moves the estimate no further
    for a, b in zip(*runs, strict=True):
        np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-12)
    assert np.abs(runs[0][-1].estimate - plain[-1].estimate).max() < 0.5
    one = feed(LevelEstimator(8, alarm_on=1), z + np.where(np.arange(400) == 100, 25.0, 0)[:, None])
    assert (one[100].alarm == Alarm.ALARM).all()  # alarm_on = 1 still alarms on one sample


def test_heavy_tailed_noise_rarely_alarms() -> None:
    rng = np.random.default_rng(8)
    ticks, n = 3000, 20
    _, z = random_walk(rng, ticks, n, q=0.01, r=1.0)
    alarm = np.array([o.alarm for o in feed(LevelEstimator(n), z + spikes(rng, z.shape))])
    onsets = ((alarm[1:] == Alarm.ALARM) & (alarm[:-1] != Alarm.ALARM)).sum()
    # Gaussian-only learning and updates gave ~7 onsets per 10 000 samples (40 here)
    assert onsets <= 6


def test_state_round_trip_continues_identically(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    _, z = random_walk(rng, 200, 12)
    # 10 (about 6.5 sigma of the innovation here): a step that is held alarms within three
    # ticks; 8 only reached WARNING once the first sample of a run is winsorized
    z[120:, 5] += 10.0
    qual = np.where(rng.random(z.shape) < 0.05, BAD, GOOD).astype(np.uint16)
    for split in (10, 35, 125):  # mid-commissioning, just after, mid-alarm
        a = LevelEstimator(12, commissioning=30)
        feed(a, z[:split], qual[:split])
        saved = a.state()
        assert (saved["alarm"] == Alarm.ALARM).any() == (split == 125)
        np.savez(tmp_path / f"twin-{split}.npz", **saved)  # as a restart would persist it
        with np.load(tmp_path / f"twin-{split}.npz") as stored:
            restored = {k: stored[k] for k in stored.files}
        b = LevelEstimator(12, commissioning=30)
        b.load_state(restored)
        for arr in restored.values():
            arr[:] = 0  # the estimator holds copies, not the caller's arrays
        for ours, theirs in zip(
            feed(a, z[split:], qual[split:]), feed(b, z[split:], qual[split:]), strict=True
        ):
            for f in FIELDS:
                np.testing.assert_array_equal(getattr(ours, f), getattr(theirs, f))
        for k, v in a.state().items():
            np.testing.assert_array_equal(v, b.state()[k])


def test_noise_floor_is_a_parameter_not_state() -> None:
    z = np.full((40, 2), 5.0)
    floors = np.array([0.5, 0.0])
    unfloored = LevelEstimator(2)
    feed(unfloored, z)
    est = LevelEstimator(2, noise_floor=floors)
    assert set(est.state()) == set(unfloored.state())
    est.load_state(unfloored.state())  # saved without a floor
    np.testing.assert_array_equal(est.noise_floor, floors)
    assert est.state()["r"][0] < 1e-6
    est.update(np.array([5.0, 5.0]), good((2,)))  # learnt: r is estimated again, with the floor
    np.testing.assert_array_equal(est.state()["r"], [0.25, unfloored.state()["r"][1]])


def test_all_nan_input_gives_no_nan() -> None:
    est = LevelEstimator(4)
    for _ in range(50):
        out = est.update(np.full(4, np.nan), good(4))
        assert (out.estimate == 0.0).all()
        assert (out.score == 0.0).all()
        assert (out.nis == 0.0).all()
        assert (out.alarm == Alarm.NORMAL).all()
        assert not out.initialized.any()
    assert all(np.isfinite(v).all() for v in est.state().values())


def test_outputs_are_fresh_copies() -> None:
    est = LevelEstimator(2, commissioning=4)
    first = est.update(np.array([1.0, 2.0]), good(2))
    kept = first.estimate.copy()
    est.update(np.array([3.0, 4.0]), good(2))
    np.testing.assert_array_equal(first.estimate, kept)
    assert first.estimate.dtype == np.float64
    assert first.alarm.dtype == np.uint8
    assert first.initialized.dtype == np.bool_


def test_out_is_written_in_place_and_equals_fresh_outputs() -> None:
    rng = np.random.default_rng(17)
    _, z = random_walk(rng, 80, 3)
    fresh, reused = LevelEstimator(3), LevelEstimator(3)
    out = reused.new_output()
    for t in range(z.shape[0]):
        want = fresh.update(z[t], good(3))
        got = reused.update(z[t], good(3), out=out)
        assert got is out
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(got, f), getattr(want, f))


def test_out_from_elsewhere_is_rejected() -> None:
    est, other = LevelEstimator(2), LevelEstimator(2)
    before = est.state()
    look_alike = LevelOutput(*est.new_output())  # same arrays, another object
    for out in (other.new_output(), look_alike):
        with pytest.raises(ValueError, match="new_output"):
            est.update(np.zeros(2), good(2), out=out)
    for k, v in est.state().items():
        np.testing.assert_array_equal(v, before[k])


def test_lossless_conversions_are_accepted() -> None:
    est = LevelEstimator(3, commissioning=4)
    out = est.update(np.array([1, 2, 3], dtype=np.int32), np.array([0, 1, 0], dtype=np.int64))
    np.testing.assert_array_equal(out.estimate, [1.0, 0.0, 3.0])
    frozen = np.array([1.5, 2.5, 3.5], dtype=np.float32)
    frozen.flags.writeable = False
    out = est.update(frozen, np.zeros(3, dtype=np.uint8))
    np.testing.assert_array_equal(out.estimate, [1.25, 2.5, 3.25])


def test_commissioning_shorter_than_four_samples_raises() -> None:
    # the alarm arguments are checked for every point model in test_point_models.py
    with pytest.raises(ValueError, match="commissioning"):
        LevelEstimator(3, commissioning=3)


@pytest.mark.parametrize(
    ("values", "quality"),
    [
        (np.zeros(4), np.zeros(3, np.uint16)),
        (np.zeros(2), np.zeros(3, np.uint16)),
        (np.zeros((3, 1)), np.zeros(3, np.uint16)),
        (np.zeros(3, np.complex128), np.zeros(3, np.uint16)),
        (np.array(["1", "2", "3"]), np.zeros(3, np.uint16)),
        (np.zeros(3, np.bool_), np.zeros(3, np.uint16)),
        (np.array([2**60, 0, 0], dtype=np.int64), np.zeros(3, np.uint16)),
        (np.zeros(3), np.zeros(3)),  # float quality
        (np.zeros(3), np.array([0, -1, 0])),
        (np.zeros(3), np.array([0, 70_000, 0])),
    ],
)
def test_mismatched_inputs_raise(values: np.ndarray, quality: np.ndarray) -> None:
    est = LevelEstimator(3)
    before = est.state()
    with pytest.raises(ValueError, match=r"values|quality"):
        est.update(values, quality)
    for k, v in est.state().items():
        np.testing.assert_array_equal(v, before[k])


def _mutations() -> list[tuple[str, Any]]:
    return [
        ("missing", lambda s: s.pop("r")),
        ("extra", lambda s: s.update(extra=np.zeros(3))),
        ("shape", lambda s: s.update(x=np.zeros(4))),
        ("dtype", lambda s: s.update(x=s["x"].astype(np.float32))),
        ("int dtype", lambda s: s.update(alarm=s["alarm"].astype(np.uint8))),
        ("not an array", lambda s: s.update(x=[0.0, 0.0, 0.0])),
        ("nan", lambda s: s["x"].__setitem__(0, np.nan)),
        ("negative r", lambda s: s["r"].__setitem__(1, -1.0)),
        ("zero r when calibrated", lambda s: s["r"].__setitem__(0, 0.0)),
        ("alarm range", lambda s: s["alarm"].__setitem__(2, 3)),
        ("negative count", lambda s: s["n_good"].__setitem__(2, -1)),
    ]


@pytest.mark.parametrize(("name", "mutate"), _mutations())
def test_load_state_rejects_mismatch(name: str, mutate: Any) -> None:
    rng = np.random.default_rng(12)
    _, z = random_walk(rng, 40, 3)
    est = LevelEstimator(3, commissioning=10)
    feed(est, z)
    state = est.state()
    mutate(state)
    target = LevelEstimator(3, commissioning=10)
    before = target.state()
    with pytest.raises(ValueError, match="state"):
        target.load_state(state)
    for k, v in target.state().items():  # nothing was half-loaded
        np.testing.assert_array_equal(v, before[k], err_msg=name)


def test_warmup_writes_the_kernel_cache_next_to_the_source() -> None:
    source = Path(_level_kernel.__file__)
    if "NUMBA_CACHE_DIR" in os.environ or not os.access(source.parent, os.W_OK):
        pytest.skip("package directory is read-only; numba falls back to a user cache dir")
    warmup()
    index = list((source.parent / "__pycache__").glob("_level_kernel.level_update-*.nbi"))
    assert index, "numba did not cache the kernel"


def test_views_and_read_only_inputs_equal_contiguous_ones() -> None:
    rng = np.random.default_rng(22)
    _, z = random_walk(rng, 60, 3)
    qual = np.where(rng.random(z.shape) < 0.1, BAD, GOOD).astype(np.uint16)
    plain, other = LevelEstimator(3, commissioning=10), LevelEstimator(3, commissioning=10)
    wide_z = np.repeat(z, 2, axis=1)  # every other column: strided views
    wide_q = np.repeat(qual, 2, axis=1)
    for t in range(z.shape[0]):
        want = plain.update(z[t].copy(), qual[t].copy())
        frozen = z[t].copy()
        frozen.flags.writeable = False
        values = frozen if t % 2 else wide_z[t, ::2]
        got = other.update(values, wide_q[t, ::2])
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(got, f), getattr(want, f))
    for k, v in plain.state().items():
        np.testing.assert_array_equal(v, other.state()[k])


def test_state_has_one_array_per_field_of_the_points() -> None:
    est = LevelEstimator(5, commissioning=10)
    feed(est, np.arange(30.0).reshape(6, 5))  # all six samples are commissioning samples
    state = est.state()
    assert list(state) == [*_level_kernel.FLOAT_FIELDS, *_level_kernel.INT_FIELDS]
    for name, arr in state.items():
        want = np.float64 if name in _level_kernel.FLOAT_FIELDS else np.int64
        assert arr.dtype == want
        assert arr.shape == (5,)
        assert arr.flags.c_contiguous
    np.testing.assert_array_equal(state["n_good"], [6] * 5)
    np.testing.assert_allclose(state["x"], np.arange(30.0).reshape(6, 5).mean(axis=0))
