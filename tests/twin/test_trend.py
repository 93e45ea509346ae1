"""Trend estimator: the Numba kernel against a slow per-point reference, and behaviour."""

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
from edgetwin.twin import _trend_kernel
from edgetwin.twin.trend import TrendEstimator, TrendOutput, warmup
from tests.support.heavy_tails import spikes

GOOD = int(Quality.GOOD)
BAD = int(Quality.COMM_FAIL)

# ---------------------------------------------------------------------------------------------
# Reference: one point at a time, plain Python floats, straight from the documented semantics.
# ---------------------------------------------------------------------------------------------

HORIZON = 1000  # items after which the running statistics forget exponentially
NOISE_EVERY = 16  # pairs between updates of r and q_level
BLOCK = 32


def block_weights(b: int) -> tuple[float, float, float]:
    return 6.0 / b, b + 1.0 / b, 11.0 * b**3 / 20.0 + b / 4.0 + 1.0 / (5.0 * b)


W_R, W_L, W_Q = block_weights(BLOCK)
PRIOR_R = 2.0 * block_weights(16)[0] / block_weights(16)[2]
PRIOR_L = 2.0 * block_weights(16)[1] / block_weights(16)[2]


def weight(n: int) -> float:
    return max(1.0 / n, 1.0 / HORIZON)


def sqrt_weight(n: int) -> float:
    return math.sqrt(1.0 / min(n, HORIZON))


class ReferencePoint:
    """The trend model of one point."""

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
        self.inv_threshold = 1.0 / threshold
        self.k_over_h = cusum_k / cusum_h
        self.inv_h = 1.0 / cusum_h
        self.alarm_on = alarm_on
        self.alarm_off = alarm_off
        # commissioning line fit
        self.n = 0
        self.tick = 0.0
        self.mean_t = self.mean_z = self.var_t = self.var_z = self.cov = 0.0
        # the current run of learnt samples
        self.run = 0
        self.last = 0.0
        self.prev_diff = 0.0
        self.block_sum = 0.0
        self.block_means: list[float] = []
        # difference and block statistics
        self.pairs = 0
        self.mean_p = self.mean_d = self.dv = self.c1 = 0.0
        self.blocks = 0
        self.hv = 0.0
        self.qrb = 0.0
        # filter and detection
        self.calibrated = False
        self.level = self.rate = 0.0
        self.pll = self.plr = self.prr = 0.0
        self.ql = self.qr = self.r = 0.0
        self.cp = self.cm = 0.0
        self.alarm = Alarm.NORMAL
        self.streak = 0

    def step(self, z: float, quality: int) -> tuple[float, float, float, float, int, bool]:
        """Return estimate, rate, score, nis, alarm, initialized after sample ``z``."""
        good = quality == 0 and math.isfinite(z) and abs(z) <= 1e100
        score = nis = 0.0
        if not self.calibrated:
            if self.n > 0:
                self.tick += 1.0
            if good:
                self.commission(z)
            else:
                self.run = 0
                if self.n > 0:
                    self.fit_line()
        elif not good:
            self.run = 0
            self.predict()
        else:
            score, nis = self.filter(z)
        initialized = self.calibrated or self.n > 0
        return self.level, self.rate, score, nis, int(self.alarm), initialized

    # -- commissioning --------------------------------------------------------------------

    def commission(self, z: float) -> None:
        self.n += 1
        w = 1.0 / self.n
        dt = self.tick - self.mean_t
        dz = z - self.mean_z
        self.mean_t += w * dt
        self.mean_z += w * dz
        self.var_t = (1.0 - w) * (self.var_t + w * dt * dt)
        self.var_z = (1.0 - w) * (self.var_z + w * dz * dz)
        self.cov = (1.0 - w) * (self.cov + w * dt * dz)
        self.learn(z, centre=None)
        self.fit_line()
        if self.n >= self.commissioning:
            self.estimate_noise()
            s2 = max(self.var_z - self.cov * self.cov / self.var_t, self.r)
            sxx = self.n * self.var_t
            e = self.tick - self.mean_t
            self.pll = s2 * (1.0 / self.n + e * e / sxx)
            self.plr = s2 * e / sxx
            self.prr = s2 / sxx
            self.prev_diff -= self.rate
            self.cp = self.cm = 0.0
            self.alarm = Alarm.NORMAL
            self.streak = 0
            self.calibrated = True

    def fit_line(self) -> None:
        slope = self.cov / self.var_t if self.var_t > 0.0 else 0.0
        self.rate = slope
        self.level = self.mean_z + slope * (self.tick - self.mean_t)

    # -- learning -------------------------------------------------------------------------

    def learn(self, z: float, centre: float | None) -> None:
        """Extend the run with ``z``; differences centred on ``centre`` (None: Welford)."""
        if self.run >= 1:
            d = z - self.last
            if centre is not None:
                d -= centre
            if self.run >= 2:
                self.pairs += 1
                w = weight(self.pairs)
                p = self.prev_diff
                if centre is None:
                    a = p - self.mean_p
                    self.mean_p += w * a
                    b = d - self.mean_d
                    self.mean_d += w * b
                    self.dv = (1.0 - w) * (self.dv + w * b * b)
                    self.c1 = (1.0 - w) * self.c1 + w * a * (d - self.mean_d)
                else:
                    self.dv += w * (d * d - self.dv)
                    self.c1 += w * (d * p - self.c1)
                    if self.pairs % NOISE_EVERY == 0:
                        self.estimate_noise()
            self.prev_diff = d
        self.last = z
        self.run += 1
        if self.run % BLOCK == 1:
            self.block_sum = z
            if self.run == 1:
                self.block_means = []
        else:
            self.block_sum += z
            if self.run % BLOCK == 0:
                self.block_done()

    def block_done(self) -> None:
        self.block_means.append(self.block_sum * (1.0 / BLOCK))
        if len(self.block_means) >= 3:
            m2, m1, m = self.block_means[-3:]
            f = m - 2.0 * m1 + m2
            self.blocks += 1
            self.hv += weight(self.blocks) * (f * f - self.hv)
            if self.blocks >= 2:
                r0, ql0 = self.split_differences()
                margin = 2.0 * self.hv * sqrt_weight(self.blocks)
                self.qrb = (max(self.hv - W_R * r0 - W_L * ql0, 0.0) + margin) * (1.0 / W_Q)
                self.qr = max(self.qrb, 1e-6 * self.r)

    def split_differences(self) -> tuple[float, float]:
        r0 = min(max(-self.c1, 0.0), 0.5 * self.dv)
        return r0, self.dv - 2.0 * r0

    def estimate_noise(self) -> None:
        if self.pairs >= 2:
            r, ql0 = self.split_differences()
            ql = ql0 + 1.5 * self.dv * sqrt_weight(self.pairs)
        else:
            line = self.var_z - self.cov * self.cov / self.var_t if self.var_t > 0.0 else None
            r = self.var_z if line is None else line
            ql0 = ql = 0.0
        floor = self.noise_floor * self.noise_floor
        self.r = max(r, 1e-12, (1e-6 * self.mean_z) ** 2, floor)
        self.ql = max(ql, 1e-3 * self.r)
        if self.blocks < 2:
            self.qrb = PRIOR_R * self.r + PRIOR_L * ql0
        self.qr = max(self.qrb, 1e-6 * self.r)

    # -- filter and detection -------------------------------------------------------------

    def predict(self) -> tuple[float, float, float, float]:
        xl = self.level + self.rate
        pll = self.pll + 2.0 * self.plr + self.prr + self.ql
        plr = self.plr + self.prr
        prr = self.prr + self.qr
        self.level, self.pll, self.plr, self.prr = xl, pll, plr, prr
        return xl, pll, plr, prr

    def filter(self, z: float) -> tuple[float, float]:
        rate = self.rate
        xl, pll, plr, prr = self.predict()
        s = pll + self.r
        si = 1.0 / s
        nu = z - xl
        nis = nu * nu * si
        # outside ALARM a sample beyond the bound that follows a score < 1 (streak 0) is
        # winsorized onto the bound; a later one in a row is a change, not learnt from
        learn = self.alarm != Alarm.ALARM and (nis <= self.threshold or self.streak == 0)
        if nis > self.threshold and learn:
            nu = math.copysign(math.sqrt(self.threshold * s), nu)
            z = xl + nu
        kr = plr * si
        self.level = xl + pll * si * nu
        self.rate = rate + kr * nu
        self.pll = pll * (self.r * si)
        self.plr = plr * (self.r * si)
        self.prr = prr - kr * plr
        if learn:
            self.learn(z, centre=rate)
        else:
            self.run = 0
        u = nu * si * math.sqrt(s) * self.inv_h
        self.cp = min(max(0.0, self.cp + u - self.k_over_h), 1.0)
        self.cm = min(max(0.0, self.cm - u - self.k_over_h), 1.0)
        score = max(nis * self.inv_threshold, self.cp, self.cm)
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


