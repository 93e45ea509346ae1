"""Numba kernels of the asset estimator: arrays and scalars in, outputs written in place.

State is structure-of-arrays over assets: ``vec`` (float64, shape (N_VEC, assets, points)),
``mat`` (float64, (N_MAT, assets, points, points)) and ``ist`` (int64, (N_INT, assets)); the
row constants below name the rows. The k-by-k algebra is written out in loops and works in
place (with a caller's (8, k) scratch), so a tick allocates nothing. The semantics are
documented in :mod:`edgetwin.twin.asset`.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from edgetwin.twin._detect import ALARMED, MAX_ABS, NORMAL, WARN_LEVEL, WARNING, alarm_step

# rows of ``vec`` (one vector per asset)
MEAN = 0  # mean of the commissioning samples
SMOOTH = 1  # exponentially smoothed sample (slow)
BASE = 2  # baseline: where the smoothed samples are expected to be
SMEAN = 3  # mean of the smoothed commissioning samples
FAST = 4  # exponentially smoothed sample (fast)
FMEAN = 5  # mean of the fast-smoothed commissioning samples
SIG = 6  # signature of the current ALARM: mean deviation of the smoothed sample
HOME = 7  # the baseline the asset left when it first re-learnt elsewhere (used while AWAY)
N_VEC = 8
VEC_FIELDS = (
    "mean",
    "smoothed",
    "baseline",
    "smoothed_mean",
    "fast",
    "fast_mean",
    "signature",
    "home",
)

# rows of ``mat`` (one k x k matrix per asset)
SM2 = 0  # co-moment (sum of outer products of deviations) of the smoothed commissioning samples
COV = 1  # covariance of the smoothed sample around the baseline
PREC = 2  # its inverse
FM2 = 3  # the same three for the fast-smoothed sample
FCOV = 4
FPREC = 5
N_MAT = 6
MAT_FIELDS = (
    "smoothed_m2",
    "covariance",
    "precision",
    "fast_m2",
    "fast_covariance",
    "fast_precision",
)

# rows of ``ist``
N_GOOD = 0  # complete commissioning ticks seen
N_SMOOTH = 1  # of those, how many fed the smoothed statistics (after the burn-in)
CALIBRATED = 2  # 1 once commissioning has ended
ALARM = 3  # Alarm state
STREAK = 4  # consecutive ticks towards the next alarm transition
SETTLE = 5  # ticks left of re-learning after an ALARM cleared
UPDATES = 6  # covariance updates since the precisions were last recomputed from scratch
N_ALARM = 7  # ticks of the current ALARM (the signature's count)
RSTREAK = 8  # consecutive ALARM ticks with the signature faded under ``recovery``
AWAY = 9  # 1 while the baseline is a re-learnt operating point, not HOME
TRANSIT = 10  # consecutive away ticks over the bound on the way home (raise held back)
N_INT = 11
INT_FIELDS = (
    "n_good",
    "n_smoothed",
    "calibrated",
    "alarm",
    "streak",
    "settle",
    "updates",
    "n_alarm",
    "recovering",
    "away",
    "transit",
)

VAR_FLOOR_ABS = 1e-12
VAR_FLOOR_REL = 1e-6
REFRESH = 256  # rank-1 precision updates between exact inversions (bounds rounding drift)


@numba.njit(cache=True, nogil=True)
def invert_spd(a: npt.NDArray[np.float64]) -> None:
    """Invert a symmetric positive definite matrix in place (Gauss-Jordan sweeps, no pivoting)."""
    k = a.shape[0]
    for p in range(k):
        piv = a[p, p]
        if not piv > 0.0:  # only from rounding on a degenerate matrix; keep the result finite
            piv = VAR_FLOOR_ABS
        for j in range(k):
            a[p, j] /= piv
        for i in range(k):
            if i != p:
                f = a[i, p]
                for j in range(k):
                    a[i, j] -= f * a[p, j]
                a[i, p] = -f / piv
        a[p, p] = 1.0 / piv
    for i in range(k):  # symmetrise the rounding
        for j in range(i):
            v = 0.5 * (a[i, j] + a[j, i])
            a[i, j] = v
            a[j, i] = v


@numba.njit(cache=True, nogil=True)
def _comoment(  # noqa: PLR0917 - numba takes no keyword-only arguments
    vec: npt.NDArray[np.float64],
    mat: npt.NDArray[np.float64],
    i: int,
    src: int,
    mean: int,
    m2: int,
    m: int,
    delta: npt.NDArray[np.float64],
) -> None:
    """Welford step: the ``m``-th sample ``vec[src]`` into mean ``vec[mean]``, co-moment ``m2``."""
    k = delta.shape[0]
    f = (m - 1.0) / m
    for j in range(k):
        delta[j] = vec[src, i, j] - vec[mean, i, j]
        vec[mean, i, j] += delta[j] / m
    for j in range(k):
        for c in range(k):
            mat[m2, i, j, c] += f * (delta[j] * delta[c])


@numba.njit(cache=True, nogil=True)
def _calibrate(  # noqa: PLR0917 - numba takes no keyword-only arguments
    vec: npt.NDArray[np.float64],
    mat: npt.NDArray[np.float64],
    i: int,
    m2: int,
    cov: int,
    prec: int,
    m: int,
    shrinkage: float,
) -> None:
    """Covariance (shrunk, floored) and precision from a commissioning co-moment of ``m``."""
    k = vec.shape[2]
    for j in range(k):
        floor = max(VAR_FLOOR_ABS, (VAR_FLOOR_REL * vec[MEAN, i, j]) ** 2)
        for c in range(k):
            mat[cov, i, j, c] = (1.0 - shrinkage) * (mat[m2, i, j, c] / m)
        mat[cov, i, j, j] = max(mat[m2, i, j, j] / m, floor)
    for j in range(k):
        for c in range(k):
            mat[prec, i, j, c] = mat[cov, i, j, c]
    invert_spd(mat[prec, i])


@numba.njit(cache=True, nogil=True)
def _commission(  # noqa: PLR0917 - numba takes no keyword-only arguments
    values: npt.NDArray[np.float64],
    vec: npt.NDArray[np.float64],
    mat: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    i: int,
    commissioning: int,
    burn: int,
    fast_burn: int,
    alpha: float,
    fast_alpha: float,
    shrinkage: float,
    delta: npt.NDArray[np.float64],
) -> None:
    k = values.shape[1]
    n = ist[N_GOOD, i] + 1
    ist[N_GOOD, i] = n
    for j in range(k):
        x = values[i, j]
        vec[MEAN, i, j] += (x - vec[MEAN, i, j]) / n
        vec[SMOOTH, i, j] = x if n == 1 else vec[SMOOTH, i, j] + alpha * (x - vec[SMOOTH, i, j])
        vec[FAST, i, j] = x if n == 1 else vec[FAST, i, j] + fast_alpha * (x - vec[FAST, i, j])
    if n > burn:
        ist[N_SMOOTH, i] += 1
        _comoment(vec, mat, i, SMOOTH, SMEAN, SM2, ist[N_SMOOTH, i], delta)
    if n > fast_burn:
        _comoment(vec, mat, i, FAST, FMEAN, FM2, n - fast_burn, delta)
    if n < commissioning:
        return
    _calibrate(vec, mat, i, SM2, COV, PREC, max(ist[N_SMOOTH, i], 1), shrinkage)
    _calibrate(vec, mat, i, FM2, FCOV, FPREC, max(n - fast_burn, 1), shrinkage)
    for j in range(k):
        vec[BASE, i, j] = vec[MEAN, i, j]
    ist[CALIBRATED, i] = 1
    ist[ALARM, i] = NORMAL
    ist[STREAK, i] = 0
    ist[SETTLE, i] = 0
    ist[UPDATES, i] = 0
    ist[N_ALARM, i] = 0
    ist[RSTREAK, i] = 0
    ist[AWAY, i] = 0
    ist[TRANSIT, i] = 0


@numba.njit(cache=True, nogil=True)
def _learn_cov(  # noqa: PLR0917 - numba takes no keyword-only arguments
    mat: npt.NDArray[np.float64],
    i: int,
    cov: int,
    prec: int,
    d: npt.NDArray[np.float64],
    g: npt.NDArray[np.float64],
    cov_w: float,
    refresh: bool,
) -> None:
    """``S = (1 - w) S + w d d'`` and its inverse (``g = P d``), exactly when ``refresh``."""
    k = d.shape[0]
    for j in range(k):
        for c in range(k):
            mat[cov, i, j, c] = (1.0 - cov_w) * mat[cov, i, j, c] + cov_w * d[j] * d[c]
    if refresh:
        for j in range(k):
            for c in range(k):
                mat[prec, i, j, c] = mat[cov, i, j, c]
        invert_spd(mat[prec, i])
        return
    # Sherman-Morrison: ((1-w) S + w d d')^-1 = (P - c g g' / (1 + c d'g)) / (1-w), c = w/(1-w)
    t2 = 0.0
    for j in range(k):
        t2 += d[j] * g[j]
    cw = cov_w / (1.0 - cov_w)
    f = cw / (1.0 + cw * t2)
    for j in range(k):
        for c in range(k):
            mat[prec, i, j, c] = (mat[prec, i, j, c] - f * g[j] * g[c]) / (1.0 - cov_w)


