"""Lag estimator: the Numba kernel against a slow per-point reference, and behaviour."""

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
from edgetwin.twin import _lag_kernel
from edgetwin.twin.lag import LagEstimator, LagOutput, warmup
from tests.support.heavy_tails import spikes

GOOD = int(Quality.GOOD)
BAD = int(Quality.COMM_FAIL)

# ---------------------------------------------------------------------------------------------
# Reference: one point at a time, plain Python floats, straight from the documented semantics.
# ---------------------------------------------------------------------------------------------

EPS = 1e-9  # pivot floor of the LDL' factorisation, relative to the diagonal element
DELTA = 1e-24  # absolute part of that floor; R starts as DELTA * I


def ldl_floored(a: list[list[float]]) -> tuple[list[list[float]], list[float]]:
    """Factorise ``a = L D L'`` (unit lower L), raising ``a[j][j]`` where a pivot needs a floor."""
    n = len(a)
    low = [[0.0] * n for _ in range(n)]
    d = [0.0] * n
    for j in range(n):
        s = 0.0
        for k in range(j):
            s += low[j][k] * low[j][k] * d[k]
        d[j] = a[j][j] - s
        floor = EPS * a[j][j] + DELTA
        if d[j] < floor:
            a[j][j] += floor - d[j]
            d[j] = floor
        for i in range(j + 1, n):
            s = 0.0
            for k in range(j):
                s += low[i][k] * low[j][k] * d[k]
            low[i][j] = (a[i][j] - s) / d[j]
    return low, d


def ldl_solve(low: list[list[float]], d: list[float], b: list[float]) -> tuple[list[float], float]:
    """Return ``x = A^-1 b`` and ``b' A^-1 b`` from the factors of ``A``."""
    n = len(b)
    z = [0.0] * n  # L z = b
    for i in range(n):
        s = 0.0
        for k in range(i):
            s += low[i][k] * z[k]
        z[i] = b[i] - s
    quad = 0.0
    for j in range(n):
        quad += z[j] * z[j] / d[j]
    x = [0.0] * n  # L' x = D^-1 z
    for i in reversed(range(n)):
        s = 0.0
        for k in range(i + 1, n):
            s += low[k][i] * x[k]
        x[i] = z[i] / d[i] - s
    return x, quad


def dot(a: list[float], b: list[float]) -> float:
    s = 0.0
    for x, y in zip(a, b, strict=True):
        s += x * y
    return s


class ReferencePoint:
    """The lag model of one point."""

    def __init__(
        self,
        commissioning: int = 60,
        threshold: float = 10.83,
        cusum_k: float = 0.5,
        cusum_h: float = 8.0,
        alarm_on: int = 3,
        alarm_off: int = 5,
        horizon: int = 1000,
        noise_floor: float = 0.0,
    ) -> None:
        self.commissioning = commissioning
        self.noise_floor = noise_floor
        self.threshold = threshold
        self.cusum_k = cusum_k
        self.cusum_h = cusum_h
        self.alarm_on = alarm_on
        self.alarm_off = alarm_off
        self.horizon = horizon
        self.seeded = False
        self.y0 = self.u0 = 0.0
        self.prev: list[float] | None = None  # the regressor, while the chain is unbroken
        self.winsorized = False  # the y in prev was winsorized
        self.theta = [0.0, 0.0, 0.0]
        self.info = [[DELTA if j == k else 0.0 for k in range(3)] for j in range(3)]
        self.n_learnt = 0
        self.resid_sq = 0.0
        self.calibrated = False
        self.estimate = 0.0
        self.cp = self.cm = 0.0
        self.alarm = Alarm.NORMAL
        self.streak = 0

    def step(self, y: float, u: float, qy: int, qu: int) -> tuple[Any, ...]:
        """Return estimate, score, nis, alarm, initialized, gain, tau, residual."""
        usable = all(math.isfinite(v) and abs(v) <= 1e100 for v in (y, u))
        score = nis = residual = 0.0
        if qy == 0 and qu == 0 and usable:
            if not self.seeded:
                self.seeded = True
                self.y0, self.u0 = y, u
            yc = y - self.y0
            winsorized = False
            if self.prev is not None:
                score, nis, residual, winsorized = self.chained(self.prev, yc)
            else:
                self.estimate = y
            self.prev = [yc, u - self.u0, 1.0]
            self.winsorized = winsorized
        else:
            if self.prev is not None:
                self.estimate = self.y0 + self.predict(self.prev)
            self.prev = None
            self.winsorized = False
        ac = min(max(self.theta[0], 0.0), 0.9999)
        gain = self.theta[1] / (1.0 - ac)
        tau = -1.0 / math.log(ac) if ac > 0.0 else 0.0
        return self.estimate, score, nis, int(self.alarm), self.seeded, gain, tau, residual

    def predict(self, phi: list[float]) -> float:
        return min(max(dot(self.theta, phi), -2e100), 2e100)

    def chained(self, phi: list[float], yc: float) -> tuple[float, float, float, bool]:
        lam = 1.0 - 1.0 / self.horizon
        a = [[lam * v for v in row] for row in self.info]  # forget
        factors = ldl_floored(a)
        g, q = ldl_solve(*factors, phi)
        p = self.predict(phi)
        nu = yc - p
        if self.winsorized:
            # the previous y was winsorized: its prediction (the last estimate) is the other
            # candidate for y[t-1]; the regressor with the smaller nu^2 / (1 + q) is used
            cleaned = [self.estimate - self.y0, phi[1], 1.0]
            g_c, q_c = ldl_solve(*factors, cleaned)
            p_c = self.predict(cleaned)
            if (yc - p_c) * (yc - p_c) / (1.0 + q_c) < nu * nu / (1.0 + q):
                phi, g, q, p, nu = cleaned, g_c, q_c, p_c, yc - p_c
        self.estimate = self.y0 + p
        residual = nu
        w = nu / math.sqrt(1.0 + q)
        score = nis = zn = 0.0
        learn = True
        winsorized = False
        if self.calibrated:
            floor = self.noise_floor * self.noise_floor
            r = max(self.resid_sq, 1e-12, (1e-6 * self.y0) * (1e-6 * self.y0), floor)
            zn = w / math.sqrt(r)
            nis = zn * zn
            # outside ALARM a pair beyond the bound that follows a score < 1 (streak 0) is
            # winsorized onto the bound; a later one in a row is a change, not learnt from
            learn = self.alarm != Alarm.ALARM and (nis <= self.threshold or self.streak == 0)
            if nis > self.threshold and learn:
                winsorized = True
                nu = math.copysign(math.sqrt(self.threshold * r * (1.0 + q)), nu)
                w = nu / math.sqrt(1.0 + q)
                zn = w / math.sqrt(r)
        if learn:
            gain = nu / (1.0 + q)
            self.theta = [t + gj * gain for t, gj in zip(self.theta, g, strict=True)]
            for j in range(3):
                for k in range(j, 3):
                    a[j][k] = a[k][j] = a[j][k] + phi[j] * phi[k]
            self.info = a
            self.n_learnt += 1
            if self.n_learnt > 3:
                weight = max(1.0 / (self.n_learnt - 3), 1.0 / self.horizon)
                self.resid_sq += weight * (w * w - self.resid_sq)
        if self.calibrated:
            score = self.detect(zn, nis)
        elif self.n_learnt >= self.commissioning:
            self.calibrated = True
            self.cp = self.cm = 0.0
            self.alarm = Alarm.NORMAL
            self.streak = 0
        return score, nis, residual, winsorized

    def detect(self, zn: float, nis: float) -> float:
        self.cp = min(max(0.0, self.cp + zn - self.cusum_k), self.cusum_h)
        self.cm = min(max(0.0, self.cm - zn - self.cusum_k), self.cusum_h)
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
        return score


