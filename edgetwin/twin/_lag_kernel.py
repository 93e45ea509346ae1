"""Numba kernel of the lag estimator: arrays in, outputs written in place, no allocation.

State is structure-of-arrays: ``fs`` (float64, ``N_FLOAT`` rows) and ``ist`` (int64, ``N_INT``
rows), one column per point; the row constants below name the rows. Scalar parameters arrive
packed in one float64 array (``PARAM_*`` positions) and the float outputs leave in one
``(N_OUT, n)`` array, to keep the call cheap. The semantics are documented in
:mod:`edgetwin.twin.lag`.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from edgetwin.twin._detect import ALARMED, MAX_ABS, NORMAL, alarm_step, cusum

# float rows of ``fs``
Y0 = 0  # origin of y: the first good y
U0 = 1  # origin of u: the first good u
YP = 2  # previous y, minus Y0 (valid while CHAIN is 1)
UP = 3  # previous u, minus U0
TA = 4  # theta: a
TB = 5  # theta: b
TC = 6  # theta: c (in the centred coordinates)
R11 = 7  # information matrix R, upper triangle
R12 = 8
R13 = 9
R22 = 10
R23 = 11
R33 = 12
W2 = 13  # running mean of squared recursive residuals (r before its floor)
CP = 14  # CUSUM, upward
CM = 15  # CUSUM, downward
EST = 16  # last estimate
N_FLOAT = 17
FLOAT_FIELDS = (
    "y0",
    "u0",
    "y_prev",
    "u_prev",
    "a",
    "b",
    "c",
    "info_11",
    "info_12",
    "info_13",
    "info_22",
    "info_23",
    "info_33",
    "resid_sq_mean",
    "cusum_pos",
    "cusum_neg",
    "estimate",
)
INFO_ROWS = (R11, R12, R13, R22, R23, R33)

# int rows of ``ist``
N_UPD = 0  # pairs learnt from (commissioning counts these)
CALIBRATED = 1  # 1 once commissioning has ended
ALARM = 2  # Alarm state
STREAK = 3  # consecutive samples towards the next alarm transition
SEEDED = 4  # 1 once the point had a good pair (Y0, U0 are set)
CHAIN = 5  # 1 when the previous tick's pair was good (YP, UP hold it); WINSORIZED if its y was
N_INT = 6
INT_FIELDS = ("n_learnt", "calibrated", "alarm", "streak", "seeded", "chain")
WINSORIZED = 2  # CHAIN: the previous y was winsorized; EST still holds Y0 + its prediction

# positions in the packed parameter array
PARAM_COMMISSIONING = 0
PARAM_THRESHOLD = 1
PARAM_CUSUM_K = 2
PARAM_CUSUM_H = 3
PARAM_ALARM_ON = 4
PARAM_ALARM_OFF = 5
PARAM_HORIZON = 6
N_PARAM = 7

# rows of the float output array
OUT_ESTIMATE = 0
OUT_SCORE = 1
OUT_NIS = 2
OUT_GAIN = 3
OUT_TAU = 4
OUT_RESIDUAL = 5
N_OUT = 6

N_THETA = 3  # the first recursive residuals are ~0: one per parameter
PIVOT_REL = 1e-9  # eps: floor of the LDL' pivots, relative to the diagonal element
INFO_FLOOR = 1e-24  # delta: absolute part of that floor; R starts as delta * I
A_MAX = 0.9999  # a is clipped to [0, A_MAX] for gain and tau
PRED_MAX = 2.0 * MAX_ABS  # no valid y is further than this from Y0
R_FLOOR_ABS = 1e-12
R_FLOOR_REL = 1e-6


@numba.njit(cache=True, nogil=True)
def _predict_from(fs: npt.NDArray[np.float64], i: int, y_prev: float, u_prev: float) -> float:
    p: float = fs[TA, i] * y_prev + fs[TB, i] * u_prev + fs[TC, i]
    return min(max(p, -PRED_MAX), PRED_MAX)


@numba.njit(cache=True, nogil=True)
def _predict(fs: npt.NDArray[np.float64], i: int) -> float:
    return _predict_from(fs, i, fs[YP, i], fs[UP, i])


@numba.njit(cache=True, nogil=True, inline="always")
def _solve(  # noqa: PLR0917 - the factors in scalars; numba: no kw-only args
    l21: float,
    l31: float,
    l32: float,
    d1: float,
    d2: float,
    d3: float,
    p1: float,
    p2: float,
) -> tuple[float, float, float, float]:
    """``q = phi' A^-1 phi`` and ``g = A^-1 phi`` for ``phi = (p1, p2, 1)``, ``A = L D L'``."""
    z1 = p1  # L z = phi
    z2 = p2 - l21 * z1
    z3 = 1.0 - (l31 * z1 + l32 * z2)
    q = z1 * z1 / d1 + z2 * z2 / d2 + z3 * z3 / d3
    g3 = z3 / d3  # L' g = D^-1 z
    g2 = z2 / d2 - l32 * g3
    g1 = z1 / d1 - (l21 * g2 + l31 * g3)
    return q, g1, g2, g3


@numba.njit(cache=True, nogil=True)
def _step(  # noqa: PLR0915, PLR0917 - 3x3 update in scalars on purpose; numba: no kw-only args
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    params: npt.NDArray[np.float64],
    i: int,
    yc: float,
    r_floor: float,
) -> tuple[float, float, float, bool]:
    """One chained good pair (``yc``: y minus Y0); returns score, nis, residual, winsorized."""
    p1 = fs[YP, i]
    p2 = fs[UP, i]
    # forget: A = lam R; then A = L D L^T (unit lower L), each pivot floored at
    # PIVOT_REL A_jj + INFO_FLOOR, the floor's increase added to A_jj too
    horizon = params[PARAM_HORIZON]
    lam = 1.0 - 1.0 / horizon
    a11 = lam * fs[R11, i]
    a12 = lam * fs[R12, i]
    a13 = lam * fs[R13, i]
    a22 = lam * fs[R22, i]
    a23 = lam * fs[R23, i]
    a33 = lam * fs[R33, i]
    d1 = a11
    floor = PIVOT_REL * a11 + INFO_FLOOR
    if d1 < floor:
        a11 += floor - d1
        d1 = floor
    l21 = a12 / d1
    l31 = a13 / d1
    d2 = a22 - l21 * l21 * d1
    floor = PIVOT_REL * a22 + INFO_FLOOR
    if d2 < floor:
        a22 += floor - d2
        d2 = floor
    l32 = (a23 - l31 * l21 * d1) / d2
    d3 = a33 - (l31 * l31 * d1 + l32 * l32 * d2)
    floor = PIVOT_REL * a33 + INFO_FLOOR
    if d3 < floor:
        a33 += floor - d3
        d3 = floor
    y0 = fs[Y0, i]
    p = _predict_from(fs, i, p1, p2)
    nu = yc - p
    q, g1, g2, g3 = _solve(l21, l31, l32, d1, d2, d3, p1, p2)
    if ist[CHAIN, i] == WINSORIZED:
        # y[t-1] lay beyond the bound: a spike of the measurement, whose prediction is the
        # better y[t-1], or a real move of the process; the regressor that explains y wins
        c1 = fs[EST, i] - y0
        pc = _predict_from(fs, i, c1, p2)
        qc, h1, h2, h3 = _solve(l21, l31, l32, d1, d2, d3, c1, p2)
        if (yc - pc) * (yc - pc) / (1.0 + qc) < nu * nu / (1.0 + q):
            p1, p, nu, q, g1, g2, g3 = c1, pc, yc - pc, qc, h1, h2, h3
    fs[EST, i] = y0 + p
    residual = nu
    w = nu / math.sqrt(1.0 + q)

    calibrated = ist[CALIBRATED, i] == 1
    score = 0.0
    nis = 0.0
    zn = 0.0
    learn = True
    winsorized = False
    threshold = params[PARAM_THRESHOLD]
    if calibrated:
        r = max(fs[W2, i], R_FLOOR_ABS, (R_FLOOR_REL * y0) * (R_FLOOR_REL * y0), r_floor)
        zn = w / math.sqrt(r)
        nis = zn * zn
        learn = ist[ALARM, i] != ALARMED and (nis <= threshold or ist[STREAK, i] == 0)
        if nis > threshold and learn:
            # the first sample beyond the NIS bound may be a spike: winsorized onto the bound for
            # the update, the noise and the CUSUM, it neither drags theta nor starts a run
            winsorized = True
            nu = math.copysign(math.sqrt(threshold * r * (1.0 + q)), nu)
            w = nu / math.sqrt(1.0 + q)
            zn = w / math.sqrt(r)
    if learn:
        kf = nu / (1.0 + q)
        fs[TA, i] += g1 * kf
        fs[TB, i] += g2 * kf
        fs[TC, i] += g3 * kf
        fs[R11, i] = a11 + p1 * p1
        fs[R12, i] = a12 + p1 * p2
        fs[R13, i] = a13 + p1
        fs[R22, i] = a22 + p2 * p2
        fs[R23, i] = a23 + p2
        fs[R33, i] = a33 + 1.0
        n = ist[N_UPD, i] + 1
        ist[N_UPD, i] = n
        if n > N_THETA:
            wt = max(1.0 / (n - N_THETA), 1.0 / horizon)
            fs[W2, i] += wt * (w * w - fs[W2, i])
    if calibrated:
        cusum_k = params[PARAM_CUSUM_K]
        cusum_h = params[PARAM_CUSUM_H]
        fs[CP, i] = cusum(fs[CP, i], zn, cusum_k, cusum_h)
        fs[CM, i] = cusum(fs[CM, i], -zn, cusum_k, cusum_h)
        score = max(nis / threshold, max(fs[CP, i], fs[CM, i]) / cusum_h)
        alarm_on = int(params[PARAM_ALARM_ON])
        alarm_off = int(params[PARAM_ALARM_OFF])
        if alarm_step(ist, ALARM, STREAK, i, score, alarm_on, alarm_off):
            fs[CP, i] = 0.0
            fs[CM, i] = 0.0
    elif ist[N_UPD, i] >= params[PARAM_COMMISSIONING]:
        fs[CP, i] = 0.0
        fs[CM, i] = 0.0
        ist[ALARM, i] = NORMAL
        ist[STREAK, i] = 0
        ist[CALIBRATED, i] = 1
    return score, nis, residual, winsorized


@numba.njit(cache=True, nogil=True)
def lag_update(  # noqa: PLR0917 - numba takes no keyword-only arguments
    values: npt.NDArray[np.float64],
    inputs: npt.NDArray[np.float64],
    quality: npt.NDArray[np.uint16],
    input_quality: npt.NDArray[np.uint16],
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    params: npt.NDArray[np.float64],
    r_floor: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64],
    out_alarm: npt.NDArray[np.uint8],
    out_initialized: npt.NDArray[np.bool_],
) -> None:
    """Advance every point by one tick and write its outputs (``r_floor``: noise_floor^2)."""
    for i in range(values.shape[0]):
        y = values[i]
        u = inputs[i]
        # False for NaN and inf
        good = quality[i] == 0 and input_quality[i] == 0 and abs(y) <= MAX_ABS
        good = good and abs(u) <= MAX_ABS
        score = 0.0
        nis = 0.0
        residual = 0.0
        if good:
            if ist[SEEDED, i] == 0:
                fs[Y0, i] = y
                fs[U0, i] = u
                ist[SEEDED, i] = 1
            yc = y - fs[Y0, i]
            winsorized = False
            if ist[CHAIN, i] != 0:
                score, nis, residual, winsorized = _step(fs, ist, params, i, yc, r_floor[i])
            else:
                fs[EST, i] = y
            fs[YP, i] = yc
            fs[UP, i] = u - fs[U0, i]
            ist[CHAIN, i] = WINSORIZED if winsorized else 1
        else:
            if ist[CHAIN, i] != 0:
                fs[EST, i] = fs[Y0, i] + _predict(fs, i)
            ist[CHAIN, i] = 0
        a = min(max(fs[TA, i], 0.0), A_MAX)
        out[OUT_ESTIMATE, i] = fs[EST, i]
        out[OUT_SCORE, i] = score
        out[OUT_NIS, i] = nis
        out[OUT_GAIN, i] = fs[TB, i] / (1.0 - a)
        out[OUT_TAU, i] = -1.0 / math.log(a) if a > 0.0 else 0.0
        out[OUT_RESIDUAL, i] = residual
        out_alarm[i] = ist[ALARM, i]
        out_initialized[i] = ist[SEEDED, i] == 1