@numba.njit(cache=True, nogil=True)
def _learn(  # noqa: PLR0917 - numba takes no keyword-only arguments
    vec: npt.NDArray[np.float64],
    mat: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    i: int,
    work: npt.NDArray[np.float64],
    base_w: float,
    cov_w: float,
) -> None:
    """Adapt baseline and both covariances to a normal tick (``work``: d, g, fast d, fast g)."""
    k = vec.shape[2]
    if base_w > 0.0:
        for j in range(k):
            vec[BASE, i, j] += base_w * (vec[SMOOTH, i, j] - vec[BASE, i, j])
    if cov_w <= 0.0:
        return
    u = int(ist[UPDATES, i]) + 1
    refresh = u >= REFRESH
    _learn_cov(mat, i, COV, PREC, work[0], work[1], cov_w, refresh)
    _learn_cov(mat, i, FCOV, FPREC, work[2], work[3], cov_w, refresh)
    ist[UPDATES, i] = 0 if refresh else u


@numba.njit(cache=True, nogil=True)
def _smooth(  # noqa: PLR0917 - numba takes no keyword-only arguments
    values: npt.NDArray[np.float64],
    quality: npt.NDArray[np.uint16],
    vec: npt.NDArray[np.float64],
    i: int,
    row: int,
    alpha: float,
) -> None:
    """Good values into the smoothed sample ``vec[row]``; a bad one leaves its mean as it is."""
    for j in range(values.shape[1]):
        x = values[i, j]
        if quality[i, j] == 0 and abs(x) <= MAX_ABS:  # False for NaN and inf
            vec[row, i, j] += alpha * (x - vec[row, i, j])