FIELDS = ("estimate", "score", "nis", "alarm", "initialized", "gain", "tau", "residual")
FLOATS = ("estimate", "score", "nis", "gain", "tau", "residual")


def run_reference(
    y: np.ndarray, u: np.ndarray, qy: np.ndarray, qu: np.ndarray, **params: Any
) -> dict[str, np.ndarray]:
    """Run every column through its own ReferencePoint; outputs shaped (ticks, points)."""
    ticks, n = y.shape
    floors = params.pop("noise_floor", None)
    floors = np.zeros(n) if floors is None else np.asarray(floors, dtype=np.float64)
    out = {f: np.zeros((ticks, n)) for f in FIELDS}
    for i in range(n):
        point = ReferencePoint(noise_floor=float(floors[i]), **params)
        for t in range(ticks):
            row = point.step(float(y[t, i]), float(u[t, i]), int(qy[t, i]), int(qu[t, i]))
            for f, v in zip(FIELDS, row, strict=True):
                out[f][t, i] = v
    return out


def run_kernel(
    y: np.ndarray,
    u: np.ndarray,
    qy: np.ndarray,
    qu: np.ndarray,
    est: LagEstimator | None = None,
    **params: Any,
) -> dict[str, np.ndarray]:
    """Feed rows to a LagEstimator; outputs shaped (ticks, points)."""
    est = est or LagEstimator(y.shape[1], **params)
    outs = [est.update(y[t], u[t], qy[t], qu[t]) for t in range(y.shape[0])]
    return {f: np.array([getattr(o, f) for o in outs]) for f in FIELDS}


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    for f in FLOATS:
        assert np.isfinite(got[f]).all(), f
        scale = max(1.0, float(np.abs(want[f]).max(initial=0.0)))
        np.testing.assert_allclose(got[f], want[f], rtol=1e-9, atol=1e-12 * scale, err_msg=f)
    np.testing.assert_array_equal(got["alarm"], want["alarm"])
    np.testing.assert_array_equal(got["initialized"], want["initialized"].astype(bool))


def good(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, dtype=np.uint16)


def driving_input(
    rng: np.random.Generator, ticks: int, n: int, low: float = 4.0, high: float = 16.0
) -> np.ndarray:
    """A random walk kept inside [low, high], like a load that wanders."""
    u = np.empty((ticks, n))
    u[0] = rng.uniform(low, high, n)
    steps = rng.normal(0.0, 0.04 * (high - low), (ticks, n))
    for t in range(1, ticks):
        u[t] = np.clip(u[t - 1] + steps[t], low, high)
    return u


def respond(
    rng: np.random.Generator,
    u: np.ndarray,
    *,
    tau: float | np.ndarray = 20.0,
    gain: float | np.ndarray = 2.0,
    offset: float = 5.0,
    noise: float = 0.05,
    y_start: np.ndarray | None = None,
    shocks: np.ndarray | None = None,
) -> np.ndarray:
    """y[t] = a y[t-1] + b u[t-1] + (1 - a) offset + e: the first-order system the model fits.

    ``shocks`` (shaped like ``u``) are added to the Gaussian ``e``: disturbances of the process.
    """
    a = np.exp(-1.0 / np.asarray(tau, dtype=float))
    b = np.asarray(gain, dtype=float) * (1.0 - a)
    y = np.empty_like(u)
    y[0] = np.asarray(gain) * u[0] + offset if y_start is None else y_start
    e = rng.normal(0.0, noise, u.shape)
    if shocks is not None:
        e = e + shocks
    for t in range(1, u.shape[0]):
        y[t] = a * y[t - 1] + b * u[t - 1] + (1.0 - a) * offset + e[t]
    return y


def system(
    rng: np.random.Generator, ticks: int, n: int, **kwargs: Any
) -> tuple[np.ndarray, np.ndarray]:
    u = driving_input(rng, ticks, n)
    return respond(rng, u, **kwargs), u


def feed(
    est: LagEstimator,
    y: np.ndarray,
    u: np.ndarray,
    qy: np.ndarray | None = None,
    qu: np.ndarray | None = None,
) -> list[LagOutput]:
    qy = good(y.shape) if qy is None else qy
    qu = good(y.shape) if qu is None else qu
    return [est.update(y[t], u[t], qy[t], qu[t]) for t in range(y.shape[0])]


