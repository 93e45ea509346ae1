"""Numba kernels of the asset estimator: arrays and scalars in, outputs written in place.

State is structure-of-arrays over assets: ``vec`` (float64, shape (N_VEC, assets, points)),
``mat`` (float64, (N_MAT, assets, points, points)), ``fs`` (float64, (N_FLOAT, assets)) and
``ist`` (int64, (N_INT, assets)); the row constants below name the rows. The k-by-k algebra is
written out in loops and works in place (with a caller's (2, k) scratch), so a tick allocates
nothing. The semantics are
documented in :mod:`edgetwin.twin.asset`.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from edgetwin.twin._detect import ALARMED, CLEAR_LEVEL, MAX_ABS, NORMAL, alarm_step

# rows of ``vec`` (one vector per asset)
MEAN = 0  # mean of the commissioning samples
SMOOTH = 1  # exponentially smoothed sample
BASE = 2  # baseline: where the smoothed sample is expected to be
SMEAN = 3  # mean of the smoothed commissioning samples
N_VEC = 4
VEC_FIELDS = ("mean", "smoothed", "baseline", "smoothed_mean")

# rows of ``mat`` (one k x k matrix per asset)
SM2 = 0  # co-moment (sum of outer products of deviations) of the smoothed commissioning samples
COV = 1  # covariance of the smoothed sample around the baseline
PREC = 2  # its inverse
N_MAT = 3
MAT_FIELDS = ("smoothed_m2", "covariance", "precision")

# rows of ``fs``
PEAK = 0  # highest score of the current ALARM
N_FLOAT = 1
FLOAT_FIELDS = ("peak",)

# rows of ``ist``
N_GOOD = 0  # complete commissioning ticks seen
N_SMOOTH = 1  # of those, how many fed the smoothed statistics (after the burn-in)
CALIBRATED = 2  # 1 once commissioning has ended
ALARM = 3  # Alarm state
STREAK = 4  # consecutive ticks towards the next alarm transition
SETTLE = 5  # ticks left of re-learning after an ALARM cleared
UPDATES = 6  # covariance updates since the precision was last recomputed from scratch
N_INT = 7
INT_FIELDS = ("n_good", "n_smoothed", "calibrated", "alarm", "streak", "settle", "updates")

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
def _commission(  # noqa: PLR0917 - numba takes no keyword-only arguments
    values: npt.NDArray[np.float64],
    vec: npt.NDArray[np.float64],
    mat: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    i: int,
    commissioning: int,
    burn: int,
    alpha: float,
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
    if n > burn:  # running (Welford) mean and co-moment of the smoothed samples
        m = ist[N_SMOOTH, i] + 1
        ist[N_SMOOTH, i] = m
        f = (m - 1.0) / m
        for j in range(k):
            delta[j] = vec[SMOOTH, i, j] - vec[SMEAN, i, j]
            vec[SMEAN, i, j] += delta[j] / m
        for j in range(k):
            for c in range(k):
                mat[SM2, i, j, c] += f * (delta[j] * delta[c])
    if n < commissioning:
        return
    m = max(ist[N_SMOOTH, i], 1)
    for j in range(k):
        floor = max(VAR_FLOOR_ABS, (VAR_FLOOR_REL * vec[MEAN, i, j]) ** 2)
        for c in range(k):
            mat[COV, i, j, c] = (1.0 - shrinkage) * (mat[SM2, i, j, c] / m)
        mat[COV, i, j, j] = max(mat[SM2, i, j, j] / m, floor)
        vec[BASE, i, j] = vec[MEAN, i, j]
    for j in range(k):
        for c in range(k):
            mat[PREC, i, j, c] = mat[COV, i, j, c]
    invert_spd(mat[PREC, i])
    ist[CALIBRATED, i] = 1
    ist[ALARM, i] = NORMAL
    ist[STREAK, i] = 0
    ist[SETTLE, i] = 0
    ist[UPDATES, i] = 0


@numba.njit(cache=True, nogil=True)
def _learn(  # noqa: PLR0917 - numba takes no keyword-only arguments
    vec: npt.NDArray[np.float64],
    mat: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    i: int,
    d: npt.NDArray[np.float64],
    g: npt.NDArray[np.float64],
    base_w: float,
    cov_w: float,
) -> None:
    """Adapt baseline and covariance to a normal tick (``d`` its deviation, ``g = P d``)."""
    k = d.shape[0]
    if base_w > 0.0:
        for j in range(k):
            vec[BASE, i, j] += base_w * (vec[SMOOTH, i, j] - vec[BASE, i, j])
    if cov_w <= 0.0:
        return
    t2 = 0.0
    for j in range(k):
        t2 += d[j] * g[j]
    for j in range(k):
        for c in range(k):
            mat[COV, i, j, c] = (1.0 - cov_w) * mat[COV, i, j, c] + cov_w * d[j] * d[c]
    u = int(ist[UPDATES, i]) + 1
    if u >= REFRESH:
        for j in range(k):
            for c in range(k):
                mat[PREC, i, j, c] = mat[COV, i, j, c]
        invert_spd(mat[PREC, i])
        u = 0
    else:
        # Sherman-Morrison: ((1-w) S + w d d')^-1 = (P - c g g' / (1 + c d'g)) / (1-w), c = w/(1-w)
        cw = cov_w / (1.0 - cov_w)
        f = cw / (1.0 + cw * t2)
        for j in range(k):
            for m in range(k):
                mat[PREC, i, j, m] = (mat[PREC, i, j, m] - f * g[j] * g[m]) / (1.0 - cov_w)
    ist[UPDATES, i] = u


@numba.njit(cache=True, nogil=True)
def asset_update(  # noqa: PLR0917 - numba takes no keyword-only arguments
    values: npt.NDArray[np.float64],
    quality: npt.NDArray[np.uint16],
    vec: npt.NDArray[np.float64],
    mat: npt.NDArray[np.float64],
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    commissioning: int,
    burn: int,
    alpha: float,
    threshold: float,
    shrinkage: float,
    base_w: float,
    cov_w: float,
    recovery: float,
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
    """Advance every asset by one tick and write its outputs (``work``: 2 x k scratch)."""
    n_assets, k = values.shape
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
                    values, vec, mat, ist, i, commissioning, burn, alpha, shrinkage, work[0]
                )
        elif n_ok > 0:
            for j in range(k):
                x = values[i, j]
                if quality[i, j] == 0 and abs(x) <= MAX_ABS:
                    vec[SMOOTH, i, j] += alpha * (x - vec[SMOOTH, i, j])
            if ist[SETTLE, i] > 0:
                ist[SETTLE, i] -= 1
                for j in range(k):
                    vec[BASE, i, j] = vec[SMOOTH, i, j]
            else:
                _score(
                    vec,
                    mat,
                    fs,
                    ist,
                    i,
                    n_ok == k,
                    threshold,
                    base_w,
                    cov_w,
                    recovery,
                    settle,
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
def _score(  # noqa: PLR0917 - numba takes no keyword-only arguments
    vec: npt.NDArray[np.float64],
    mat: npt.NDArray[np.float64],
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    i: int,
    complete: bool,
    threshold: float,
    base_w: float,
    cov_w: float,
    recovery: float,
    settle: int,
    alarm_on: int,
    alarm_off: int,
    out_score: npt.NDArray[np.float64],
    out_t2: npt.NDArray[np.float64],
    out_contribution: npt.NDArray[np.float64],
    out_residual: npt.NDArray[np.float64],
    work: npt.NDArray[np.float64],
) -> None:
    k = vec.shape[2]
    d = work[0]  # deviation from the baseline
    g = work[1]  # precision times deviation
    for j in range(k):
        d[j] = vec[SMOOTH, i, j] - vec[BASE, i, j]
    t2 = 0.0
    for j in range(k):
        acc = 0.0
        for c in range(k):
            acc += mat[PREC, i, j, c] * d[c]
        g[j] = acc
        t2 += d[j] * acc
    t2 = max(t2, 0.0)
    score = t2 / threshold
    was_alarm = ist[ALARM, i] == ALARMED
    s = score
    if was_alarm:
        fs[PEAK, i] = max(fs[PEAK, i], score)
        s = score * CLEAR_LEVEL / max(CLEAR_LEVEL, recovery * recovery * fs[PEAK, i])
    cleared = alarm_step(ist, ALARM, STREAK, i, s, alarm_on, alarm_off)
    if not was_alarm and ist[ALARM, i] == ALARMED:
        fs[PEAK, i] = score
    for j in range(k):
        out_residual[i, j] = g[j] / mat[PREC, i, j, j]
        out_contribution[i, j] = d[j] * g[j] / t2 if t2 > 0.0 else 0.0
    out_score[i] = score
    out_t2[i] = t2
    if cleared:
        fs[PEAK, i] = 0.0
        if settle > 0:
            ist[SETTLE, i] = settle
            ist[ALARM, i] = NORMAL
            for j in range(k):
                vec[BASE, i, j] = vec[SMOOTH, i, j]
    elif complete and ist[ALARM, i] != ALARMED and score < 1.0:
        _learn(vec, mat, ist, i, d, g, base_w, cov_w)