@numba.njit(cache=True, nogil=True)
def asset_update(  # noqa: PLR0917 - numba takes no keyword-only arguments
    values: npt.NDArray[np.float64],
    quality: npt.NDArray[np.uint16],
    vec: npt.NDArray[np.float64],
    mat: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    commissioning: int,
    burn: int,
    fast_burn: int,
    alpha: float,
    fast_alpha: float,
    threshold: float,
    fast_threshold: float,
    shrinkage: float,
    base_w: float,
    cov_w: float,
    recovery: float,
    recovery_off: int,
    settle: int,
    alarm_on: int,
    alarm_off: int,
    out_score: npt.NDArray[np.float64],
    out_t2: npt.NDArray[np.float64],
    out_alarm: npt.NDArray[np.uint8],
    out_initialized: npt.NDArray[np.bool_],
    out_contribution: npt.NDArray[np.float64],
    out_residual: npt.NDArray[np.float64],
    work: npt.NDArray[np.float64],
) -> None:
    """Advance every asset by one tick and write its outputs (``work``: 8 x k scratch)."""
    n_assets, k = values.shape
    half = settle // 2
    for i in range(n_assets):
        n_ok = 0
        for j in range(k):
            out_contribution[i, j] = 0.0
            out_residual[i, j] = 0.0
            if quality[i, j] == 0 and abs(values[i, j]) <= MAX_ABS:  # False for NaN and inf
                n_ok += 1
        out_score[i] = 0.0
        out_t2[i] = 0.0
        if ist[CALIBRATED, i] == 0:
            if n_ok == k:
                _commission(
                    values,
                    vec,
                    mat,
                    ist,
                    i,
                    commissioning,
                    burn,
                    fast_burn,
                    alpha,
                    fast_alpha,
                    shrinkage,
                    work[0],
                )
        elif n_ok > 0:
            _smooth(values, quality, vec, i, SMOOTH, alpha)
            _smooth(values, quality, vec, i, FAST, fast_alpha)
            if ist[SETTLE, i] > 0:
                left = ist[SETTLE, i] - 1
                ist[SETTLE, i] = left
                for j in range(k):  # follow, then average over the second half
                    if left >= half:
                        vec[BASE, i, j] = vec[SMOOTH, i, j]
                    else:
                        vec[BASE, i, j] += (vec[SMOOTH, i, j] - vec[BASE, i, j]) / (half - left)
            else:
                _score(
                    vec,
                    mat,
                    ist,
                    i,
                    n_ok == k,
                    threshold,
                    fast_threshold,
                    base_w,
                    cov_w,
                    recovery,
                    recovery_off,
                    settle,
                    burn,
                    alarm_on,
                    alarm_off,
                    out_score,
                    out_t2,
                    out_contribution,
                    out_residual,
                    work,
                )
        out_alarm[i] = ist[ALARM, i]
        out_initialized[i] = ist[CALIBRATED, i] == 1