def column(outs: list[LagOutput], field: str) -> np.ndarray:
    return np.array([getattr(o, field) for o in outs])


# ---------------------------------------------------------------------------------------------
# Kernel against reference
# ---------------------------------------------------------------------------------------------


def test_reference_ldl_solves_like_numpy() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = rng.normal(size=(3, 3)) * 10.0 ** rng.uniform(-3, 3, 3)
        a = m @ m.T + 1e-3 * np.eye(3)
        b = rng.normal(size=3)
        x, quad = ldl_solve(*ldl_floored(a.tolist()), b.tolist())
        want = np.linalg.solve(a, b)
        np.testing.assert_allclose(x, want, rtol=1e-6, atol=1e-9 * np.abs(want).max())
        assert quad == pytest.approx(float(b @ want), rel=1e-6)


def test_first_order_systems_match_reference() -> None:
    rng = np.random.default_rng(1)
    y, u = system(rng, 400, 6, tau=np.array([2.0, 5.0, 20.0, 50.0, 20.0, 1.0]))
    y[250:, 3] += 3.0  # a step, so the alarm path is exercised too
    q = good(y.shape)
    got = run_kernel(y, u, q, q, commissioning=40)
    assert_same(got, run_reference(y, u, q, q, commissioning=40))
    assert (got["alarm"][:, 3] == Alarm.ALARM).any()


def test_long_run_past_the_horizon_matches_reference() -> None:
    rng = np.random.default_rng(2)
    y, u = system(rng, 2500, 2)
    qy = np.where(rng.random(y.shape) < 0.02, BAD, GOOD).astype(np.uint16)
    qu = np.where(rng.random(y.shape) < 0.02, BAD, GOOD).astype(np.uint16)
    got = run_kernel(y, u, qy, qu, horizon=300)
    assert_same(got, run_reference(y, u, qy, qu, horizon=300))


def test_nan_inf_and_bad_quality_match_reference() -> None:
    rng = np.random.default_rng(3)
    y, u = system(rng, 300, 8)
    qy, qu = good(y.shape), good(y.shape)
    for arr, q in ((y, qy), (u, qu)):
        mask = rng.random(y.shape)
        arr[mask < 0.03] = np.nan
        arr[(mask >= 0.03) & (mask < 0.05)] = np.inf
        arr[(mask >= 0.05) & (mask < 0.06)] = -np.inf
        arr[(mask >= 0.06) & (mask < 0.07)] = 1e300  # finite but unusable
        q[(mask >= 0.07) & (mask < 0.12)] = int(Quality.STALE | Quality.OUT_OF_RANGE)
    y[30:50, 3] = np.nan  # an outage during commissioning
    u[100:180, 4] = np.nan  # a long outage of the input after it
    got = run_kernel(y, u, qy, qu, commissioning=20)
    assert_same(got, run_reference(y, u, qy, qu, commissioning=20))
    unused = ~np.isfinite(y) | ~np.isfinite(u) | (qy != 0) | (qu != 0)
    unused |= (np.abs(y) > 1e100) | (np.abs(u) > 1e100)
    assert (got["score"][unused] == 0.0).all()
    assert (got["residual"][unused] == 0.0).all()


@pytest.mark.parametrize(("level", "drive"), [(0.0, 0.0), (3.25, 7.0), (-1e6, 1e-9), (1e-9, -2.5)])
def test_constant_data_matches_reference(level: float, drive: float) -> None:
    y = np.full((150, 2), level)
    u = np.full((150, 2), drive)
    u[:, 1] = np.linspace(-1.0, 1.0, 150)  # a moving input that y ignores
    q = good(y.shape)
    got = run_kernel(y, u, q, q)
    assert_same(got, run_reference(y, u, q, q))
    assert (got["estimate"] == level).all()
    assert (got["alarm"] == Alarm.NORMAL).all()
    assert (got["score"] == 0.0).all()
    assert (got["gain"] == 0.0).all()


def test_many_points_of_different_scales_match_reference() -> None:
    rng = np.random.default_rng(4)
    n = 129
    y, u = system(rng, 150, n)
    y = y * 10.0 ** rng.uniform(-6, 6, n) + 10.0 ** rng.uniform(-6, 6, n)
    u = u * 10.0 ** rng.uniform(-6, 6, n)
    qy = np.where(rng.random(y.shape) < 0.03, BAD, GOOD).astype(np.uint16)
    got = run_kernel(y, u, qy, good(y.shape), commissioning=30)
    assert_same(got, run_reference(y, u, qy, good(y.shape), commissioning=30))


def test_extreme_magnitudes_stay_finite_and_match_reference() -> None:
    rng = np.random.default_rng(5)
    y = rng.choice([0.0, 1.0, -1e100, 1e100, 3e99, 1e-300], size=(200, 6))
    u = rng.choice([0.0, -1e100, 1e100, 1e50, 2.0], size=(200, 6))
    q = good(y.shape)
    for commissioning in (5, 60):
        got = run_kernel(y, u, q, q, commissioning=commissioning, horizon=10)
        assert_same(got, run_reference(y, u, q, q, commissioning=commissioning, horizon=10))