FIELDS = ("estimate", "rate", "score", "nis", "alarm", "initialized")


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
    values: np.ndarray, quality: np.ndarray, est: TrendEstimator | None = None, **params: Any
) -> dict[str, np.ndarray]:
    """Feed rows to a TrendEstimator; outputs shaped (ticks, points)."""
    est = est or TrendEstimator(values.shape[1], **params)
    outs = [est.update(values[t], quality[t]) for t in range(values.shape[0])]
    return {f: np.array([getattr(o, f) for o in outs]) for f in FIELDS}


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    for f in ("estimate", "rate", "score", "nis"):
        assert np.isfinite(got[f]).all(), f
        scale = max(1.0, float(np.abs(want[f]).max(initial=0.0)))
        np.testing.assert_allclose(got[f], want[f], rtol=1e-9, atol=1e-12 * scale, err_msg=f)
    np.testing.assert_array_equal(got["alarm"], want["alarm"])
    np.testing.assert_array_equal(got["initialized"], want["initialized"].astype(bool))


def local_linear_trend(
    rng: np.random.Generator,
    ticks: int,
    n: int,
    *,
    q_level: float = 0.0,
    q_rate: float = 0.0,
    r: float = 1.0,
    slope: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (true level, true rate, measurements) of a simulated local linear trend."""
    rate = slope + np.cumsum(rng.normal(0.0, math.sqrt(q_rate), (ticks, n)), axis=0)
    steps = np.vstack([np.zeros((1, n)), rate[:-1]])  # level[t] = level[t-1] + rate[t-1] + w
    level = 5.0 + np.cumsum(steps + rng.normal(0.0, math.sqrt(q_level), (ticks, n)), axis=0)
    return level, rate, level + rng.normal(0.0, math.sqrt(r), (ticks, n))


def good(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, dtype=np.uint16)


def feed(est: TrendEstimator, z: np.ndarray, qual: np.ndarray | None = None) -> list[TrendOutput]:
    qual = good(z.shape) if qual is None else qual
    return [est.update(z[t], qual[t]) for t in range(z.shape[0])]


def column(outs: list[TrendOutput], field: str) -> np.ndarray:
    return np.array([getattr(o, field) for o in outs])


# ---------------------------------------------------------------------------------------------
# Kernel against reference
# ---------------------------------------------------------------------------------------------


def test_trends_match_reference() -> None:
    rng = np.random.default_rng(1)
    _, _, z = local_linear_trend(rng, 400, 6, q_level=0.01, q_rate=1e-4)
    z[250:, 2] += 12.0  # a step, so the alarm path is exercised too
    assert_same(run_kernel(z, good(z.shape)), run_reference(z, good(z.shape)))


def test_long_run_past_both_horizons_matches_reference() -> None:
    # 1000 pairs and then 1000 blocks (32 000 samples) before the weights stop changing
    rng = np.random.default_rng(14)
    _, _, z = local_linear_trend(rng, 36_000, 1, q_level=0.05, q_rate=1e-6)
    qual = good(z.shape)
    qual[5000, 0] = BAD  # one break in the run
    got = run_kernel(z, qual)
    assert_same(got, run_reference(z, qual))
    state = TrendEstimator(1)
    feed(state, z, qual)
    assert state.state()["block_n"][0] > HORIZON


def test_nan_inf_and_bad_quality_match_reference() -> None:
    rng = np.random.default_rng(2)
    _, _, z = local_linear_trend(rng, 300, 8, q_level=0.01)
    qual = good(z.shape)
    mask = rng.random(z.shape)
    z[mask < 0.03] = np.nan
    z[(mask >= 0.03) & (mask < 0.05)] = np.inf
    z[(mask >= 0.05) & (mask < 0.06)] = -np.inf
    z[(mask >= 0.06) & (mask < 0.07)] = 1e300  # finite but unusable
    qual[(mask >= 0.07) & (mask < 0.12)] = int(Quality.STALE | Quality.OUT_OF_RANGE)
    z[5:15, 3] = np.nan  # an outage during commissioning
    z[100:180, 4] = np.nan  # a long outage after it
    z[:, 5] = np.where(np.arange(300) % 20 == 7, np.nan, z[:, 5])  # runs never reach 3 blocks
    got = run_kernel(z, qual, commissioning=20)
    assert_same(got, run_reference(z, qual, commissioning=20))
    unused = ~np.isfinite(z) | (qual != 0) | (np.abs(z) > 1e100)
    assert (got["score"][unused] == 0.0).all()
    assert (got["nis"][unused] == 0.0).all()


@pytest.mark.parametrize("level", [0.0, 3.25, -1e6, 1e-9])
def test_constant_data_matches_reference(level: float) -> None:
    z = np.full((150, 3), level)
    got = run_kernel(z, good(z.shape))
    assert_same(got, run_reference(z, good(z.shape)))
    assert (got["estimate"] == level).all()
    assert (got["rate"] == 0.0).all()
    assert (got["alarm"] == Alarm.NORMAL).all()
    assert (got["score"] == 0.0).all()


def test_quantised_data_matches_reference() -> None:
    rng = np.random.default_rng(15)
    _, _, z = local_linear_trend(rng, 300, 4, r=0.01, slope=0.002)
    z = np.round(z * 4) / 4  # a coarse ADC: mostly repeated values, sometimes a step of 0.25
    got = run_kernel(z, good(z.shape))
    assert_same(got, run_reference(z, good(z.shape)))


def test_steps_ramps_and_kinks_match_reference() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(500.0)
    z = rng.normal(0.0, 1.0, (500, 4))
    z[:, 0] += np.where(t >= 100, 10.0, 0.0)  # up, stays
    z[:, 1] += np.where((t >= 80) & (t < 200), -15.0, 0.0)  # down and back
    z[:, 2] += 2.0 * np.maximum(t - 160, 0)  # a sharp kink
    z[:, 3] += np.where(t >= 150, 0.2 * (t - 150), 0.0) * (t < 250)
    got = run_kernel(z, good(z.shape), alarm_off=3)
    assert_same(got, run_reference(z, good(z.shape), alarm_off=3))
    assert (got["alarm"] == Alarm.ALARM).any(axis=0)[1:3].all()  # the paths were exercised


def test_many_points_of_different_scales_match_reference() -> None:
    rng = np.random.default_rng(4)
    n = 129
    scale = 10.0 ** rng.uniform(-6, 6, n)
    _, _, z = local_linear_trend(rng, 150, n, q_level=0.01)
    z = z * scale + 1000.0 * scale
    qual = np.where(rng.random(z.shape) < 0.03, BAD, GOOD).astype(np.uint16)
    got = run_kernel(z, qual, commissioning=25)
    assert_same(got, run_reference(z, qual, commissioning=25))


def test_points_in_every_chunk_and_on_every_path_match_reference() -> None:
    # more points than one chunk of the kernel's layout; the points commission together, so the
    # noise updates and completed blocks come on the same ticks, taken by the common pass
    n = 2 * _trend_kernel.CH + 3
    rng = np.random.default_rng(20)
    _, _, z = local_linear_trend(rng, 230, n, q_level=0.01, q_rate=1e-5)
    qual = good(z.shape)
    z[90 + np.arange(n) % 64, np.arange(n)] += 40.0  # a spike per point, on every phase
    z[150:170, 1::5] = np.nan  # outages: the runs restart out of step
    qual[120:123, 2::7] = BAD
    z[180:, 3::11] += 25.0  # steps: alarms
    floors = np.where(np.arange(n) % 3 == 0, 0.8, 0.0)
    est = TrendEstimator(n, commissioning=20, noise_floor=floors)
    got = run_kernel(z, qual, est)
    picks = np.r_[0:6, _trend_kernel.CH - 3 : _trend_kernel.CH + 3, n - 5 : n]
    want = run_reference(z[:, picks], qual[:, picks], commissioning=20, noise_floor=floors[picks])
    assert_same({f: v[:, picks] for f, v in got.items()}, want)
    assert (got["alarm"] == Alarm.ALARM).any(axis=0)[3::11].all()
    saved = est.state()
    assert all(v.shape == (n,) for v in saved.values())
    again = TrendEstimator(n, commissioning=20, noise_floor=floors)
    again.load_state(saved)
    for ours, theirs in zip(feed(est, z[:40]), feed(again, z[:40]), strict=True):
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(ours, f), getattr(theirs, f))


def test_small_chunk_variant_matches_reference_and_shares_state_with_large(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a small estimator takes the small chunks: points on both sides of their edges, every path
    ch = _trend_kernel.SMALL_CH
    n = 2 * ch + 3
    assert n <= _trend_kernel.SMALL_MAX
    rng = np.random.default_rng(23)
    _, _, z = local_linear_trend(rng, 230, n, q_level=0.01, q_rate=1e-5)
    qual = good(z.shape)
    z[90 + np.arange(n) % 64, np.arange(n)] += 40.0
    z[150:170, 1::5] = np.nan
    qual[120:123, 2::7] = BAD
    z[180:, 3::11] += 25.0
    floors = np.where(np.arange(n) % 3 == 0, 0.8, 0.0)
    small = TrendEstimator(n, commissioning=20, noise_floor=floors)
    got = run_kernel(z[:200], qual[:200], small)
    picks = np.r_[0:6, ch - 3 : ch + 3, 2 * ch - 3 : n]
    want = run_reference(z[:, picks], qual[:, picks], commissioning=20, noise_floor=floors[picks])
    assert_same({f: v[:, picks] for f, v in got.items()}, {f: v[:200] for f, v in want.items()})
    # the same points on large chunks: the state moves there and back, the runs stay identical
    monkeypatch.setattr(_trend_kernel, "SMALL_MAX", 0)
    large = TrendEstimator(n, commissioning=20, noise_floor=floors)
    assert large.state()["level"].shape == (n,)
    large.load_state(small.state())
    monkeypatch.undo()
    for t in range(200, 230):
        if t == 215:
            small = TrendEstimator(n, commissioning=20, noise_floor=floors)
            small.load_state(large.state())
        ours, theirs = small.update(z[t], qual[t]), large.update(z[t], qual[t])
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(ours, f), getattr(theirs, f), err_msg=f)
        assert_same(
            {f: getattr(ours, f)[None, picks] for f in FIELDS},
            {f: want[f][t : t + 1] for f in FIELDS},
        )
    for key, value in small.state().items():
        np.testing.assert_array_equal(value, large.state()[key], err_msg=key)


def test_noise_floors_match_reference() -> None:
    rng = np.random.default_rng(19)
    _, _, z = local_linear_trend(rng, 500, 8, q_level=0.01, q_rate=1e-5)
    z[:, 4:] = np.round(z[:, 4:] * 2.0) / 2.0  # quantised in steps of 0.5
    z[:, 6] = 3.0  # constant
    z[200:, 6] = 3.5  # then one step
    z[300:, 3] += 6.0
    qual = np.where(rng.random(z.shape) < 0.01, BAD, GOOD).astype(np.uint16)
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
    ticks = draw(st.integers(1, 160))
    n = draw(st.integers(1, 4))
    z = draw(hnp.arrays(np.float64, (ticks, n), elements=values_strategy))
    if draw(st.booleans()):  # smooth data too, so runs grow long enough for blocks
        z = np.cumsum(np.clip(np.nan_to_num(z), -1.0, 1.0), axis=0) + 0.01 * z
    qual = draw(hnp.arrays(np.uint16, (ticks, n), elements=st.sampled_from([0, 0, 0, 0, 1, 32])))
    params = {
        "commissioning": draw(st.integers(4, 12)),
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


def test_calibration_equals_batch_statistics() -> None:
    rng = np.random.default_rng(5)
    commissioning, n = 200, 4
    _, _, z = local_linear_trend(rng, 400, n, q_level=0.1, r=2.0)
    qual = np.where(rng.random(z.shape) < 0.1, BAD, GOOD).astype(np.uint16)
    for i in range(n):
        usable = np.flatnonzero(qual[:, i] == GOOD)
        first, last = usable[0], usable[commissioning - 1]  # the calibrating sample
        est = TrendEstimator(1, commissioning=commissioning)
        outs = feed(est, z[: last + 1, i : i + 1], qual[: last + 1, i : i + 1])
        state = est.state()
        assert state["calibrated"][0] == 1
        # the least-squares line through the commissioning samples, against their ticks
        t = usable[:commissioning] - first
        slope, intercept = np.polyfit(t, z[usable[:commissioning], i], 1)
        assert outs[-1].rate[0] == pytest.approx(slope, rel=1e-9)
        assert outs[-1].estimate[0] == pytest.approx(intercept + slope * t[-1], rel=1e-9)
        # r and q_level from the lag-1 pairs of differences within runs of good samples
        pairs = []
        for a, b, c in zip(usable, usable[1:], usable[2:], strict=False):
            if c <= last and b == a + 1 and c == b + 1:
                pairs.append((z[b, i] - z[a, i], z[c, i] - z[b, i]))
        cov = np.cov(np.array(pairs).T, bias=True)
        r = min(max(-cov[0, 1], 0.0), cov[1, 1] / 2)
        q_level = cov[1, 1] - 2 * r + 1.5 * cov[1, 1] / math.sqrt(len(pairs))
        assert state["r"][0] == pytest.approx(r, rel=1e-9)
        assert state["q_level"][0] == pytest.approx(q_level, rel=1e-9)


@pytest.mark.parametrize(("q_level", "q_rate"), [(0.0, 0.0), (0.3, 0.0), (0.0, 3e-4), (0.1, 1e-3)])
def test_noise_levels_are_learnt_online(q_level: float, q_rate: float) -> None:
    rng = np.random.default_rng(6)
    _, _, z = local_linear_trend(rng, 20_000, 16, q_level=q_level, q_rate=q_rate, r=2.0)
    est = TrendEstimator(16)
    feed(est, z)
    state = est.state()
    # ~2000 effective pairs: r is known to ~5 %, q_level to about its margin (~0.2)
    np.testing.assert_allclose(state["r"], 2.0, rtol=0.2)
    margin = 1.5 * state["diff_var"] * math.sqrt(1 / HORIZON)
    assert (np.abs(state["q_level"] - margin - q_level) < 3 * margin).all()
    # q_rate carries one standard error of the block statistic; q_level's error leaks into it
    se = 2.0 * state["block_hvar"] * np.sqrt(1 / np.minimum(state["block_n"], HORIZON)) / W_Q
    q_rate_est = state["q_rate"] - se
    assert (q_rate_est > -1e-12).all()
    tolerance = 3 * se + 3 * W_L / W_Q * margin + 0.3 * q_rate
    assert (np.abs(q_rate_est - q_rate) < tolerance).all()
    assert abs(np.median(q_rate_est) - q_rate) < 0.3 * q_rate + 3 * np.median(se)


def test_noise_floor_binds_r_at_calibration_and_online() -> None:
    rng = np.random.default_rng(20)
    _, _, z = local_linear_trend(rng, 600, 3, q_level=0.01)
    z[:, 0] = 7.0  # constant
    floors = np.array([0.2, 3.0, 0.01])  # for constant data; above the noise (1); below it
    est, plain = TrendEstimator(3, noise_floor=floors), TrendEstimator(3)
    r, plain_r = [], []
    for t in range(z.shape[0]):
        est.update(z[t], good((3,)))
        plain.update(z[t], good((3,)))
        if t >= 29:  # calibrated
            r.append(est.state()["r"])
            plain_r.append(plain.state()["r"])
    r_arr, plain_arr = np.array(r), np.array(plain_r)
    state = est.state()
    assert (r_arr[:, 0] == 0.2 * 0.2).all()
    assert state["q_level"][0] == 1e-3 * (0.2 * 0.2)
    assert state["q_rate"][0] == 1e-6 * (0.2 * 0.2)  # the blocks see no rate noise: its floor
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
        # not enough here: the filter starts on the commissioning line with a small P
        (QUANTISATION, 0, 1, True),
        (STEP, 0, 1, False),
        (STEP, 1000, 1, False),
        (0.0, 0, 1, True),  # without a floor r = (1e-6 * 20)^2: the test can fail
        (0.0, 1000, 1, True),
        (STEP, 0, 4, True),
        (STEP, 1000, 4, True),
        (QUANTISATION, 0, 20, True),
        (STEP, 1000, 20, True),
    ],
)
def test_constant_commissioning_then_a_held_one_step_change(
    floor: float, delay: int, steps: float, alarms: bool
) -> None:
    commissioning = 30
    z = held_step(commissioning + delay, steps)
    alarm = column(feed(TrendEstimator(1, noise_floor=[floor]), z), "alarm")[:, 0]
    assert (alarm[: commissioning + delay] == Alarm.NORMAL).all()
    assert (alarm == Alarm.ALARM).any() == alarms


def test_rate_converges_to_a_constant_slope() -> None:
    rng = np.random.default_rng(7)
    _, _, z = local_linear_trend(rng, 2000, 50, slope=0.05, r=1.0)
    outs = feed(TrendEstimator(50), z)
    rate = column(outs, "rate")
    assert np.abs(rate[-1] - 0.05).max() < 0.01  # the slope is 0.05 sigma per tick
    assert np.abs(np.median(rate[-500:], axis=0) - 0.05).max() < 0.005
    assert (column(outs, "alarm") != Alarm.ALARM).all()


def test_rate_tracks_a_wandering_slope_better_than_differences() -> None:
    rng = np.random.default_rng(8)
    _, true_rate, z = local_linear_trend(rng, 3000, 50, q_level=0.01, q_rate=1e-4)
    rate = column(feed(TrendEstimator(50), z), "rate")
    after = slice(500, None)
    rmse = np.sqrt(np.mean((rate[after] - true_rate[after]) ** 2))
    naive = np.sqrt(np.mean((np.diff(z, axis=0)[499:] - true_rate[after]) ** 2))
    assert rmse < 0.05 * naive


@pytest.mark.parametrize(
    ("q_level", "q_rate"),
    [(0.0, 0.0), (0.01, 0.0), (1.0, 0.0), (3.0, 0.0), (0.0, 1e-4), (0.0, 1e-3), (0.1, 1e-3)],
)
def test_clean_local_linear_trends_rarely_alarm(q_level: float, q_rate: float) -> None:
    rng = np.random.default_rng(13)
    _, _, z = local_linear_trend(rng, 3000, 50, q_level=q_level, q_rate=q_rate)
    alarm = column(feed(TrendEstimator(50), z), "alarm")
    assert (alarm == Alarm.ALARM).mean() < 1e-3


def test_smooth_curves_alarm_only_while_the_rate_noise_is_learnt() -> None:
    # the rate wanders by 0.1 sigma per tick: until a few blocks of 32 samples have been seen the
    # filter may lag the curvature (the trade-off against absorbing early steps, see trend.py)
    rng = np.random.default_rng(13)
    _, _, z = local_linear_trend(rng, 3000, 50, q_rate=1e-2)
    alarm = column(feed(TrendEstimator(50), z), "alarm")
    assert (alarm == Alarm.ALARM).mean() < 1e-2
    assert (alarm[600:] == Alarm.ALARM).mean() < 1e-3


@pytest.mark.parametrize("slope", [0.005, 0.05, 0.2])
def test_drift_that_starts_later_is_tracked_without_alarm(slope: float) -> None:
    rng = np.random.default_rng(9)
    ticks, t0 = 2500, 1000
    z = rng.normal(0.0, 1.0, (ticks, 20))
    z += slope * np.maximum(np.arange(ticks) - t0, 0)[:, None]  # wear starts at t0
    outs = feed(TrendEstimator(20), z)
    assert (column(outs, "alarm") != Alarm.ALARM).all()
    rate = column(outs, "rate")
    assert np.abs(np.median(rate[-300:], axis=0) - slope).max() < 0.01


def test_step_raises_alarm_of_its_point_only() -> None:
    rng = np.random.default_rng(10)
    n, t0, alarm_on = 8, 300, 3
    _, _, z = local_linear_trend(rng, 400, n, q_level=1e-4)
    stepped = z.copy()
    stepped[t0:, 3] += 10.0  # 10 sigma of the measurement noise
    outs = feed(TrendEstimator(n, alarm_on=alarm_on), stepped)
    plain = feed(TrendEstimator(n, alarm_on=alarm_on), z)
    alarm = column(outs, "alarm")
    assert (alarm[:t0, 3] != Alarm.ALARM).all()
    assert alarm[t0 + alarm_on - 1, 3] == Alarm.ALARM
    others = np.arange(n) != 3
    assert (alarm[:, others] != Alarm.ALARM).all()
    for o, p in zip(outs, plain, strict=True):
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(o, f)[others], getattr(p, f)[others])


def test_spike_scores_high_and_alarms_with_alarm_on_1() -> None:
    rng = np.random.default_rng(11)
    _, _, z = local_linear_trend(rng, 400, 10)
    z[300, :] += 15.0
    outs = feed(TrendEstimator(10, alarm_on=1), z)
    assert (outs[300].alarm == Alarm.ALARM).all()
    assert (outs[300].nis > 100).all()


def test_heavy_tails_spikes_and_bursts_match_reference() -> None:
    rng = np.random.default_rng(21)
    _, _, z = local_linear_trend(rng, 600, 6, q_level=0.01, q_rate=1e-6)
    z = z + spikes(rng, z.shape, rate=0.03)
    z[:, 4] = 5.0 + rng.standard_t(2, 600)  # Student-t with 2 dof: infinite variance
    z[300:302, 5] += 12.0  # a burst of two samples
    z[400:, 5] += 12.0  # and a held step
    qual = np.where(rng.random(z.shape) < 0.03, BAD, GOOD).astype(np.uint16)
    got = run_kernel(z, qual)
    assert_same(got, run_reference(z, qual))
    assert (got["nis"] > 10.83).sum() > 20  # the winsorized and the confirmed paths ran
    assert (got["alarm"] == Alarm.ALARM).any()


def test_a_single_spike_neither_alarms_nor_drags_the_state() -> None:
    rng = np.random.default_rng(5)
    _, _, z = local_linear_trend(rng, 400, 8, q_level=1e-3)
    sign = np.where(np.arange(8) % 2 == 0, 1.0, -1.0)
    runs = []
    for size in (25.0, 50.0):  # sigmas, one sample every 60 ticks
        spiked = z.copy()
        spiked[100::60] += size * sign
        runs.append(feed(TrendEstimator(8), spiked))
    plain = feed(TrendEstimator(8), z)
    for outs in runs:
        assert (column(outs, "alarm") != Alarm.ALARM).all()
        assert all((outs[t].score > 10).all() for t in range(100, 400, 60))  # still reported
    # winsorized onto the bound: a spike twice as large moves the state no further
    for a, b in zip(*runs, strict=True):
        np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-12)
        np.testing.assert_allclose(a.rate, b.rate, rtol=1e-12, atol=1e-15)
    assert np.abs(runs[0][-1].estimate - plain[-1].estimate).max() < 0.5
    assert np.abs(runs[0][-1].rate - plain[-1].rate).max() < 0.02


def test_heavy_tailed_noise_rarely_alarms() -> None:
    rng = np.random.default_rng(8)
    ticks, n = 3000, 20
    _, _, z = local_linear_trend(rng, ticks, n, q_level=0.01, q_rate=1e-6)
    alarm = column(feed(TrendEstimator(n), z + spikes(rng, z.shape)), "alarm")
    onsets = ((alarm[1:] == Alarm.ALARM) & (alarm[:-1] != Alarm.ALARM)).sum()
    # Gaussian-only learning and updates gave several onsets per 10 000 samples
    assert onsets <= 6


def test_estimate_beats_raw_measurements() -> None:
    rng = np.random.default_rng(12)
    level, _, z = local_linear_trend(rng, 2000, 20, q_level=0.01, q_rate=1e-5)
    est = column(feed(TrendEstimator(20), z), "estimate")
    after = slice(100, None)
    rmse_est = np.sqrt(np.mean((est[after] - level[after]) ** 2))
    rmse_raw = np.sqrt(np.mean((z[after] - level[after]) ** 2))
    assert rmse_est < 0.5 * rmse_raw


def test_commissioning_outputs_follow_the_line_and_a_gap_is_predicted() -> None:
    z = np.array([[1.0], [3.0], [np.nan], [7.0], [9.0], [np.nan], [13.0]])  # 1 + 2 t
    outs = feed(TrendEstimator(1, commissioning=10), z)
    np.testing.assert_allclose(column(outs, "estimate")[:, 0], 1.0 + 2.0 * np.arange(7))
    np.testing.assert_allclose(column(outs, "rate")[1:, 0], 2.0)
    assert column(outs, "initialized").all()
    assert (column(outs, "score") == 0.0).all()


def test_state_round_trip_continues_identically(tmp_path: Path) -> None:
    rng = np.random.default_rng(16)
    _, _, z = local_linear_trend(rng, 300, 12, q_level=0.01)
    z[220:, 5] += 15.0
    qual = np.where(rng.random(z.shape) < 0.05, BAD, GOOD).astype(np.uint16)
    for split in (10, 35, 130, 224):  # mid-commissioning, just after, mid-learning, mid-alarm
        a = TrendEstimator(12, commissioning=30)
        feed(a, z[:split], qual[:split])
        saved = a.state()
        assert (saved["alarm"] == Alarm.ALARM).any() == (split == 224)
        np.savez(tmp_path / f"twin-{split}.npz", **saved)  # as a restart would persist it
        with np.load(tmp_path / f"twin-{split}.npz") as stored:
            restored = {k: stored[k] for k in stored.files}
        b = TrendEstimator(12, commissioning=30)
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
    unfloored = TrendEstimator(2)
    feed(unfloored, z)
    est = TrendEstimator(2, noise_floor=floors)
    assert set(est.state()) == set(unfloored.state())
    est.load_state(unfloored.state())  # saved without a floor
    np.testing.assert_array_equal(est.noise_floor, floors)
    pairs = int(est.state()["pair_n"][0])
    feed(est, z[: NOISE_EVERY - pairs % NOISE_EVERY])  # up to the next noise update
    assert est.state()["pair_n"][0] % NOISE_EVERY == 0
    np.testing.assert_array_equal(est.state()["r"], [0.25, unfloored.state()["r"][1]])


def test_all_nan_input_gives_no_nan() -> None:
    est = TrendEstimator(4)
    for _ in range(50):
        out = est.update(np.full(4, np.nan), good(4))
        assert (out.estimate == 0.0).all()
        assert (out.rate == 0.0).all()
        assert (out.score == 0.0).all()
        assert (out.alarm == Alarm.NORMAL).all()
        assert not out.initialized.any()
    assert all(np.isfinite(v).all() for v in est.state().values())


# ---------------------------------------------------------------------------------------------
# API: outputs, conversions, validation
# ---------------------------------------------------------------------------------------------


def test_outputs_are_fresh_arrays_of_the_documented_types() -> None:
    est = TrendEstimator(2, commissioning=4)
    first = est.update(np.array([1.0, 2.0]), good(2))
    kept = first.estimate.copy()
    est.update(np.array([3.0, 4.0]), good(2))
    np.testing.assert_array_equal(first.estimate, kept)
    assert first.estimate.dtype == np.float64
    assert first.rate.dtype == np.float64
    assert first.alarm.dtype == np.uint8
    assert first.initialized.dtype == np.bool_


def test_out_is_written_in_place_and_equals_fresh_outputs() -> None:
    rng = np.random.default_rng(17)
    _, _, z = local_linear_trend(rng, 120, 3)
    fresh, reused = TrendEstimator(3), TrendEstimator(3)
    out = reused.new_output()
    for t in range(z.shape[0]):
        want = fresh.update(z[t], good(3))
        got = reused.update(z[t], good(3), out=out)
        assert got is out
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(got, f), getattr(want, f))


def test_out_from_elsewhere_is_rejected() -> None:
    est, other = TrendEstimator(2), TrendEstimator(2)
    before = est.state()
    foreign = other.new_output()
    look_alike = TrendOutput(*est.new_output())  # same arrays, another object
    for out in (foreign, look_alike):
        with pytest.raises(ValueError, match="new_output"):
            est.update(np.zeros(2), good(2), out=out)
    for k, v in est.state().items():
        np.testing.assert_array_equal(v, before[k])


def test_lossless_conversions_are_accepted() -> None:
    est = TrendEstimator(3, commissioning=4)
    out = est.update(np.array([1, 2, 3], dtype=np.int32), np.array([0, 1, 0], dtype=np.int64))
    np.testing.assert_array_equal(out.estimate, [1.0, 0.0, 3.0])
    frozen = np.array([1.5, 2.5, 3.5], dtype=np.float32)
    frozen.flags.writeable = False
    out = est.update(frozen, np.zeros(3, dtype=np.uint8))
    np.testing.assert_array_equal(out.estimate, [1.5, 2.5, 3.5])  # the line through 2 samples
    strided = np.array([[4.0, 0.0], [5.0, 0.0], [6.0, 0.0]])[:, 0]
    out = est.update(strided, [0, 0, 0])
    slopes = [np.polyfit(t, v, 1)[0] for t, v in (([0, 1, 2], [1, 1.5, 4]), ([0, 1], [2.5, 5]))]
    np.testing.assert_allclose(out.rate, [slopes[0], slopes[1], 1.5], rtol=1e-12)


def test_commissioning_shorter_than_four_samples_raises() -> None:
    # the alarm arguments are checked for every point model in test_point_models.py
    with pytest.raises(ValueError, match="commissioning"):
        TrendEstimator(3, commissioning=3)


@pytest.mark.parametrize(
    ("values", "quality"),
    [
        (np.zeros(4), np.zeros(3, np.uint16)),
        (np.zeros(2), np.zeros(3, np.uint16)),
        (np.zeros(3), np.zeros(4, np.uint16)),
        (np.zeros((3, 1)), np.zeros(3, np.uint16)),
        (np.zeros(3, np.complex128), np.zeros(3, np.uint16)),
        (np.array(["1", "2", "3"]), np.zeros(3, np.uint16)),
        (np.zeros(3, np.bool_), np.zeros(3, np.uint16)),
        (np.array([2**60, 0, 0], dtype=np.int64), np.zeros(3, np.uint16)),
        (np.ma.array(np.zeros(4)), np.zeros(3, np.uint16)),
        (np.zeros(3), np.zeros(3)),  # float quality
        (np.zeros(3), np.array([0, -1, 0])),
        (np.zeros(3), np.array([0, 70_000, 0])),
        (1.0, np.zeros(3, np.uint16)),
    ],
)
def test_mismatched_inputs_raise(values: Any, quality: np.ndarray) -> None:
    est = TrendEstimator(3)
    before = est.state()
    with pytest.raises(ValueError, match=r"values|quality"):
        est.update(values, quality)
    for k, v in est.state().items():
        np.testing.assert_array_equal(v, before[k])


def _mutations() -> list[tuple[str, Any]]:
    return [
        ("missing", lambda s: s.pop("r")),
        ("extra", lambda s: s.update(extra=np.zeros(3))),
        ("shape", lambda s: s.update(level=np.zeros(4))),
        ("dtype", lambda s: s.update(level=s["level"].astype(np.float32))),
        ("int dtype", lambda s: s.update(alarm=s["alarm"].astype(np.uint8))),
        ("not an array", lambda s: s.update(level=[0.0, 0.0, 0.0])),
        ("nan", lambda s: s["rate"].__setitem__(0, np.nan)),
        ("inf", lambda s: s["p_rr"].__setitem__(0, np.inf)),
        ("negative variance", lambda s: s["p_ll"].__setitem__(1, -1.0)),
        ("zero r when calibrated", lambda s: s["r"].__setitem__(0, 0.0)),
        ("zero q_rate when calibrated", lambda s: s["q_rate"].__setitem__(0, 0.0)),
        ("cusum above h", lambda s: s["cusum_pos"].__setitem__(2, 1.5)),
        ("alarm range", lambda s: s["alarm"].__setitem__(2, 3)),
        ("calibrated range", lambda s: s["calibrated"].__setitem__(2, 2)),
        ("negative count", lambda s: s["n_good"].__setitem__(2, -1)),
    ]


@pytest.mark.parametrize(("name", "mutate"), _mutations())
def test_load_state_rejects_mismatch(name: str, mutate: Any) -> None:
    rng = np.random.default_rng(18)
    _, _, z = local_linear_trend(rng, 40, 3)
    est = TrendEstimator(3, commissioning=10)
    feed(est, z)
    state = est.state()
    mutate(state)
    target = TrendEstimator(3, commissioning=10)
    before = target.state()
    with pytest.raises(ValueError, match="state"):
        target.load_state(state)
    for k, v in target.state().items():  # nothing was half-loaded
        np.testing.assert_array_equal(v, before[k], err_msg=name)


def test_warmup_writes_the_kernel_cache_next_to_the_source() -> None:
    source = Path(_trend_kernel.__file__)
    if "NUMBA_CACHE_DIR" in os.environ or not os.access(source.parent, os.W_OK):
        pytest.skip("package directory is read-only; numba falls back to a user cache dir")
    warmup()
    index = list((source.parent / "__pycache__").glob("_trend_kernel.trend_update-*.nbi"))
    assert index, "numba did not cache the kernel"
