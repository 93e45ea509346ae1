"""Batched asset estimator: a multivariate model of how one asset's points move together.

Each asset has ``k`` points; a tick gives one sample ``x`` (k values). A value is *good* when
its quality is GOOD (0) and it is finite with ``|x| <= 1e100``; a tick is *complete* when all
``k`` values are good. Two exponentially weighted means of the samples are kept: the smoothed
sample ``e`` with ``a = 1 - exp(-1 / smoothing)`` per tick and the fast one ``f`` with
``a_f = 1 - exp(-1 / fast_smoothing)`` (``1`` for a time constant of 0).

Commissioning: the first ``commissioning`` complete ticks calibrate the asset; ticks that are
not complete are skipped. ``e`` and ``f`` start at the first one's sample. Their mean ``m`` is
kept; after a burn-in of ``burn = min(int(3 smoothing), commissioning // 4)`` ticks each ``e``
feeds a running mean and covariance (population, divided by the count), and after ``min(int(3
fast_smoothing), commissioning // 4)`` ticks each ``f`` feeds another. At the end, for each of
the two: ``S`` = that covariance with its off-diagonal entries multiplied by ``1 - shrinkage``
(shrinkage toward the diagonal) and its diagonal raised to at least ``max(1e-12, (1e-6
m_j)^2)`` (constant points keep a positive variance); ``P = S^-1`` (``S_f``, ``P_f`` for the
fast one). The baseline is ``b = m``. Meanwhile outputs are zero, alarm NORMAL, initialized
False.

Why the smoothed covariance: anomalies that last minutes are found far better in ``e`` than in
single samples, and the covariance of ``e`` measured on the commissioning data already holds
the autocorrelation of real signals. Those few hundred autocorrelated samples are worth only
``n_eff = (commissioning - burn) a / (2 - a)`` independent ones (AR(1) effective sample size),
so the default threshold is Hotelling's prediction bound for a new observation given a mean and
covariance estimated from ``n_eff`` samples (:func:`t2_bound`, 99 %), not a chi-square
quantile, which would be over-confident. The fast statistic reacts within seconds to a clear
step; its default ``fast_threshold`` is the same bound for its own ``n_eff`` at 99.9 %
(it decorrelates faster, so it takes more looks; a ten times smaller tail keeps its false
alarms in line), and when commissioning is too short for that bound the fast statistic never
raises an alarm (its threshold is infinite).

After commissioning, every tick with at least one good value: each good value updates its
``e_j`` and ``f_j``; a bad value is imputed by the model's current ``e_j`` / ``f_j``, which
then stay. Then, while re-learning (see below), the baseline follows and the outputs are zero.
Otherwise: ``d = e - b``, ``g = P d``, ``t2 = max(0, d.g)``; ``d_f = f - b``, ``t2_f = max(0,
d_f' P_f d_f)``; ``score = max(t2 / threshold, t2_f / fast_threshold)`` (1.0 is the alarm
threshold); ``residual_j = g_j / P_jj`` (how far point j is from what the other points predict
for it, in its own unit) and ``contribution_j = d_j g_j / t2`` (they sum to 1; one can be
negative when a point offsets the others; all 0 when ``t2 = 0``).

Alarm: the shared machine of :mod:`edgetwin.twin._detect` on ``score`` (ALARM after
``alarm_on`` consecutive scores >= 1; clears after ``alarm_off`` consecutive ones below the
clear level; WARNING at >= 0.5). The ALARM's *signature* ``s`` is the mean of ``d`` over its
ticks, the raising one included. On each later ALARM tick, before the machine, ``d`` is folded
into ``s`` and the share of the signature the fast deviation still holds is ``r = d_f' P s / s'
P s`` (0 when ``s' P s <= 0``); the alarm also clears, as the machine clears it (to WARNING at
a score >= 0.5, else NORMAL), after ``recovery_off`` consecutive ALARM ticks with ``r <
recovery``: the fault has faded to less than ``recovery`` of itself, the asset is recovering,
possibly to a new operating point, and the fast mean sees it seconds before the score falls.
When an ALARM clears and ``settle > 0`` the model re-learns where the asset now is: the
clearing tick sets ``b = e`` and its state NORMAL; on each of the next ``settle`` ticks with a
good value, with ``L`` of them left after it (``settle - 1`` down to 0) and ``h = settle //
2``, ``b = e`` while ``L >= h``, then ``b += (e - b) / (h - L)``, so that the new baseline is
the mean of ``e`` over the last ``h`` of them, not one noisy snapshot; during those ticks the
score is 0 and the state NORMAL. With ``settle = 0`` nothing is re-learnt.

Home: the first re-learning takes the asset *away* from its commissioned operating point; the
baseline it had before (``b`` when the clearing tick began) is kept as its *home* ``h`` and
stays while the asset is away, however often it re-learns. On every scored tick while away,
``t2``, the fast ``t2`` and the score are also measured against ``h`` (the same precisions and
thresholds); when that score is lower than the one against ``b``, the asset is back home:
``b = h``, it is no longer away, and the tick's ``d``, ``g``, both ``t2``, the score and
everything after them (outputs, alarm machine, learning) are the ones against home; in an
ALARM the signature restarts there (count 0, as if the alarm were raised at this tick, and no
faded ticks). The way home takes the smoothed mean a few time constants, during which the
step scores over the bound against both baselines, so a raise waits: a tick outside ALARM with
``score >= 1`` is *in transit* when the asset is on its way home, i.e. it switched home at this
tick, or the previous tick was in transit, or it is away and the fast deviation leans towards
home (``d_f' P_f (h - b) > 0``). The first ``burn`` consecutive ticks in transit (the slow mean's
settling time, ``min(int(3 smoothing), commissioning // 4)``) are held: state WARNING, and they
do not count towards ``alarm_on``; the outputs are as computed. So a return to where the asset
was commissioned, after a fault that lasted long enough to be re-learnt as an operating point,
is not itself an alarm, and a fault that is still present when the asset is scored against
home again is alarmed against home, up to ``burn`` ticks later than it would be elsewhere.

Learning: on a complete tick that is not in ALARM with ``score < 1`` (and did not just clear an
ALARM), after scoring: ``b += (e - b) / baseline_horizon``, ``S = (1 - w) S + w d d'`` and
``S_f = (1 - w) S_f + w d_f d_f'`` with ``w = 1 / cov_horizon`` (``d``, ``d_f`` from before
``b`` moved), ``P`` and ``P_f`` following by rank-1 (Sherman-Morrison) updates and recomputed
from ``S``, ``S_f`` every 256 updates. A horizon of 0 freezes that part. A tick without any good
value changes nothing (alarm state and counters stay) and outputs zeros. Outputs are always
finite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgetwin.core.smoothing import burn_in, effective_samples, smoothing_alpha
from edgetwin.core.types import FloatArray
from edgetwin.twin import _asset_kernel as _k
from edgetwin.twin._detect import ALARMED
from edgetwin.twin._validate import as_quality, as_values, finite_float, positive_int

BOUND_PROBABILITY = 0.99  # coverage of the default threshold (Hotelling prediction bound)
FAST_BOUND_PROBABILITY = 0.999  # the same for the default fast_threshold


@dataclass(frozen=True, slots=True)
class AssetOutput:
    """Per-asset output of one update; the arrays are fresh and safe to keep."""

    score: FloatArray  # (n_assets,) max(t2 / threshold, fast t2 / fast_threshold)
    t2: FloatArray  # (n_assets,)
    alarm: npt.NDArray[np.uint8]  # (n_assets,) Alarm
    initialized: npt.NDArray[np.bool_]  # (n_assets,) commissioning has ended
    contribution: FloatArray  # (n_assets, n_points) share of t2 per point, sums to 1
    residual: FloatArray  # (n_assets, n_points) value minus what the other points predict


def t2_bound(n_points: int, n_eff: float, probability: float = BOUND_PROBABILITY) -> float:
    """Hotelling's T² prediction bound: k(n-1)(n+1) / (n(n-k)) F⁻¹(p; k, n-k), for n > k."""
    k = positive_int("n_points", n_points, 1)
    n = float(n_eff)
    if not n > k:
        raise ValueError(f"the bound needs more than {k} effective samples, got {n:.4g}")
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {probability!r}")
    return k * (n - 1.0) * (n + 1.0) / (n * (n - k)) * _f_quantile(probability, k, n - k)