def test_noise_floors_match_reference() -> None:
    rng = np.random.default_rng(18)
    y, u = system(rng, 400, 8, noise=0.05)
    y[:, 4:] = np.round(y[:, 4:] * 10.0) / 10.0  # quantised in steps of 0.1
    y[:, 6] = 3.0  # constant
    y[200:, 6] = 3.1  # then one step
    y[250:, 3] += 1.0
    qy = np.where(rng.random(y.shape) < 0.03, BAD, GOOD).astype(np.uint16)
    q = good(y.shape)
    # below, near and above the noise (sd 0.05), and the quantisation noise of 0.1 steps
    floors = np.array([0.0, 0.01, 0.05, 0.5, 0.1 / math.sqrt(12), 0.1, 0.0, 0.1])
    got = run_kernel(y, u, qy, q, noise_floor=floors)
    assert_same(got, run_reference(y, u, qy, q, noise_floor=floors))
    assert not np.array_equal(got["nis"], run_kernel(y, u, qy, q)["nis"])  # the floors did bind


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
def batches(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    ticks = draw(st.integers(1, 60))
    n = draw(st.integers(1, 3))
    arrays = [
        draw(hnp.arrays(np.float64, (ticks, n), elements=values_strategy)),
        draw(hnp.arrays(np.float64, (ticks, n), elements=values_strategy)),
        draw(hnp.arrays(np.uint16, (ticks, n), elements=st.sampled_from([0, 0, 0, 0, 1, 32]))),
        draw(hnp.arrays(np.uint16, (ticks, n), elements=st.sampled_from([0, 0, 0, 0, 8]))),
    ]
    return tuple(arrays)


@st.composite
def parameters(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "commissioning": draw(st.integers(5, 12)),
        "threshold": draw(st.floats(0.5, 20.0)),
        "cusum_k": draw(st.floats(0.0, 1.0)),
        "cusum_h": draw(st.floats(0.5, 10.0)),
        "alarm_on": draw(st.integers(1, 3)),
        "alarm_off": draw(st.integers(1, 3)),
        "horizon": draw(st.integers(10, 100)),
    }


def floors(n: int) -> st.SearchStrategy[np.ndarray | None]:
    return st.none() | hnp.arrays(np.float64, (n,), elements=floors_strategy)


@settings(max_examples=80, deadline=None)
@given(st.data(), batches(), parameters())
def test_hypothesis_arrays_match_reference(
    data: st.DataObject, batch: tuple[np.ndarray, ...], params: dict[str, Any]
) -> None:
    params["noise_floor"] = data.draw(floors(batch[0].shape[1]))
    assert_same(run_kernel(*batch, **params), run_reference(*batch, **params))


@settings(max_examples=40, deadline=None)
@given(st.data(), parameters())
def test_hypothesis_noisy_systems_match_reference(
    data: st.DataObject, params: dict[str, Any]
) -> None:
    params["noise_floor"] = data.draw(floors(2))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    y, u = system(rng, 80, 2, tau=data.draw(st.floats(0.5, 50.0)))
    y[data.draw(st.integers(0, 79)) :, 0] += data.draw(st.floats(-5.0, 5.0))
    qy = np.where(rng.random(y.shape) < 0.05, BAD, GOOD).astype(np.uint16)
    q = good(y.shape)
    assert_same(run_kernel(y, u, qy, q, **params), run_reference(y, u, qy, q, **params))


def test_heavy_tails_spikes_and_bursts_match_reference() -> None:
    rng = np.random.default_rng(21)
    ticks, n = 600, 8
    u = driving_input(rng, ticks, n)
    shocks = spikes(rng, u.shape, rate=0.03, sigma=0.05)
    shocks[:, 6:] = 0.05 * rng.standard_t(2, (ticks, 2))  # Student-t, 2 dof: infinite variance
    y = respond(rng, u, tau=np.linspace(2.0, 60.0, n), shocks=shocks)
    # spikes of the measurement, not the process
    y[:, :4] += spikes(rng, (ticks, 4), rate=0.03, sigma=0.05)
    y[300:302, 4] += 1.0  # a burst of two samples (20 sigma)
    y[400:, 5] += 3.0  # and a held step (60 sigma; on its first tick the CUSUM takes 3.3)
    qy = np.where(rng.random(y.shape) < 0.03, BAD, GOOD).astype(np.uint16)
    qu = np.where(rng.random(y.shape) < 0.01, BAD, GOOD).astype(np.uint16)
    got = run_kernel(y, u, qy, qu)
    assert_same(got, run_reference(y, u, qy, qu))
    assert (got["nis"] > 10.83).sum() > 40  # the winsorized and the confirmed paths ran
    assert (got["alarm"][:, 5] == Alarm.ALARM).any()


# ---------------------------------------------------------------------------------------------
# Learning against batch least squares
# ---------------------------------------------------------------------------------------------


def test_commissioning_fit_equals_batch_least_squares() -> None:
    rng = np.random.default_rng(6)
    commissioning = 200
    y, u = system(rng, 300, 1, tau=8.0, gain=-1.5, noise=0.2)
    y, u = y[:, 0], u[:, 0]
    for horizon in (10_000_000, 150, 10):
        est = LagEstimator(1, commissioning=commissioning, horizon=horizon)
        feed(est, y[: commissioning + 1, None], u[: commissioning + 1, None])
        state = {k: v[0] for k, v in est.state().items()}
        assert state["calibrated"] == 1
        # weighted least squares on the raw pairs: the newest weighs 1, each older one lam less
        phi = np.column_stack([y[:commissioning], u[:commissioning], np.ones(commissioning)])
        target = y[1 : commissioning + 1]
        weight = (1.0 - 1.0 / horizon) ** np.arange(commissioning)[::-1]
        root = np.sqrt(weight)
        a, b, c = np.linalg.lstsq(phi * root[:, None], target * root, rcond=None)[0]
        assert state["a"] == pytest.approx(a, rel=1e-9)
        assert state["b"] == pytest.approx(b, rel=1e-9)
        # the kernel's c is in coordinates centred on the first pair
        y0, u0 = state["y0"], state["u0"]
        assert state["c"] + y0 - state["a"] * y0 - state["b"] * u0 == pytest.approx(c, rel=1e-9)
        if horizon == 10_000_000:
            # recursive residuals after the first three: their squares sum to the fit's RSS
            rss = float(np.sum((target - phi @ np.array([a, b, c])) ** 2))
            assert state["resid_sq_mean"] == pytest.approx(rss / (commissioning - 3), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Behaviour
# ---------------------------------------------------------------------------------------------

STEP = 0.1  # a temperature held in a Modbus register in steps of 0.1 degC
QUANTISATION = STEP / math.sqrt(12)  # the noise such a reading has at least


def held_step(start: int, steps: float, ticks: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """(y, u): y 20.0 for ``start`` samples, then ``steps`` * STEP higher; u constant at 7."""
    y = np.full((start + ticks, 1), 20.0)
    y[start:] += steps * STEP
    return y, np.full_like(y, 7.0)


@pytest.mark.parametrize(
    ("floor", "delay", "steps", "alarm_on", "alarms"),
    [
        # the change scores on its first tick only, so only alarm_on = 1 can raise an ALARM
        (0.0, 0, 1, 3, False),
        (0.0, 0, 1, 1, True),  # without a floor r = (1e-6 * 20)^2: the test can fail
        (0.0, 1000, 1, 1, True),
        (QUANTISATION, 0, 1, 1, True),  # nis = 12 / (1 + q) > 10.83
        (QUANTISATION, 0, 1, 3, False),
        (STEP, 0, 1, 1, False),  # nis = 1 / (1 + q)
        (STEP, 1000, 1, 1, False),
        (STEP, 0, 4, 1, True),
        (QUANTISATION, 0, 20, 1, True),
        (STEP, 1000, 20, 1, True),
    ],
)
def test_constant_commissioning_then_a_held_one_step_change(
    floor: float, delay: int, steps: float, alarm_on: int, alarms: bool
) -> None:
    commissioning = 60  # pairs: one more sample
    start = commissioning + 1 + delay
    y, u = held_step(start, steps)
    outs = feed(LagEstimator(1, alarm_on=alarm_on, noise_floor=[floor]), y, u)
    alarm = column(outs, "alarm")[:, 0]
    nis = column(outs, "nis")[:, 0]
    assert (alarm[:start] == Alarm.NORMAL).all()
    assert (alarm == Alarm.ALARM).any() == alarms
    assert (nis[start + 1 :] < 1.0).all()  # the next tick already predicts the new level
    if floor > 0.0:
        assert 0.9 * (steps * STEP / floor) ** 2 < nis[start] <= (steps * STEP / floor) ** 2


@pytest.mark.parametrize("tau", [3.0, 20.0, 80.0])
def test_gain_and_tau_converge_on_a_first_order_system(tau: float) -> None:
    rng = np.random.default_rng(7)
    gain = np.linspace(1.0, 3.0, 20) * np.where(np.arange(20) % 2, -1.0, 1.0)
    y, u = system(rng, 4000, 20, tau=tau, gain=gain, noise=0.05)
    outs = feed(LagEstimator(20), y, u)
    np.testing.assert_allclose(outs[-1].gain, gain, rtol=0.1)
    np.testing.assert_allclose(outs[-1].tau, tau, rtol=0.15)
    alarm = column(outs, "alarm")
    assert (alarm == Alarm.ALARM).mean() < 1e-3
    # the residual is the noise: the model explains the rest
    residual = column(outs, "residual")[200:]
    assert residual.std() == pytest.approx(0.05, rel=0.1)


def test_step_input_is_learnt_and_rarely_alarms() -> None:
    rng = np.random.default_rng(8)
    ticks, n = 4000, 30
    levels = rng.uniform(0.0, 10.0, (ticks // 100, n))
    u = np.repeat(levels, 100, axis=0)  # a new set point every 100 ticks
    y = respond(rng, u, tau=15.0, gain=1.5, noise=0.1)
    outs = feed(LagEstimator(n), y, u)
    np.testing.assert_allclose(outs[-1].gain, 1.5, rtol=0.05)
    np.testing.assert_allclose(outs[-1].tau, 15.0, rtol=0.15)
    assert (column(outs, "alarm") == Alarm.ALARM).mean() < 1e-3


def test_changed_gain_raises_alarm_while_y_stays_in_its_range() -> None:
    # a fouled heat exchanger: the same load now heats more; the temperature is still normal
    rng = np.random.default_rng(9)
    ticks, t0, n = 1600, 1200, 8
    u = driving_input(rng, ticks, n, low=4.0, high=12.0)
    u[t0:] = u[t0 - 400 : t0] * 2.0 / 2.6  # the last duty cycle again, at a lighter load
    healthy = respond(rng, u[:t0], tau=20.0, gain=2.0)
    fouled = respond(rng, u[t0 - 1 :], tau=20.0, gain=2.6, y_start=healthy[-1])
    y = np.concatenate([healthy, fouled[1:]])
    assert (y[t0:] >= healthy.min(axis=0) - 0.2).all()  # 4 sigma of the noise
    assert (y[t0:] <= healthy.max(axis=0) + 0.2).all()
    outs = feed(LagEstimator(n), y, u)
    alarm = column(outs, "alarm")
    assert (alarm[:t0] != Alarm.ALARM).all()
    assert (alarm[t0 : t0 + 60] == Alarm.ALARM).any(axis=0).all()  # every point, soon
    assert (alarm[t0:] == Alarm.ALARM).mean() > 0.8  # and it stays: nothing relearns it


def test_a_single_spike_in_the_output_neither_alarms_nor_drags() -> None:
    rng = np.random.default_rng(22)
    n = 8
    y, u = system(rng, 1000, n, tau=np.linspace(3.0, 60.0, n))
    sign = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    hits = np.arange(100, 1000, 60)
    runs = []
    for size in (25.0, 50.0):  # sigmas of the noise (0.05), one sample every 60 ticks
        spiked = y.copy()
        spiked[hits] += size * 0.05 * sign
        runs.append(feed(LagEstimator(n), spiked, u))
    plain = feed(LagEstimator(n), y, u)
    for outs in runs:
        assert (column(outs, "alarm") != Alarm.ALARM).all()
        score, nis = column(outs, "score"), column(outs, "nis")
        assert (score[hits] > 10).all()  # still reported
        # the pair after it is predicted from the spike's prediction, not from the spike (which
        # would give a nis of about a^2 times the spike's)
        assert (nis[hits + 1] < 0.1 * nis[hits]).all()
    # winsorized onto the bound: a spike twice as large moves nothing further
    for a, b in zip(*runs, strict=True):
        for f in ("estimate", "gain", "tau"):
            np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-12, err_msg=f)
    for f in ("gain", "tau"):
        np.testing.assert_allclose(getattr(runs[0][-1], f), getattr(plain[-1], f), rtol=0.02)
    one = y.copy()
    one[100] += 25.0 * 0.05
    alarm = column(feed(LagEstimator(n, alarm_on=1), one, u), "alarm")
    assert (alarm[100] == Alarm.ALARM).all()  # alarm_on = 1 still alarms on one sample


def test_heavy_tailed_noise_rarely_alarms() -> None:
    rng = np.random.default_rng(23)
    ticks, n = 3000, 20
    u = driving_input(rng, ticks, n)
    shocks = np.zeros(u.shape)
    shocks[:, 10:] = 0.05 * rng.standard_t(2, (ticks, 10))  # heavy tails of the process
    y = respond(rng, u, tau=np.linspace(3.0, 60.0, n), shocks=shocks)
    # and of the measurement: 1 % spikes of 5-15 sigma
    y[:, :10] += spikes(rng, (ticks, 10), sigma=0.05)
    alarm = column(feed(LagEstimator(n), y, u), "alarm")
    onsets = ((alarm[1:] == Alarm.ALARM) & (alarm[:-1] != Alarm.ALARM)).sum(axis=0)
    # the Gaussian gate gave 53 and 17 here; what is left are mostly two spikes in a row (a
    # change: its pull back is a third outlier)
    assert onsets[:10].sum() <= 10
    assert onsets[10:].sum() <= 4


def test_held_break_still_alarms_on_heavy_tailed_data() -> None:
    rng = np.random.default_rng(24)
    ticks, t0, n = 1600, 1200, 8
    u = driving_input(rng, ticks, n, low=4.0, high=12.0)
    u[t0:] = u[t0 - 400 : t0] * 2.0 / 2.6  # as in the fouled heat exchanger above
    healthy = respond(rng, u[:t0], tau=20.0, gain=2.0)
    fouled = respond(rng, u[t0 - 1 :], tau=20.0, gain=2.6, y_start=healthy[-1])
    y = np.concatenate([healthy, fouled[1:]]) + spikes(rng, u.shape, sigma=0.05)
    alarm = column(feed(LagEstimator(n), y, u), "alarm")
    onsets = ((alarm[1:t0] == Alarm.ALARM) & (alarm[: t0 - 1] != Alarm.ALARM)).sum()
    # two spikes in a row are a change, whose pull back may alarm; the Gaussian gate gave ~20
    assert onsets <= 2
    assert (alarm[t0 : t0 + 60] == Alarm.ALARM).any(axis=0).all()
    assert (alarm[t0:] == Alarm.ALARM).mean() > 0.8


def test_sensor_gaps_are_bridged_by_the_model() -> None:
    rng = np.random.default_rng(10)
    y, u = system(rng, 2000, 4, tau=10.0)
    measured = y.copy()
    measured[1000:1040, 0] = np.nan  # the y sensor drops out
    u_measured = u.copy()
    u_measured[1500:1510, 1] = np.nan  # the input drops out
    qy = good(y.shape)
    qy[1200:1220, 2] = BAD
    outs = feed(LagEstimator(4), measured, u_measured, qy)
    for f in FLOATS:
        assert np.isfinite(column(outs, f)).all()
    alarm = column(outs, "alarm")
    assert (alarm[100:] != Alarm.ALARM).all()
    est = column(outs, "estimate")
    # first tick of the gap: the one-step prediction; then the estimate is held
    assert abs(est[1000, 0] - y[1000, 0]) < 0.3
    assert (est[1001:1040, 0] == est[1000, 0]).all()
    # after the gap: the first good pair is taken as measured, then predictions resume
    assert est[1040, 0] == measured[1040, 0]
    assert abs(est[1041, 0] - y[1041, 0]) < 0.3
    assert column(outs, "score")[1040, 0] == 0.0
    assert column(outs, "score")[1041, 0] > 0.0
    np.testing.assert_allclose(outs[-1].gain, 2.0, rtol=0.1)


def test_input_that_never_varies_does_not_wind_up() -> None:
    rng = np.random.default_rng(11)
    n, excited, frozen = 4, 2000, 40_000
    u = driving_input(rng, excited + frozen + 2000, n)
    u[excited : excited + frozen] = u[excited - 1]  # the load stays put for 40 horizons
    y = respond(rng, u, tau=10.0, gain=2.0)
    est = LagEstimator(n)
    outs = feed(est, y[:excited], u[:excited])
    learnt = outs[-1].gain.copy()
    outs = feed(est, y[excited : excited + frozen], u[excited : excited + frozen])
    # unregularised, the information about b would have decayed by exp(-40) ~ 4e-18: the
    # floor keeps the (diagonally scaled) information matrix well away from singular
    state = est.state()
    info = np.empty((n, 3, 3))
    for j, k in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)):
        info[:, j, k] = info[:, k, j] = state[f"info_{j + 1}{k + 1}"]
    scale = 1.0 / np.sqrt(np.diagonal(info, axis1=1, axis2=2))
    smallest = np.linalg.eigvalsh(info * scale[:, :, None] * scale[:, None, :])[:, 0]
    assert (smallest > 1e-10).all()
    assert (smallest < 1e-6).all()  # the floor, not the data, holds it up
    # and forgetting did not erase the gain: it still predicts what the moving load will do
    np.testing.assert_allclose(outs[-1].gain, learnt, rtol=0.03)
    outs = feed(est, y[excited + frozen :], u[excited + frozen :])
    assert (column(outs, "alarm") == Alarm.ALARM).mean() < 1e-3
    np.testing.assert_allclose(outs[-1].gain, 2.0, rtol=0.1)


def test_input_constant_from_the_start() -> None:
    rng = np.random.default_rng(12)
    u = np.full((3000, 3), 7.0)
    y = 20.0 + rng.normal(0.0, 0.5, u.shape)
    outs = feed(LagEstimator(3), y, u)
    for f in FLOATS:
        assert np.isfinite(column(outs, f)).all()
    assert (column(outs, "alarm") == Alarm.ALARM).mean() < 1e-3
    est = column(outs, "estimate")[100:]
    assert np.abs(est - 20.0).max() < 0.5  # white noise: the best prediction is its mean


def test_alarm_clears_after_the_fault_and_resets_cusum() -> None:
    rng = np.random.default_rng(13)
    y, u = system(rng, 600, 1)
    y[300:310, 0] += 2.0  # a short disturbance
    est = LagEstimator(1, alarm_off=5)
    alarm, score, sums = [], [], []
    for t in range(y.shape[0]):
        out = est.update(y[t], u[t], good(1), good(1))
        state = est.state()
        alarm.append(int(out.alarm[0]))
        score.append(float(out.score[0]))
        sums.append((state["cusum_pos"][0], state["cusum_neg"][0]))
    raised = alarm.index(Alarm.ALARM)
    assert 300 <= raised < 310
    cleared = raised + next(k for k, a in enumerate(alarm[raised:]) if a != Alarm.ALARM)
    assert cleared > 310
    assert all(s < 0.8 for s in score[cleared - 4 : cleared + 1])
    assert sums[cleared] == (0.0, 0.0)
    assert Alarm.ALARM not in alarm[cleared + 20 :]


def test_points_are_independent() -> None:
    rng = np.random.default_rng(14)
    y, u = system(rng, 400, 5)
    broken = y.copy()
    broken[200:, 2] += 4.0
    u_bad = u.copy()
    u_bad[100:120, 2] = np.nan
    plain = feed(LagEstimator(5), y, u)
    outs = feed(LagEstimator(5), broken, u_bad)
    others = np.arange(5) != 2
    for o, p in zip(outs, plain, strict=True):
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(o, f)[others], getattr(p, f)[others])


def test_state_round_trip_continues_identically(tmp_path: Path) -> None:
    rng = np.random.default_rng(15)
    y, u = system(rng, 300, 6)
    y[150:, 4] += 3.0
    qy = np.where(rng.random(y.shape) < 0.05, BAD, GOOD).astype(np.uint16)
    qu = good(y.shape)
    for split in (10, 45, 160):  # mid-commissioning, just after, mid-alarm
        a = LagEstimator(6, commissioning=30)
        feed(a, y[:split], u[:split], qy[:split], qu[:split])
        saved = a.state()
        assert (saved["alarm"] == Alarm.ALARM).any() == (split == 160)
        np.savez(tmp_path / f"twin-{split}.npz", **saved)  # as a restart would persist it
        with np.load(tmp_path / f"twin-{split}.npz") as stored:
            restored = {k: stored[k] for k in stored.files}
        b = LagEstimator(6, commissioning=30)
        b.load_state(restored)
        for arr in restored.values():
            arr[:] = 0  # the estimator holds copies, not the caller's arrays
        rest = (y[split:], u[split:], qy[split:], qu[split:])
        for ours, theirs in zip(feed(a, *rest), feed(b, *rest), strict=True):
            for f in FIELDS:
                np.testing.assert_array_equal(getattr(ours, f), getattr(theirs, f))
        for k, v in a.state().items():
            np.testing.assert_array_equal(v, b.state()[k])


def test_noise_floor_is_a_parameter_not_state() -> None:
    rng = np.random.default_rng(18)
    y, u = system(rng, 300, 2, noise=0.05)
    y[200:, 1] += 0.3
    floors = np.array([0.5, 0.03])  # above the noise; below it
    a, floored = LagEstimator(2), LagEstimator(2, noise_floor=floors)
    feed(a, y[:61], u[:61])  # to calibration: until then the floor changes nothing
    feed(floored, y[:61], u[:61])
    assert set(floored.state()) == set(a.state())
    for k, v in floored.state().items():
        np.testing.assert_array_equal(v, a.state()[k])
    b = LagEstimator(2, noise_floor=floors)
    b.load_state(a.state())  # saved without a floor: continues as if it always had it
    np.testing.assert_array_equal(b.noise_floor, floors)
    want = feed(floored, y[61:], u[61:])
    for ours, theirs in zip(want, feed(b, y[61:], u[61:]), strict=True):
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(ours, f), getattr(theirs, f))
    unfloored = column(feed(a, y[61:], u[61:]), "nis")
    assert not np.array_equal(column(want, "nis")[:, 0], unfloored[:, 0])  # the floor binds


