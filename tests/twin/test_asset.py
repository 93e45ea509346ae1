"""Asset estimator: the Numba kernel against a slow NumPy reference, and behaviour."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgetwin.core.types import Alarm, Quality
from edgetwin.twin import _asset_kernel
from edgetwin.twin.asset import (
    AssetEstimator,
    AssetOutput,
    effective_samples,
    t2_bound,
    warmup,
)

BAD = int(Quality.COMM_FAIL)
FIELDS = ("score", "t2", "alarm", "initialized", "contribution", "residual")

# ---------------------------------------------------------------------------------------------
# Reference: one asset at a time, np.linalg, straight from the documented semantics.
# ---------------------------------------------------------------------------------------------


class ReferenceAsset:
    """The asset model of one asset."""

    def __init__(
        self,
        k: int,
        *,
        commissioning: int = 600,
        smoothing: float = 10.0,
        threshold: float | None = None,
        shrinkage: float = 0.2,
        baseline_horizon: float = 1000.0,
        cov_horizon: float = 86400.0,
        recovery: float = 0.5,
        settle: int = 120,
        alarm_on: int = 3,
        alarm_off: int = 30,
        fast_smoothing: float = 3.0,
        fast_threshold: float | None = None,
        recovery_off: int = 5,
    ) -> None:
        self.k = k
        self.commissioning = commissioning
        self.alpha = 1.0 if smoothing == 0 else 1.0 - math.exp(-1.0 / smoothing)
        self.fast_alpha = 1.0 if fast_smoothing == 0 else 1.0 - math.exp(-1.0 / fast_smoothing)
        self.burn = min(int(3 * smoothing), commissioning // 4)
        self.fast_burn = min(int(3 * fast_smoothing), commissioning // 4)
        assert threshold is not None
        self.threshold = threshold
        if fast_threshold is None:
            a = self.fast_alpha
            n_fast = (commissioning - self.fast_burn) * a / (2 - a)
            fast_threshold = t2_bound(k, n_fast, 0.999) if n_fast > k + 1 else math.inf
        self.fast_threshold = fast_threshold
        self.shrinkage = shrinkage
        self.base_w = 0.0 if baseline_horizon == 0 else 1.0 / baseline_horizon
        self.cov_w = 0.0 if cov_horizon == 0 else 1.0 / cov_horizon
        self.recovery = recovery
        self.recovery_off = recovery_off
        self.settle = settle
        self.alarm_on = alarm_on
        self.alarm_off = alarm_off
        self.n = 0
        self.mean = np.zeros(k)  # running mean of the commissioning samples
        self.smoothed: list[np.ndarray] = []  # e after the burn-in
        self.fast: list[np.ndarray] = []  # f after its burn-in
        self.e = np.zeros(k)
        self.f = np.zeros(k)
        self.b = np.zeros(k)
        self.home = np.zeros(k)  # the commissioned baseline, kept while away from it
        self.away = False
        self.transit = 0  # ticks over the bound on the way home
        self.cov = np.eye(k)
        self.fast_cov = np.eye(k)
        self.calibrated = False
        self.alarm = Alarm.NORMAL
        self.streak = 0
        self.recovering = 0
        self.signature = np.zeros(k)
        self.n_alarm = 0
        self.settle_left = 0
        self.margin = math.inf  # closest a statistic came to a decision boundary

    def step(self, x: np.ndarray, q: np.ndarray) -> tuple[Any, ...]:
        k = self.k
        with np.errstate(invalid="ignore"):
            good = (q == 0) & (np.abs(x) <= 1e100)
        zeros = (0.0, 0.0, int(self.alarm), self.calibrated, np.zeros(k), np.zeros(k))
        if not self.calibrated:
            if good.all():
                self.commission(x)
            return (*zeros[:3], self.calibrated, *zeros[4:])
        if not good.any():
            return zeros
        self.e[good] += self.alpha * (x[good] - self.e[good])
        self.f[good] += self.fast_alpha * (x[good] - self.f[good])
        if self.settle_left > 0:
            self.settle_left -= 1
            left, half = self.settle_left, self.settle // 2
            self.b = self.e.copy() if left >= half else self.b + (self.e - self.b) / (half - left)
            return zeros
        prec = self.inverse(self.cov)
        d = self.e - self.b
        g = prec @ d
        t2 = max(0.0, float(d @ g))
        df = self.f - self.b
        fast_t2 = max(0.0, float(df @ self.inverse(self.fast_cov) @ df))
        score = max(t2 / self.threshold, fast_t2 / self.fast_threshold)
        was_alarm = self.alarm == Alarm.ALARM
        moving = self.transit > 0
        if self.away:
            dh, dfh = self.e - self.home, self.f - self.home
            fast_prec = self.inverse(self.fast_cov)
            home_t2 = max(0.0, float(dh @ prec @ dh))
            home_fast_t2 = max(0.0, float(dfh @ fast_prec @ dfh))
            home_score = max(home_t2 / self.threshold, home_fast_t2 / self.fast_threshold)
            self.note(home_score, score)
            if home_score < score:
                self.b, self.away = self.home.copy(), False
                d, df, g, t2, score = dh, dfh, prec @ dh, home_t2, home_score
                self.n_alarm = self.recovering = 0  # a running ALARM's signature restarts
                self.signature = np.zeros(k)
                moving = True
            elif not moving and not was_alarm and score >= 1:
                lean = float(df @ fast_prec @ (self.home - self.b))
                self.note(lean, 0.0)
                moving = lean > 0
        self.note(score, 1.0)
        in_transit = moving and not was_alarm and score >= 1
        self.transit = self.transit + 1 if in_transit else 0
        held = in_transit and self.transit <= self.burn
        if held:  # not yet an alarm, and not a tick towards one
            self.alarm, self.streak, cleared = Alarm.WARNING, 0, False
        else:
            cleared = self.alarm_machine(score, d, df, prec)
        if cleared and self.settle > 0:
            self.settle_left = self.settle
            self.alarm = Alarm.NORMAL
            if not self.away:
                self.home, self.away = self.b.copy(), True
            self.b = self.e.copy()
        elif not cleared and good.all() and self.alarm != Alarm.ALARM and score < 1:
            self.b = self.b + self.base_w * (self.e - self.b)
            self.cov = (1 - self.cov_w) * self.cov + self.cov_w * np.outer(d, d)
            self.fast_cov = (1 - self.cov_w) * self.fast_cov + self.cov_w * np.outer(df, df)
        contribution = d * g / t2 if t2 > 0 else np.zeros(k)
        with np.errstate(invalid="ignore", divide="ignore"):  # only for data not compared
            residual = g / np.diag(prec)
        return score, t2, int(self.alarm), True, contribution, residual

    def commission(self, x: np.ndarray) -> None:
        self.n = n = self.n + 1
        self.mean += (x - self.mean) / n
        self.e = x.copy() if n == 1 else self.e + self.alpha * (x - self.e)
        self.f = x.copy() if n == 1 else self.f + self.fast_alpha * (x - self.f)
        if n > self.burn:
            self.smoothed.append(self.e.copy())
        if n > self.fast_burn:
            self.fast.append(self.f.copy())
        if n < self.commissioning:
            return
        floor = np.maximum(1e-12, (1e-6 * self.mean) ** 2)

        def covariance(rows: list[np.ndarray]) -> np.ndarray:
            cov = np.cov(np.array(rows).T, bias=True).reshape(self.k, self.k)
            out = (1 - self.shrinkage) * cov
            np.fill_diagonal(out, np.maximum(np.diag(cov), floor))
            return out

        self.cov = covariance(self.smoothed)
        self.fast_cov = covariance(self.fast)
        self.b = self.mean.copy()
        self.calibrated = True

    def alarm_machine(self, score: float, d: np.ndarray, df: np.ndarray, prec: np.ndarray) -> bool:
        """The documented alarm machine; True when an ALARM clears at this tick."""
        if self.alarm == Alarm.ALARM:
            self.n_alarm += 1
            self.signature = self.signature + (d - self.signature) / self.n_alarm
            s = self.signature
            q = float(s @ prec @ s)
            r = float(df @ prec @ s) / q if q > 0 else 0.0
            self.note(r, self.recovery)
            self.recovering = self.recovering + 1 if r < self.recovery else 0
            self.note(score, 0.8)
            self.streak = self.streak + 1 if score < 0.8 else 0
            if self.streak >= self.alarm_off or self.recovering >= self.recovery_off:
                self.note(score, 0.5)
                self.alarm = Alarm.WARNING if score >= 0.5 else Alarm.NORMAL
                self.streak = 0
                return True
            return False
        self.note(score, 1.0)
        self.note(score, 0.5)
        self.streak = self.streak + 1 if score >= 1 else 0
        if self.streak >= self.alarm_on:
            self.alarm = Alarm.ALARM
            self.streak = 0
            self.recovering = 0
            self.signature = d.copy()
            self.n_alarm = 1
        else:
            self.alarm = Alarm.WARNING if score >= 0.5 else Alarm.NORMAL
        return False

    def inverse(self, cov: np.ndarray) -> np.ndarray:
        """P = S^-1; a nearly singular S (learnt from one repeated deviation) is not comparable."""
        scale = 1.0 / np.sqrt(np.diag(cov))
        if not np.linalg.cond(cov * np.outer(scale, scale)) < 1e8:  # of the correlation
            self.margin = 0.0  # rounding decides the result: such data are not compared
            return np.linalg.pinv(cov)
        return np.linalg.inv(cov)

    def note(self, value: float, level: float) -> None:
        self.margin = min(self.margin, abs(value - level) / max(abs(level), 1e-3))


def run_reference(
    values: np.ndarray, quality: np.ndarray, **params: Any
) -> tuple[dict[str, np.ndarray], float]:
    """Every asset through its own reference; outputs (ticks, assets[, points]) and margin."""
    ticks, n, k = values.shape
    out: dict[str, list[list[Any]]] = {f: [[] for _ in range(ticks)] for f in FIELDS}
    margin = math.inf
    for i in range(n):
        ref = ReferenceAsset(k, **params)
        for t in range(ticks):
            for f, v in zip(FIELDS, ref.step(values[t, i], quality[t, i]), strict=True):
                out[f][t].append(v)
        margin = min(margin, ref.margin)
    return {f: np.array(v) for f, v in out.items()}, margin


def run_kernel(
    values: np.ndarray, quality: np.ndarray, est: AssetEstimator | None = None, **params: Any
) -> dict[str, np.ndarray]:
    """Feed ticks to an AssetEstimator; outputs shaped (ticks, assets[, points])."""
    est = est or AssetEstimator(values.shape[1], values.shape[2], **params)
    outs = [est.update(values[t], quality[t]) for t in range(values.shape[0])]
    return {f: np.array([getattr(o, f) for o in outs]) for f in FIELDS}


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    for f in ("score", "t2", "contribution", "residual"):
        assert np.isfinite(got[f]).all(), f
        g, w = got[f], want[f]
        if f == "contribution":  # shares of a t2 that is only rounding are not defined
            defined = want["t2"] > 1e-9 * max(1.0, float(want["t2"].max(initial=0.0)))
            g, w = g[defined], w[defined]
        scale = max(1.0, float(np.abs(w).max(initial=0.0)))
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-9 * scale, err_msg=f)
    np.testing.assert_array_equal(got["alarm"], want["alarm"])
    np.testing.assert_array_equal(got["initialized"], want["initialized"].astype(bool))


def compare(values: np.ndarray, quality: np.ndarray, **params: Any) -> dict[str, np.ndarray]:
    want, margin = run_reference(values, quality, **params)
    assert margin > 1e-6, "a score sits on a decision boundary; pick other data"
    got = run_kernel(values, quality, **params)
    assert_same(got, want)
    return got


def good(shape: tuple[int, ...]) -> np.ndarray:
    return np.zeros(shape, dtype=np.uint16)


def correlated(
    rng: np.random.Generator, ticks: int, n: int, k: int, phi: float = 0.0
) -> np.ndarray:
    """Points driven by one common factor (AR(1), sd 2) plus white noise: (ticks, n, k)."""
    shocks = rng.normal(0.0, 2.0 * math.sqrt(1.0 - phi * phi), (ticks, n, 1))
    common = np.zeros((ticks, n, 1))
    common[0] = rng.normal(0.0, 2.0, (n, 1))
    for t in range(1, ticks):
        common[t] = phi * common[t - 1] + shocks[t]
    return 10.0 + common + rng.normal(0.0, 0.5, (ticks, n, k))


SMALL = {
    "commissioning": 40,
    "smoothing": 3.0,
    "threshold": 12.5,
    "settle": 7,
    "fast_smoothing": 1.0,
    "fast_threshold": 20.0,
    "recovery_off": 3,
}

# ---------------------------------------------------------------------------------------------
# Kernel against reference
# ---------------------------------------------------------------------------------------------


def test_correlated_data_with_faults_match_reference() -> None:
    rng = np.random.default_rng(1)
    x = correlated(rng, 400, 3, 4)
    x[150:260, 0, 2] += 4.0  # a shift that comes back: raise, recover, re-learn
    x[200:, 1, 0] = 20.0 - x[200:, 1, 0]  # a point decouples for good
    x[100:, 2, 1] += np.minimum(0.2 * np.arange(300), 8.0)  # a ramp of one point
    got = compare(x, good(x.shape), **SMALL, cov_horizon=50.0, alarm_on=2, alarm_off=5)
    assert (got["alarm"] == Alarm.ALARM).any(axis=0).all()  # the paths were exercised


def test_long_run_through_precision_refreshes_matches_reference() -> None:
    rng = np.random.default_rng(2)
    x = correlated(rng, 1400, 2, 3)
    qual = np.where(rng.random(x.shape) < 0.02, BAD, 0).astype(np.uint16)
    # hundreds of rank-1 updates with a short horizon, across several exact recomputations
    compare(x, qual, **SMALL, cov_horizon=20.0, baseline_horizon=30.0)


def test_nan_inf_and_bad_quality_match_reference() -> None:
    rng = np.random.default_rng(3)
    x = correlated(rng, 300, 2, 5)
    qual = good(x.shape)
    mask = rng.random(x.shape)
    x[mask < 0.03] = np.nan
    x[(mask >= 0.03) & (mask < 0.05)] = np.inf
    x[(mask >= 0.05) & (mask < 0.06)] = -np.inf
    x[(mask >= 0.06) & (mask < 0.07)] = 1e300  # finite but unusable
    qual[(mask >= 0.07) & (mask < 0.12)] = int(Quality.STALE | Quality.OUT_OF_RANGE)
    x[150:170, 0, :] = np.nan  # an outage of the whole asset
    x[200:260, 1, 3] = 30.0  # a stuck point, to raise an alarm among the gaps
    got = compare(x, qual, **SMALL, alarm_off=4)
    assert (got["alarm"] == Alarm.ALARM).any()


@pytest.mark.parametrize("level", [0.0, 3.25, -1e6, 1e-9])
def test_constant_data_matches_reference(level: float) -> None:
    x = np.full((100, 2, 3), level)
    got = compare(x, good(x.shape), **SMALL)
    assert (got["score"] == 0.0).all()
    assert (got["alarm"] == Alarm.NORMAL).all()
    assert (got["contribution"] == 0.0).all()


def test_one_constant_point_among_moving_ones_matches_reference() -> None:
    rng = np.random.default_rng(4)
    x = correlated(rng, 200, 1, 3)
    x[:, 0, 1] = 7.0
    got = compare(x, good(x.shape), **SMALL)
    assert np.isfinite(got["residual"]).all()


def test_no_smoothing_and_frozen_horizons_match_reference() -> None:
    rng = np.random.default_rng(5)
    x = correlated(rng, 200, 2, 2)
    x[120:, 0, 0] += 3.0
    frozen = {"smoothing": 0.0, "baseline_horizon": 0.0, "cov_horizon": 0.0, "settle": 0}
    got = compare(x, good(x.shape), **{**SMALL, **frozen}, alarm_on=1, alarm_off=1)
    assert (got["alarm"] == Alarm.ALARM).any()


values_strategy = st.one_of(
    st.floats(-1e3, 1e3),
    st.sampled_from([0.0, 1.0, -2.5, math.nan, math.inf, -math.inf, 1e101, -1e300]),
)


@st.composite
def batches(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    ticks = draw(st.integers(1, 60))
    n = draw(st.integers(1, 3))
    k = draw(st.integers(1, 4))
    x = draw(hnp.arrays(np.float64, (ticks, n, k), elements=values_strategy))
    qual = draw(hnp.arrays(np.uint16, (ticks, n, k), elements=st.sampled_from([0, 0, 0, 0, 1])))
    params = {
        "commissioning": draw(st.integers(2, 10)),
        "smoothing": draw(st.sampled_from([0.0, 0.7, 2.5])),
        "threshold": draw(st.floats(0.3, 30.0)),
        "shrinkage": draw(st.floats(0.1, 1.0)),
        "baseline_horizon": draw(st.sampled_from([0.0, 1.0, 7.0])),
        "cov_horizon": draw(st.sampled_from([0.0, 2.0, 9.0])),
        "recovery": draw(st.floats(0.0, 0.9)),
        "settle": draw(st.integers(0, 4)),
        "alarm_on": draw(st.integers(1, 3)),
        "alarm_off": draw(st.integers(1, 3)),
        "fast_smoothing": draw(st.sampled_from([0.0, 0.4, 1.5])),
        "fast_threshold": draw(st.one_of(st.none(), st.floats(0.3, 30.0))),
        "recovery_off": draw(st.integers(1, 3)),
    }
    return x, qual, params


@settings(max_examples=80, deadline=None)
@given(batches())
def test_hypothesis_arrays_match_reference(
    batch: tuple[np.ndarray, np.ndarray, dict[str, Any]],
) -> None:
    x, qual, params = batch
    want, margin = run_reference(x, qual, **params)
    assume(margin > 1e-6)  # rounding may fall either side of a boundary, or decide it all
    assert_same(run_kernel(x, qual, **params), want)


# ---------------------------------------------------------------------------------------------
# Behaviour
# ---------------------------------------------------------------------------------------------


def test_correlated_gaussian_data_alarm_rarely() -> None:
    rng = np.random.default_rng(6)
    x = correlated(rng, 4000, 10, 4)
    got = run_kernel(x, good(x.shape))
    after = got["alarm"][600:]
    assert (after == Alarm.ALARM).mean() < 0.01
    assert got["initialized"][599:].all()
    assert not got["initialized"][:599].any()


def test_a_point_that_decouples_within_its_range_raises_alarm_and_is_named() -> None:
    rng = np.random.default_rng(0)
    x = correlated(rng, 2000, 1, 4, phi=0.9)  # a common factor with memory, like process load
    calib = x[:1200, 0, 2]
    # mirrored about its mean (same marginal distribution), kept inside the range it had
    x[1200:, 0, 2] = np.clip(20.0 - x[1200:, 0, 2], calib.min(), calib.max())
    est = AssetEstimator(1, 4)
    outs = [est.update(x[t], good((1, 4))) for t in range(2000)]
    alarm = np.array([o.alarm[0] for o in outs])
    assert not (alarm[600:1200] == Alarm.ALARM).any()
    # evidence comes whenever the common factor is away from its mean
    over = [o for o in outs[1200:] if o.alarm[0] == Alarm.ALARM and o.score[0] >= 1.0]
    assert len(over) > 100
    assert all(np.argmax(o.contribution[0]) == 2 for o in over)
    assert all(np.argmax(np.abs(o.residual[0])) == 2 for o in over)
    for o in over:
        assert o.contribution[0].sum() == pytest.approx(1.0)


def test_alarm_clears_on_recovery_to_a_new_operating_point_and_relearns() -> None:
    rng = np.random.default_rng(8)
    x = correlated(rng, 1600, 1, 3)
    x[800:1000, 0, 0] += 10.0  # the fault
    x[1000:, 0, 0] += 1.5  # after it the asset runs a little differently, for good
    got = run_kernel(x, good(x.shape), alarm_on=1)
    alarm = got["alarm"][:, 0]
    assert (alarm[820:1000] == Alarm.ALARM).all()
    assert not (alarm[1100:] == Alarm.ALARM).any()
    cleared = 1000 + int(np.argmax(alarm[1000:] != Alarm.ALARM))
    assert got["score"][cleared, 0] > 1.0  # cleared as the fault's signature faded, not by level
    assert (got["score"][cleared + 1 : cleared + 121, 0] == 0.0).all()  # re-learning
    assert (got["score"][cleared + 121 :, 0] > 0.0).all()


def away_and_back(tail: float) -> np.ndarray:
    """A fault, a re-learnt operating point 4 above home, then ``tail`` above home."""
    rng = np.random.default_rng(8)
    x = correlated(rng, 2000, 1, 3)
    x[800:1000, 0, 0] += 10.0  # the fault; it fades to ...
    x[1000:1500, 0, 0] += 4.0  # ... a new operating point, re-learnt after the alarm clears
    x[1500:, 0, 0] += tail
    return x


def test_a_return_home_after_a_relearnt_operating_point_is_not_an_alarm() -> None:
    x = away_and_back(0.0)  # back where it was commissioned
    got = compare(x, good(x.shape), alarm_on=1, threshold=AssetEstimator(1, 3).threshold)
    alarm, score = got["alarm"][:, 0], got["score"][:, 0]
    assert (alarm[820:1000] == Alarm.ALARM).all()
    assert (score[1010:1129] == 0.0).all()  # re-learning the new operating point ...
    assert not (alarm[1130:] == Alarm.ALARM).any()  # ... and coming home raise nothing
    assert (score[1502:1506] >= 1.0).all()  # although the step scores over the bound ...
    assert score[1600:].max() < 1.0  # ... until the asset is scored against home
    # the same step the other way, away from home, is an alarm within seconds
    further = away_and_back(8.0)
    raised = run_kernel(further, good(further.shape), alarm_on=1)["alarm"][:, 0]
    assert (raised[1500:1510] == Alarm.ALARM).any()


def test_a_fault_still_there_when_scored_against_home_again_is_alarmed() -> None:
    x = away_and_back(1.5)  # closer to home than to the re-learnt point, and not home
    got = compare(x, good(x.shape), alarm_on=1, threshold=AssetEstimator(1, 3).threshold)
    alarm = got["alarm"][:, 0]
    assert not (alarm[1130:1500] == Alarm.ALARM).any()
    first = 1500 + int(np.argmax(alarm[1500:] == Alarm.ALARM))
    assert 1500 + 20 <= first <= 1500 + 30 + 10  # held while it may still be on its way home
    assert (alarm[first:] == Alarm.ALARM).all()
    assert (got["alarm"][1500:first, 0] == Alarm.WARNING).any()


def test_fast_statistic_raises_a_step_seconds_before_the_smoothed_score() -> None:
    rng = np.random.default_rng(14)
    x = correlated(rng, 1600, 1, 4)
    x[1300:, 0, 1] += 3.0  # a step of six noise sigmas in one point
    params = {"alarm_on": 1, "smoothing": 30.0, "commissioning": 1200}
    slow_only = run_kernel(x, good(x.shape), **params, fast_threshold=1e300)["alarm"][:, 0]
    both = run_kernel(x, good(x.shape), **params)["alarm"][:, 0]
    assert not (both[:1300] == Alarm.ALARM).any()
    assert (slow_only[1300:] == Alarm.ALARM).any()
    first_slow = int(np.argmax(slow_only[1300:] == Alarm.ALARM))
    first_both = int(np.argmax(both[1300:] == Alarm.ALARM))
    assert first_both + 4 <= first_slow


def test_an_alarm_clears_once_its_signature_has_faded() -> None:
    rng = np.random.default_rng(15)
    x = correlated(rng, 1200, 1, 3)
    x[800:1000, 0, 2] += 8.0  # the fault, then the asset is back where it was
    params = {"alarm_on": 1, "alarm_off": 10_000}  # only the recovery rule can clear
    got = run_kernel(x, good(x.shape), **params, recovery_off=4)
    alarm = got["alarm"][:, 0]
    assert (alarm[810:1000] == Alarm.ALARM).all()
    cleared = 1000 + int(np.argmax(alarm[1000:] != Alarm.ALARM))
    assert 1000 + 4 <= cleared <= 1000 + 12  # a fast mean of 3 s halves it in about 2 s
    later = run_kernel(x, good(x.shape), **params, recovery_off=40)["alarm"][:, 0]
    assert (later[1000 : cleared + 30] == Alarm.ALARM).all()  # needs 40 faded ticks in a row
    held = run_kernel(x, good(x.shape), **params, recovery_off=10_000)["alarm"][:, 0]
    assert (held[810:] == Alarm.ALARM).all()  # without the rule nothing clears it


def test_bad_values_are_imputed_and_not_learnt() -> None:
    rng = np.random.default_rng(9)
    x = correlated(rng, 700, 1, 3)
    est = AssetEstimator(1, 3)
    for t in range(650):
        est.update(x[t], good((1, 3)))
    before = est.state()
    out = est.update(np.full((1, 3), np.nan), good((1, 3)))
    assert out.score[0] == 0.0
    after = est.state()
    for name, arr in before.items():
        np.testing.assert_array_equal(after[name], arr, err_msg=name)
    garbage = np.array([[1e6, np.inf, -1e300]])
    out = est.update(garbage, np.array([[BAD, 0, 0]], dtype=np.uint16))
    assert out.score[0] == 0.0
    assert np.isfinite(out.residual).all()
    one_bad = np.array([[x[651, 0, 0], np.nan, x[651, 0, 2]]])
    out = est.update(one_bad, good((1, 3)))
    assert np.isfinite(out.score).all()
    np.testing.assert_array_equal(est.state()["baseline"], after["baseline"])  # not learnt


def test_commissioning_waits_for_complete_ticks() -> None:
    est = AssetEstimator(2, 2, commissioning=5, smoothing=0.0, threshold=5.0)
    q = good((2, 2))
    q[1, 0] = BAD
    for _ in range(5):
        out = est.update(np.array([[1.0, 2.0], [1.0, 2.0]]), q)
    assert out.initialized.tolist() == [True, False]


# ---------------------------------------------------------------------------------------------
# Threshold
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "p", "f"),
    [  # F quantiles from published tables: F(p; k, n - k)
        (6, 18, 0.99, 4.821),
        (1, 11, 0.95, 4.965),
        (2, 22, 0.99, 5.849),
        (3, 33, 0.95, 2.922),
    ],
)
def test_t2_bound_matches_f_tables(k: int, n: int, p: float, f: float) -> None:
    factor = k * (n - 1) * (n + 1) / (n * (n - k))
    assert t2_bound(k, n, p) == pytest.approx(factor * f, rel=1e-3)


def test_t2_bound_tends_to_chi_square_for_many_samples() -> None:
    assert t2_bound(2, 1e7, 0.99) == pytest.approx(-2.0 * math.log(0.01), rel=1e-4)


def test_default_threshold_is_the_hotelling_bound() -> None:
    est = AssetEstimator(1, 6, commissioning=400, smoothing=10.0)
    n_eff = effective_samples(400, 10.0)
    assert n_eff == pytest.approx(370 * (1 - math.exp(-0.1)) / (1 + math.exp(-0.1)))
    assert est.threshold == pytest.approx(t2_bound(6, n_eff, 0.99))
    n_fast = effective_samples(400, 3.0)
    assert n_fast == pytest.approx(391 * (1 - math.exp(-1 / 3)) / (1 + math.exp(-1 / 3)))
    assert est.fast_threshold == pytest.approx(t2_bound(6, n_fast, 0.999))


def test_fast_statistic_stays_out_when_commissioning_cannot_bound_it() -> None:
    est = AssetEstimator(1, 8, commissioning=40, threshold=30.0)  # 5 effective samples
    assert est.fast_threshold == math.inf
    rng = np.random.default_rng(13)
    x = correlated(rng, 120, 1, 8)
    x[80:, 0, 3] += 50.0
    got = run_kernel(x, good(x.shape), est=est)
    slow = got["t2"][:, 0] / 30.0
    np.testing.assert_array_equal(got["score"][:, 0], slow)  # the fast part scores 0
    assert (got["alarm"][:, 0] == Alarm.ALARM).any()


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------


def test_state_round_trip_resumes_exactly() -> None:
    rng = np.random.default_rng(10)
    x = correlated(rng, 500, 3, 3)
    x[300:, 1, 0] += 5.0
    a = AssetEstimator(3, 3, **SMALL, cov_horizon=30.0)
    run_kernel(x[:320], good((320, 3, 3)), est=a)
    b = AssetEstimator(3, 3, **SMALL, cov_horizon=30.0)
    b.load_state(a.state())
    rest = x[320:]
    ga = run_kernel(rest, good(rest.shape), est=a)
    gb = run_kernel(rest, good(rest.shape), est=b)
    for f in FIELDS:
        np.testing.assert_array_equal(ga[f], gb[f], err_msg=f)


def test_state_saved_before_home_existed_resumes_at_home() -> None:
    x = away_and_back(0.0)
    a = AssetEstimator(1, 3, alarm_on=1)
    run_kernel(x[:700], good((700, 1, 3)), est=a)  # commissioned, never away
    old = {k: v for k, v in a.state().items() if k not in ("home", "away", "transit")}
    b = AssetEstimator(1, 3, alarm_on=1)
    b.load_state(old)
    np.testing.assert_array_equal(b.state()["home"], a.state()["baseline"])
    assert b.state()["away"].tolist() == [0]
    rest = x[700:]
    ga = run_kernel(rest, good(rest.shape), est=a)
    gb = run_kernel(rest, good(rest.shape), est=b)
    for f in FIELDS:
        np.testing.assert_array_equal(ga[f], gb[f], err_msg=f)
    with pytest.raises(ValueError, match="missing \\['away'\\]"):  # not a partial one
        b.load_state({k: v for k, v in a.state().items() if k != "away"})


def test_state_is_a_copy() -> None:
    est = AssetEstimator(1, 2, **SMALL)
    state = est.state()
    state["baseline"][:] = 99.0
    assert (est.state()["baseline"] == 0.0).all()


def calibrated_state() -> tuple[AssetEstimator, dict[str, np.ndarray]]:
    rng = np.random.default_rng(11)
    x = correlated(rng, 60, 2, 3)
    est = AssetEstimator(2, 3, **SMALL)
    run_kernel(x, good(x.shape), est=est)
    return est, est.state()


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda s: s.pop("signature"), "missing"),
        (lambda s: s.update(extra=np.zeros(2)), "unexpected"),
        (lambda s: s.update(signature=s["signature"].astype(np.float32)), "float64"),
        (lambda s: s.update(alarm=s["alarm"].astype(np.float64)), "int64"),
        (lambda s: s.update(fast=[[0.0] * 3] * 2), "float64"),
        (lambda s: s.update(baseline=np.zeros((2, 4))), "shape"),
        (lambda s: s.update(precision=np.zeros((2, 3))), "shape"),
        (lambda s: s["smoothed"].__setitem__((0, 1), np.nan), "non-finite"),
        (lambda s: s["fast_mean"].__setitem__((1, 2), np.inf), "non-finite"),
        (lambda s: s["n_alarm"].__setitem__(0, -1), "n_alarm"),
        (lambda s: s["recovering"].__setitem__(1, -2), "recovering"),
        (lambda s: s["alarm"].__setitem__(1, 3), "alarm"),
        (lambda s: s["streak"].__setitem__(0, -1), "streak"),
        (lambda s: s["calibrated"].__setitem__(0, 2), "calibrated"),
        (lambda s: s["away"].__setitem__(0, 2), "away"),
        (lambda s: s["transit"].__setitem__(1, -1), "transit"),
        (lambda s: s["updates"].__setitem__(0, 256), "updates"),
        (lambda s: s["n_smoothed"].__setitem__(0, 10**6), "n_smoothed"),
        (lambda s: s["covariance"].__setitem__((0, 0, 1), 99.0), "symmetric"),
        (lambda s: s["precision"].__setitem__((1, 2, 2), -5.0), "positive definite"),
        (lambda s: s["fast_covariance"].__setitem__((1, 0, 2), 9.0), "symmetric"),
        (lambda s: s["fast_precision"].__setitem__((0, 1, 1), -1.0), "positive definite"),
    ],
)
def test_bad_state_is_rejected_without_change(mutate: Any, match: str) -> None:
    est, state = calibrated_state()
    before = est.state()
    mutate(state)
    with pytest.raises(ValueError, match=match):
        est.load_state(state)
    for name, arr in est.state().items():
        np.testing.assert_array_equal(arr, before[name], err_msg=name)


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_assets": 0}, "n_assets"),
        ({"n_points": 0}, "n_points"),
        ({"n_points": 1.5}, "n_points"),
        ({"commissioning": 1}, "commissioning"),
        ({"commissioning": 100}, "lengthen commissioning"),  # default threshold impossible
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": math.nan}, "threshold"),
        ({"smoothing": -1.0}, "smoothing"),
        ({"shrinkage": 0.0}, "shrinkage"),
        ({"shrinkage": 1.5}, "shrinkage"),
        ({"baseline_horizon": 0.5}, "baseline_horizon"),
        ({"cov_horizon": math.inf}, "cov_horizon"),
        ({"recovery": 1.0}, "recovery"),
        ({"settle": -1}, "settle"),
        ({"alarm_on": 0}, "alarm_on"),
        ({"alarm_off": True}, "alarm_off"),
        ({"fast_smoothing": -0.5}, "fast_smoothing"),
        ({"fast_smoothing": math.inf}, "fast_smoothing"),
        ({"fast_threshold": 0.0}, "fast_threshold"),
        ({"fast_threshold": math.nan}, "fast_threshold"),
        ({"recovery_off": 0}, "recovery_off"),
        ({"recovery_off": 2.0}, "recovery_off"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, Any], match: str) -> None:
    args = {"n_assets": 1, "n_points": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        AssetEstimator(args.pop("n_assets"), args.pop("n_points"), **args)


@pytest.mark.parametrize(
    ("values", "quality", "match"),
    [
        (np.zeros(3), good((1, 3)), "values must have shape"),
        (np.zeros((1, 4)), good((1, 3)), "values must have shape"),
        (np.zeros((1, 3), dtype=complex), good((1, 3)), "float64"),
        (np.zeros((1, 3)), np.zeros((1, 3)), "uint16"),
        (np.zeros((1, 3)), np.full((1, 3), -1), "uint16"),
        (np.zeros((1, 3)), good((3, 1)), "quality must have shape"),
    ],
)
def test_bad_update_arguments_are_rejected(values: Any, quality: Any, match: str) -> None:
    est = AssetEstimator(1, 3, **SMALL)
    with pytest.raises(ValueError, match=match):
        est.update(values, quality)


def test_update_returns_fresh_arrays() -> None:
    est = AssetEstimator(1, 2, **SMALL)
    first = est.update(np.ones((1, 2)), good((1, 2)))
    second = est.update(np.ones((1, 2)), good((1, 2)))
    assert isinstance(first, AssetOutput)
    assert first.residual is not second.residual
    assert first.score.shape == (1,)
    assert first.contribution.shape == (1, 2)


def test_invert_spd_matches_numpy() -> None:
    rng = np.random.default_rng(12)
    a = rng.normal(size=(6, 6))
    m = a @ a.T + 0.5 * np.eye(6)
    inv = m.copy()
    _asset_kernel.invert_spd(inv)
    np.testing.assert_allclose(inv, np.linalg.inv(m), rtol=1e-9, atol=1e-12)


def test_warmup_runs() -> None:
    warmup()


def test_away_while_scored_against_a_relearnt_operating_point() -> None:
    x = away_and_back(0.0)
    est = AssetEstimator(1, 3, alarm_on=1)
    away = np.zeros(len(x), dtype=bool)
    for t in range(len(x)):
        est.update(x[t], good((1, 3)))
        away[t] = est.away[0]
        assert est.away.tolist() == (est.state()["away"] == 1).tolist()
    assert est.away.dtype == np.bool_
    assert not away[:1000].any()  # commissioned, then in ALARM: still at home
    assert away[1130:1500].all()  # the operating point re-learnt after the alarm cleared
    assert not away[1600:].any()  # back where it was commissioned