@numba.njit(cache=True, nogil=True)
def _quadratic(  # noqa: PLR0917 - numba takes no keyword-only arguments
    vec: npt.NDArray[np.float64],
    mat: npt.NDArray[np.float64],
    i: int,
    row: int,
    base: int,
    prec: int,
    d: npt.NDArray[np.float64],
    g: npt.NDArray[np.float64],
) -> float:
    """``d = vec[row] - vec[base]``, ``g = P d``; return ``max(0, d'g)``."""
    k = d.shape[0]
    for j in range(k):
        d[j] = vec[row, i, j] - vec[base, i, j]
    t2 = 0.0
    for j in range(k):
        acc = 0.0
        for c in range(k):
            acc += mat[prec, i, j, c] * d[c]
        g[j] = acc
        t2 += d[j] * acc
    return max(t2, 0.0)


@numba.njit(cache=True, nogil=True)
def _signature_share(
    vec: npt.NDArray[np.float64],
    mat: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    i: int,
    work: npt.NDArray[np.float64],
) -> float:
    """Fold this tick's ``d`` into the ALARM's signature; the share of it the fast ``d`` holds."""
    k = vec.shape[2]
    n = ist[N_ALARM, i] + 1
    ist[N_ALARM, i] = n
    for j in range(k):
        vec[SIG, i, j] += (work[0, j] - vec[SIG, i, j]) / n
    q = 0.0  # s'P s
    p = 0.0  # fast d'P s
    for j in range(k):
        acc = 0.0
        for c in range(k):
            acc += mat[PREC, i, j, c] * vec[SIG, i, c]
        q += vec[SIG, i, j] * acc
        p += work[2, j] * acc
    return p / q if q > 0.0 else 0.0


@numba.njit(cache=True, nogil=True)
def _toward_home(
    vec: npt.NDArray[np.float64],
    mat: npt.NDArray[np.float64],
    i: int,
    fast_d: npt.NDArray[np.float64],
) -> float:
    """``d_f' P_f (h - b)``: > 0 when the fast deviation leans the way home."""
    k = fast_d.shape[0]
    lean = 0.0
    for j in range(k):
        acc = 0.0
        for c in range(k):
            acc += mat[FPREC, i, j, c] * (vec[HOME, i, c] - vec[BASE, i, c])
        lean += fast_d[j] * acc
    return lean


@numba.njit(cache=True, nogil=True)
def _home(  # noqa: PLR0917 - numba takes no keyword-only arguments
    vec: npt.NDArray[np.float64],
    mat: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    i: int,
    work: npt.NDArray[np.float64],
    threshold: float,
    fast_threshold: float,
    t2: float,
    fast_t2: float,
    score: float,
    was_alarm: bool,
) -> tuple[float, float, float, bool]:
    """While away, score against home too and go home when that scores lower.

    Returns ``t2``, fast ``t2`` and score against the baseline now in use (``work`` rows 0-3
    follow it) and whether the asset is on its way home.
    """
    k = vec.shape[2]
    moving = ist[TRANSIT, i] > 0  # on its way home since an earlier tick
    if ist[AWAY, i] == 0:
        return t2, fast_t2, score, moving
    home_t2 = _quadratic(vec, mat, i, SMOOTH, HOME, PREC, work[4], work[5])
    home_fast_t2 = _quadratic(vec, mat, i, FAST, HOME, FPREC, work[6], work[7])
    home_score = max(home_t2 / threshold, home_fast_t2 / fast_threshold)
    if home_score < score:  # back where it was commissioned: score against home again
        ist[AWAY, i] = 0
        for j in range(k):
            vec[BASE, i, j] = vec[HOME, i, j]
            work[0, j], work[1, j] = work[4, j], work[5, j]
            work[2, j], work[3, j] = work[6, j], work[7, j]
        if was_alarm:  # the signature restarts against the new baseline
            ist[N_ALARM, i] = 0
            ist[RSTREAK, i] = 0
            for j in range(k):
                vec[SIG, i, j] = 0.0
        return home_t2, home_fast_t2, home_score, True
    if not moving and not was_alarm and score >= 1.0:
        moving = _toward_home(vec, mat, i, work[2]) > 0.0
    return t2, fast_t2, score, moving