def test_all_nan_input_gives_no_nan() -> None:
    est = LagEstimator(4)
    u = np.arange(4.0)
    for _ in range(50):
        out = est.update(np.full(4, np.nan), u, good(4), good(4))
        for f in FLOATS:
            assert (getattr(out, f) == 0.0).all(), f
        assert (out.alarm == Alarm.NORMAL).all()
        assert not out.initialized.any()
    assert all(np.isfinite(v).all() for v in est.state().values())


def test_outputs_are_fresh_and_inputs_untouched() -> None:
    est = LagEstimator(2, commissioning=5)
    y = np.array([1.0, 2.0])
    u = np.array([3.0, 4.0])
    q = good(2)
    first = est.update(y, u, q, q)
    kept = first.estimate.copy()
    est.update(np.array([3.0, 4.0]), u, q, q)
    np.testing.assert_array_equal(first.estimate, kept)
    np.testing.assert_array_equal(y, [1.0, 2.0])
    np.testing.assert_array_equal(u, [3.0, 4.0])
    assert first.estimate.dtype == np.float64
    assert first.alarm.dtype == np.uint8
    assert first.initialized.dtype == np.bool_


def test_lossless_conversions_are_accepted() -> None:
    rng = np.random.default_rng(16)
    y, u = system(rng, 40, 3)
    fast = LagEstimator(3, commissioning=5)
    slow = LagEstimator(3, commissioning=5)
    for t in range(40):
        frozen = u[t].copy()
        frozen.flags.writeable = False
        a = fast.update(y[t], u[t], good(3), good(3))
        b = slow.update(list(y[t]), frozen, [0, 0, 0], np.zeros(3, dtype=np.int64))
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    out = slow.update(
        np.array([1, 2, 3], dtype=np.int32), u[0].astype(np.float32), [0, 1, 0], [0] * 3
    )
    assert out.residual[1] == 0.0