def _f_quantile(p: float, d1: float, d2: float) -> float:
    # P(F <= f) = I_y(d1/2, d2/2) with y = d1 f / (d1 f + d2); bisect on y
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _betainc(0.5 * d1, 0.5 * d2, mid) < p:
            lo = mid
        else:
            hi = mid
    y = 0.5 * (lo + hi)
    return d2 * y / (d1 * (1.0 - y))


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) (continued fraction, Lentz's method)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for aa in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


class AssetEstimator:
    """Multivariate score, contributions and alarm for ``n_assets`` assets of ``n_points``."""

    def __init__(
        self,
        n_assets: int,
        n_points: int,
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
        self._n = positive_int("n_assets", n_assets, 1)
        self._k = positive_int("n_points", n_points, 1)
        self._commissioning = positive_int("commissioning", commissioning, 2)
        smoothing = finite_float("smoothing", smoothing, allow_zero=True)
        self._alpha = smoothing_alpha(smoothing)
        self._burn = burn_in(self._commissioning, smoothing)
        if threshold is None:
            n_eff = effective_samples(self._commissioning, smoothing)
            if not n_eff > self._k + 1:
                raise ValueError(
                    f"commissioning of {self._commissioning} samples with smoothing {smoothing:g}"
                    f" is worth {n_eff:.3g} independent samples, too few to bound a score over"
                    f" {self._k} points: lengthen commissioning or give a threshold"
                )
            threshold = t2_bound(self._k, n_eff)
        self._threshold = finite_float("threshold", threshold, allow_zero=False)
        fast_smoothing = finite_float("fast_smoothing", fast_smoothing, allow_zero=True)
        self._fast_alpha = smoothing_alpha(fast_smoothing)
        self._fast_burn = burn_in(self._commissioning, fast_smoothing)
        if fast_threshold is None:
            n_fast = effective_samples(self._commissioning, fast_smoothing)
            fast = math.inf
            if n_fast > self._k + 1:
                fast = t2_bound(self._k, n_fast, FAST_BOUND_PROBABILITY)
        else:
            fast = finite_float("fast_threshold", fast_threshold, allow_zero=False)
        self._fast_threshold = fast
        self._shrinkage = finite_float("shrinkage", shrinkage, allow_zero=False)
        if self._shrinkage > 1.0:
            raise ValueError(f"shrinkage must be <= 1, got {shrinkage!r}")
        self._base_w = _rate("baseline_horizon", baseline_horizon)
        self._cov_w = _rate("cov_horizon", cov_horizon)
        self._recovery = finite_float("recovery", recovery, allow_zero=True)
        if self._recovery >= 1.0:
            raise ValueError(f"recovery must be < 1, got {recovery!r}")
        self._recovery_off = positive_int("recovery_off", recovery_off, 1)
        self._settle = positive_int("settle", settle, 0)
        self._alarm_on = positive_int("alarm_on", alarm_on, 1)
        self._alarm_off = positive_int("alarm_off", alarm_off, 1)
        self._vec = np.zeros((_k.N_VEC, self._n, self._k), dtype=np.float64)
        self._mat = np.zeros((_k.N_MAT, self._n, self._k, self._k), dtype=np.float64)
        self._ist = np.zeros((_k.N_INT, self._n), dtype=np.int64)
        self._work = np.zeros((8, self._k), dtype=np.float64)

    @property
    def n_assets(self) -> int:
        """Number of assets."""
        return self._n

    @property
    def n_points(self) -> int:
        """Points per asset."""
        return self._k

    @property
    def calibrated(self) -> npt.NDArray[np.bool_]:
        """Per asset: whether commissioning has ended (False while the twin is still learning)."""
        return np.asarray(self._ist[_k.CALIBRATED] == 1, dtype=np.bool_)

    @property
    def away(self) -> npt.NDArray[np.bool_]:
        """Per asset: whether its baseline is a re-learnt operating point, not its home."""
        return np.asarray(self._ist[_k.AWAY] == 1, dtype=np.bool_)

    @property
    def threshold(self) -> float:
        """The t2 that scores 1.0."""
        return self._threshold

    @property
    def fast_threshold(self) -> float:
        """The fast statistic's t2 that scores 1.0 (inf: it never raises an alarm)."""
        return self._fast_threshold

    def update(self, values: npt.ArrayLike, quality: npt.ArrayLike) -> AssetOutput:
        """Advance every asset one tick: float64 values, uint16 quality, (n_assets, n_points)."""
        shape = (self._n, self._k)
        x = _as_2d("values", values, shape, as_values)
        qual = _as_2d("quality", quality, shape, as_quality)
        out = AssetOutput(
            score=np.empty(self._n, dtype=np.float64),
            t2=np.empty(self._n, dtype=np.float64),
            alarm=np.empty(self._n, dtype=np.uint8),
            initialized=np.empty(self._n, dtype=np.bool_),
            contribution=np.empty(shape, dtype=np.float64),
            residual=np.empty(shape, dtype=np.float64),
        )
        _k.asset_update(
            x,
            qual,
            self._vec,
            self._mat,
            self._ist,
            self._commissioning,
            self._burn,
            self._fast_burn,
            self._alpha,
            self._fast_alpha,
            self._threshold,
            self._fast_threshold,
            self._shrinkage,
            self._base_w,
            self._cov_w,
            self._recovery,
            self._recovery_off,
            self._settle,
            self._alarm_on,
            self._alarm_off,
            out.score,
            out.t2,
            out.alarm,
            out.initialized,
            out.contribution,
            out.residual,
            self._work,
        )
        return out

    def state(self) -> dict[str, npt.NDArray[Any]]:
        """Return copies of every state array, enough to resume exactly (see ``load_state``)."""
        state: dict[str, npt.NDArray[Any]] = {}
        for arr, names in self._parts():
            for row, name in enumerate(names):
                state[name] = arr[row].copy()
        return state

    def load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Resume from ``state()`` output; ValueError (and no change) if it does not fit."""
        parts = self._parts()
        expected = {name for _, names in parts for name in names}
        state = _with_home(state, expected)
        if set(state) != expected:
            missing = sorted(expected - set(state))
            extra = sorted(set(state) - expected)
            raise ValueError(f"state keys mismatch: missing {missing}, unexpected {extra}")
        new = [np.empty_like(arr) for arr, _ in parts]
        for dst, (src, names) in zip(new, parts, strict=True):
            for row, name in enumerate(names):
                arr = state[name]
                if not isinstance(arr, np.ndarray) or arr.dtype != src.dtype:
                    got = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
                    raise ValueError(f"state[{name!r}] must be a {src.dtype} array, got {got}")
                if arr.shape != src.shape[1:]:
                    raise ValueError(
                        f"state[{name!r}] must have shape {src.shape[1:]}, got {arr.shape}"
                    )
                dst[row] = arr
        vec, mat, ist = new
        _check_state(vec, mat, ist)
        self._vec, self._mat, self._ist = vec, mat, ist

    def _parts(self) -> list[tuple[npt.NDArray[Any], tuple[str, ...]]]:
        return [
            (self._vec, _k.VEC_FIELDS),
            (self._mat, _k.MAT_FIELDS),
            (self._ist, _k.INT_FIELDS),
        ]


def _with_home(
    state: Mapping[str, npt.NDArray[Any]], expected: set[str]
) -> Mapping[str, npt.NDArray[Any]]:
    """State saved before the asset kept its home: at home, which is where its baseline is."""
    if set(state) | _HOME_KEYS != expected or not _HOME_KEYS.isdisjoint(state):
        return state
    base = state["baseline"]
    if not isinstance(base, np.ndarray):
        return state  # rejected by the caller's checks, naming the key
    zeros = np.zeros(base.shape[:1], dtype=np.int64)
    return {**state, "home": base.copy(), "away": zeros, "transit": zeros.copy()}


_HOME_KEYS = frozenset({"home", "away", "transit"})


def _rate(name: str, horizon: object) -> float:
    h = finite_float(name, horizon, allow_zero=True)
    if 0.0 < h < 1.0:
        raise ValueError(f"{name} must be 0 (frozen) or >= 1 sample, got {horizon!r}")
    return 0.0 if h == 0.0 else 1.0 / h


def _as_2d(name: str, arr_like: npt.ArrayLike, shape: tuple[int, int], check: Any) -> Any:
    arr = np.asarray(arr_like)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    return check(arr.reshape(-1), arr.size).reshape(shape)


def _check_state(vec: FloatArray, mat: FloatArray, ist: npt.NDArray[np.int64]) -> None:
    if not (np.isfinite(vec).all() and np.isfinite(mat).all()):
        raise ValueError("state holds non-finite floats")
    limits = {_k.CALIBRATED: 1, _k.ALARM: ALARMED, _k.UPDATES: _k.REFRESH - 1, _k.AWAY: 1}
    for row, name in enumerate(_k.INT_FIELDS):
        if (ist[row] < 0).any() or (row in limits and (ist[row] > limits[row]).any()):
            raise ValueError(f"state[{name!r}] out of range")
    if (ist[_k.N_SMOOTH] > ist[_k.N_GOOD]).any():
        raise ValueError("state['n_smoothed'] exceeds state['n_good']")
    for i in np.flatnonzero(ist[_k.CALIBRATED] == 1):
        for row in (_k.COV, _k.PREC, _k.FCOV, _k.FPREC):
            m = mat[row, i]
            if not np.allclose(m, m.T, rtol=1e-9, atol=0.0):
                raise ValueError(f"state[{_k.MAT_FIELDS[row]!r}] of asset {i} is not symmetric")
            try:
                np.linalg.cholesky(m)
            except np.linalg.LinAlgError:
                raise ValueError(
                    f"state[{_k.MAT_FIELDS[row]!r}] of asset {i} is not positive definite"
                ) from None


def warmup() -> None:
    """Compile (or load from the on-disk cache) the kernels, on a two-point asset."""
    est = AssetEstimator(1, 2, commissioning=4, smoothing=0.0, threshold=10.0)
    for _ in range(6):
        est.update(np.zeros((1, 2)), np.zeros((1, 2), dtype=np.uint16))