@numba.njit(cache=True, nogil=True)
def _score(  # noqa: PLR0917 - numba takes no keyword-only arguments
    vec: npt.NDArray[np.float64],
    mat: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    i: int,
    complete: bool,
    threshold: float,
    fast_threshold: float,
    base_w: float,
    cov_w: float,
    recovery: float,
    recovery_off: int,
    settle: int,
    transit: int,
    alarm_on: int,
    alarm_off: int,
    out_score: npt.NDArray[np.float64],
    out_t2: npt.NDArray[np.float64],
    out_contribution: npt.NDArray[np.float64],
    out_residual: npt.NDArray[np.float64],
    work: npt.NDArray[np.float64],
) -> None:
    k = vec.shape[2]
    d = work[0]  # deviation of the smoothed sample from the baseline
    g = work[1]  # precision times deviation
    t2 = _quadratic(vec, mat, i, SMOOTH, BASE, PREC, d, g)
    fast_t2 = _quadratic(vec, mat, i, FAST, BASE, FPREC, work[2], work[3])
    score = max(t2 / threshold, fast_t2 / fast_threshold)
    was_alarm = ist[ALARM, i] == ALARMED
    held = False
    if ist[AWAY, i] == 1 or ist[TRANSIT, i] > 0:
        t2, fast_t2, score, moving = _home(
            vec, mat, ist, i, work, threshold, fast_threshold, t2, fast_t2, score, was_alarm
        )
        in_transit = moving and not was_alarm and score >= 1.0
        ist[TRANSIT, i] = ist[TRANSIT, i] + 1 if in_transit else 0
        held = in_transit and ist[TRANSIT, i] <= transit  # maybe on its way home: no alarm yet
    if was_alarm:
        faded = _signature_share(vec, mat, ist, i, work) < recovery
        ist[RSTREAK, i] = ist[RSTREAK, i] + 1 if faded else 0
    cleared = alarm_step(
        ist, ALARM, STREAK, i, min(score, WARN_LEVEL) if held else score, alarm_on, alarm_off
    )
    if was_alarm and not cleared and ist[RSTREAK, i] >= recovery_off:
        ist[ALARM, i] = WARNING if score >= WARN_LEVEL else NORMAL  # as alarm_step clears
        ist[STREAK, i] = 0
        cleared = True
    if cleared:
        ist[N_ALARM, i] = 0
        ist[RSTREAK, i] = 0
    elif not was_alarm and ist[ALARM, i] == ALARMED:
        ist[N_ALARM, i] = 1
        ist[RSTREAK, i] = 0
        for j in range(k):
            vec[SIG, i, j] = d[j]
    for j in range(k):
        out_residual[i, j] = g[j] / mat[PREC, i, j, j]
        out_contribution[i, j] = d[j] * g[j] / t2 if t2 > 0.0 else 0.0
    out_score[i] = score
    out_t2[i] = t2
    if cleared:
        if settle > 0:
            ist[SETTLE, i] = settle
            ist[ALARM, i] = NORMAL
            if ist[AWAY, i] == 0:  # leaving home: remember it
                ist[AWAY, i] = 1
                for j in range(k):
                    vec[HOME, i, j] = vec[BASE, i, j]
            for j in range(k):
                vec[BASE, i, j] = vec[SMOOTH, i, j]
    elif complete and ist[ALARM, i] != ALARMED and score < 1.0:
        _learn(vec, mat, ist, i, work, base_w, cov_w)