def test_reused_output_matches_fresh_outputs() -> None:
    rng = np.random.default_rng(18)
    y, u = system(rng, 120, 3)
    y[50:53, 1] = np.nan
    fresh = LagEstimator(3, commissioning=10)
    reused = LagEstimator(3, commissioning=10)
    out = reused.new_output()
    for t in range(y.shape[0]):
        want = fresh.update(y[t], u[t], good(3), good(3))
        got = reused.update(y[t], u[t], good(3), good(3), out=out)
        assert got is out
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(got, f), getattr(want, f))
    assert out.initialized.dtype == np.bool_
    for k, v in fresh.state().items():
        np.testing.assert_array_equal(reused.state()[k], v)


def test_out_from_elsewhere_is_rejected() -> None:
    est, other = LagEstimator(2), LagEstimator(2)
    before = est.state()
    look_alike = LagOutput(*est.new_output())  # same arrays, another object
    z = np.zeros(2)
    for out in (other.new_output(), look_alike):
        with pytest.raises(ValueError, match="new_output"):
            est.update(z, z, good(2), good(2), out=out)
    for k, v in est.state().items():
        np.testing.assert_array_equal(v, before[k])


def test_strided_and_foreign_layouts_match_contiguous() -> None:
    # the kernel takes only C-contiguous writable float64/uint16: the others are converted
    rng = np.random.default_rng(19)
    y, u = system(rng, 80, 3)
    wide_y = np.repeat(y, 2, axis=1)  # every other column: strided views
    wide_u = np.asfortranarray(np.repeat(u, 2, axis=1))
    wide_q = np.zeros((80, 6), np.uint16)
    fast = LagEstimator(3, commissioning=10)
    slow = LagEstimator(3, commissioning=10)
    for t in range(y.shape[0]):
        a = fast.update(y[t], u[t], good(3), good(3))
        b = slow.update(wide_y[t, ::2], wide_u[t, ::2], wide_q[t, ::2], wide_q[t, 1::2])
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"commissioning": 4},
        {"horizon": 9},
        {"horizon": 1e3},
    ],
)
def test_invalid_arguments_raise(kwargs: dict[str, Any]) -> None:
    args = {"n_points": 3, **kwargs}
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LagEstimator(**args)


Z3 = np.zeros(3)
Q3 = np.zeros(3, np.uint16)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((np.zeros(4), Z3, Q3, Q3), "values"),
        ((Z3, np.zeros(2), Q3, Q3), "inputs"),
        ((Z3, np.zeros((3, 1)), Q3, Q3), "inputs"),
        ((np.zeros(3, np.complex128), Z3, Q3, Q3), "values"),
        ((Z3, np.array(["1", "2", "3"]), Q3, Q3), "inputs"),
        ((Z3, np.array([2**60, 0, 0]), Q3, Q3), "inputs"),
        ((Z3, Z3, np.zeros(3), Q3), "quality"),
        ((Z3, Z3, Q3, np.zeros(3)), "input_quality"),
        ((Z3, Z3, Q3, np.array([0, -1, 0])), "input_quality"),
        ((Z3, Z3, Q3, np.zeros(4, np.uint16)), "input_quality"),
    ],
)
def test_mismatched_inputs_raise(args: tuple[np.ndarray, ...], name: str) -> None:
    est = LagEstimator(3)
    before = est.state()
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        est.update(*args)
    for k, v in est.state().items():
        np.testing.assert_array_equal(v, before[k])


def _mutations() -> list[tuple[str, Any]]:
    return [
        ("missing", lambda s: s.pop("a")),
        ("extra", lambda s: s.update(extra=np.zeros(3))),
        ("shape", lambda s: s.update(b=np.zeros(4))),
        ("dtype", lambda s: s.update(c=s["c"].astype(np.float32))),
        ("int dtype", lambda s: s.update(alarm=s["alarm"].astype(np.uint8))),
        ("not an array", lambda s: s.update(y0=[0.0, 0.0, 0.0])),
        ("nan", lambda s: s["a"].__setitem__(0, np.nan)),
        ("inf", lambda s: s["info_22"].__setitem__(0, np.inf)),
        ("negative noise", lambda s: s["resid_sq_mean"].__setitem__(1, -1.0)),
        ("negative cusum", lambda s: s["cusum_neg"].__setitem__(1, -1.0)),
        ("zero information", lambda s: s["info_33"].__setitem__(2, 0.0)),
        ("indefinite information", lambda s: s["info_12"].__setitem__(0, 1e6 * s["info_11"][0])),
        ("alarm range", lambda s: s["alarm"].__setitem__(2, 3)),
        ("chain range", lambda s: s["chain"].__setitem__(2, 3)),
        (
            "winsorized before calibration",
            lambda s: s.update(chain=np.full(3, 2), calibrated=np.zeros(3, np.int64)),
        ),
        ("negative count", lambda s: s["n_learnt"].__setitem__(2, -1)),
        ("chain without seed", lambda s: s["seeded"].__setitem__(1, 0)),
    ]


@pytest.mark.parametrize(("name", "mutate"), _mutations())
def test_load_state_rejects_mismatch(name: str, mutate: Any) -> None:
    rng = np.random.default_rng(17)
    y, u = system(rng, 40, 3)
    est = LagEstimator(3, commissioning=10)
    feed(est, y, u)
    state = est.state()
    mutate(state)
    target = LagEstimator(3, commissioning=10)
    before = target.state()
    with pytest.raises(ValueError, match="state"):
        target.load_state(state)
    for k, v in target.state().items():  # nothing was half-loaded
        np.testing.assert_array_equal(v, before[k], err_msg=name)


def test_fresh_state_loads() -> None:
    est = LagEstimator(5)
    est.load_state(LagEstimator(5).state())
    empty = LagEstimator(1)
    empty.load_state(empty.state())


def test_warmup_writes_the_kernel_cache_next_to_the_source() -> None:
    source = Path(_lag_kernel.__file__)
    if "NUMBA_CACHE_DIR" in os.environ or not os.access(source.parent, os.W_OK):
        pytest.skip("package directory is read-only; numba falls back to a user cache dir")
    warmup()
    index = list((source.parent / "__pycache__").glob("_lag_kernel.lag_update-*.nbi"))
    assert index, "numba did not cache the kernel"
