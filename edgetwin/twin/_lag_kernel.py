"""Numba kernel of the lag estimator: arrays in, outputs written in place, no allocation.

State is batched over points but point-major: ``fs`` (float64, points x ``N_FLOAT``) and ``ist``
(int64, points x ``N_INT``); the constants below name the columns (``state()`` hands them out by
field, as the former rows x points layout held them). Scalar parameters and the per-point floor of
``r`` arrive packed in one float64 array (``PARAM_*``, then one per point); outputs are rows
(``OUT_*``) x points and rows (alarm, initialized) x points of uint8: nine array arguments instead
of eleven, one eagerly compiled signature. The semantics are documented in
:mod:`edgetwin.twin.lag`. The steady state (a calibrated point continuing its chain) is written
out in the loop with the forget-and-factorise, solve and learning helpers inlined; commissioning
and the tick after a winsorized pair are a call (``_step``). Results are bit-identical to the
former kernel: every division stays a division; ``max(1/m, 1/horizon)`` is ``1/horizon`` once
``m >= horizon`` (integers, so the same double) and ``1 - 1/horizon`` is hoisted. Measured per
point-update through ``update`` (mean of 64-tick runs; 100 / 10 000 / 100 000 points; 2-core
EPYC VM): former kernel 117 / 71 / 81 ns, now 55 / 45 / 47 with ``out=``; in bench/estimator.py
(best of 60) 106 / 68 / 71 -> 49 / 42 / 44 (trend 15 / 6.1 / 11). Single-point ``update`` 3.9 ->
2.3 us, ``update(out=)`` 0.9 us. By step, kernel only at 10 000
points: point-major, eagerly compiled, every pair through ``_step`` 71 ns; the steady path
inlined 47 ns. ``error_model="numpy"`` alone and the CUSUM before the learning (as in level) made
no measurable difference. What is left is mostly inherent: ~15 divisions, two square roots and
the ``tau`` output's logarithm per point (that output alone ~10 ns); reciprocals instead of
divisions would change results in the last bits.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from edgetwin.twin._detect import (
    ALARMED,
    MAX_ABS,
    N_DETECT_PARAMS,
    NORMAL,
    PARAM_ALARM_OFF,
    PARAM_ALARM_ON,
    PARAM_COMMISSIONING,
    PARAM_CUSUM_H,
    PARAM_CUSUM_K,
    PARAM_THRESHOLD,
    alarm_step,
    cusum,
)

# float columns of ``fs``
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

# int columns of ``ist``
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
# (the PARAM_* of _detect, then)
PARAM_HORIZON = N_DETECT_PARAMS
N_PARAM = PARAM_HORIZON + 1  # then the per-point floor of r, the square of the noise_floor

# rows of the float output block; the flags block is (alarm, initialized)
OUT_ESTIMATE = 0
OUT_SCORE = 1
OUT_NIS = 2
OUT_GAIN = 3
OUT_TAU = 4
OUT_RESIDUAL = 5
N_OUT = 6
N_FLAGS = 2

N_THETA = 3  # the first recursive residuals are ~0: one per parameter
PIVOT_REL = 1e-9  # eps: floor of the LDL' pivots, relative to the diagonal element
INFO_FLOOR = 1e-24  # delta: absolute part of that floor; R starts as delta * I
A_MAX = 0.9999  # a is clipped to [0, A_MAX] for gain and tau
PRED_MAX = 2.0 * MAX_ABS  # no valid y is further than this from Y0
R_FLOOR_ABS = 1e-12
R_FLOOR_REL = 1e-6

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_inline = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")


@_inline
def _predict_from(fs: npt.NDArray[np.float64], i: int, y_prev: float, u_prev: float) -> float:
    p: float = fs[i, TA] * y_prev + fs[i, TB] * u_prev + fs[i, TC]
    return min(max(p, -PRED_MAX), PRED_MAX)


@_inline
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


@_inline
def _factor(
    fs: npt.NDArray[np.float64], i: int, lam: float
) -> tuple[float, float, float, float, float, float, float, float, float, float, float, float]:
    """Forget and factorise: ``A = lam R = L D L'``; returns a11 .. a33, l21, l31, l32, d1 .. d3."""
    # each pivot floored at PIVOT_REL A_jj + INFO_FLOOR, the floor's increase added to A_jj too
    a11 = lam * fs[i, R11]
    a12 = lam * fs[i, R12]
    a13 = lam * fs[i, R13]
    a22 = lam * fs[i, R22]
    a23 = lam * fs[i, R23]
    a33 = lam * fs[i, R33]
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
    return a11, a12, a13, a22, a23, a33, l21, l31, l32, d1, d2, d3


@_inline
def _learn(  # noqa: PLR0917 - numba: no kw-only args
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    i: int,
    info: tuple[float, float, float, float, float, float],
    p1: float,
    p2: float,
    g1: float,
    g2: float,
    g3: float,
    kf: float,
    w: float,
    horizon: float,
    inv_horizon: float,
) -> None:
    """Learn from the pair: theta, R = A + phi phi', and the noise mean."""
    a11, a12, a13, a22, a23, a33 = info
    fs[i, TA] += g1 * kf
    fs[i, TB] += g2 * kf
    fs[i, TC] += g3 * kf
    fs[i, R11] = a11 + p1 * p1
    fs[i, R12] = a12 + p1 * p2
    fs[i, R13] = a13 + p1
    fs[i, R22] = a22 + p2 * p2
    fs[i, R23] = a23 + p2
    fs[i, R33] = a33 + 1.0
    n = ist[i, N_UPD] + 1
    ist[i, N_UPD] = n
    if n > N_THETA:
        # max(1 / m, 1 / horizon) for integers m and horizon, without its division past horizon
        m = n - N_THETA
        wt = inv_horizon if m >= horizon else 1.0 / m
        fs[i, W2] += wt * (w * w - fs[i, W2])


@_jit
def _step(  # noqa: PLR0915, PLR0917 - 3x3 update in scalars on purpose; numba: no kw-only args
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    params: npt.NDArray[np.float64],
    i: int,
    yc: float,
    r_floor: float,
) -> tuple[float, float, float, bool]:
    """One chained good pair off the steady path (commissioning, or the tick after a winsorized
    pair); ``yc``: y minus Y0. Returns score, nis, residual, winsorized."""
    p1 = fs[i, YP]
    p2 = fs[i, UP]
    horizon = params[PARAM_HORIZON]
    lam = 1.0 - 1.0 / horizon
    a11, a12, a13, a22, a23, a33, l21, l31, l32, d1, d2, d3 = _factor(fs, i, lam)
    y0 = fs[i, Y0]
    p = _predict_from(fs, i, p1, p2)
    nu = yc - p
    q, g1, g2, g3 = _solve(l21, l31, l32, d1, d2, d3, p1, p2)
    if ist[i, CHAIN] == WINSORIZED:
        # y[t-1] lay beyond the bound: a spike of the measurement, whose prediction is the
        # better y[t-1], or a real move of the process; the regressor that explains y wins
        c1 = fs[i, EST] - y0
        pc = _predict_from(fs, i, c1, p2)
        qc, h1, h2, h3 = _solve(l21, l31, l32, d1, d2, d3, c1, p2)
        if (yc - pc) * (yc - pc) / (1.0 + qc) < nu * nu / (1.0 + q):
            p1, p, nu, q, g1, g2, g3 = c1, pc, yc - pc, qc, h1, h2, h3
    fs[i, EST] = y0 + p
    residual = nu
    w = nu / math.sqrt(1.0 + q)

    calibrated = ist[i, CALIBRATED] == 1
    score = 0.0
    nis = 0.0
    zn = 0.0
    learn = True
    winsorized = False
    threshold = params[PARAM_THRESHOLD]
    if calibrated:
        r = max(fs[i, W2], R_FLOOR_ABS, (R_FLOOR_REL * y0) * (R_FLOOR_REL * y0), r_floor)
        zn = w / math.sqrt(r)
        nis = zn * zn
        learn = ist[i, ALARM] != ALARMED and (nis <= threshold or ist[i, STREAK] == 0)
        if nis > threshold and learn:
            # the first sample beyond the NIS bound may be a spike: winsorized onto the bound for
            # the update, the noise and the CUSUM, it neither drags theta nor starts a run
            winsorized = True
            nu = math.copysign(math.sqrt(threshold * r * (1.0 + q)), nu)
            w = nu / math.sqrt(1.0 + q)
            zn = w / math.sqrt(r)
    if learn:
        info = (a11, a12, a13, a22, a23, a33)
        _learn(fs, ist, i, info, p1, p2, g1, g2, g3, nu / (1.0 + q), w, horizon, 1.0 / horizon)
    if calibrated:
        cusum_k = params[PARAM_CUSUM_K]
        cusum_h = params[PARAM_CUSUM_H]
        fs[i, CP] = cusum(fs[i, CP], zn, cusum_k, cusum_h)
        fs[i, CM] = cusum(fs[i, CM], -zn, cusum_k, cusum_h)
        score = max(nis / threshold, max(fs[i, CP], fs[i, CM]) / cusum_h)
        alarm_on = int(params[PARAM_ALARM_ON])
        alarm_off = int(params[PARAM_ALARM_OFF])
        if alarm_step(ist.T, ALARM, STREAK, i, score, alarm_on, alarm_off):
            fs[i, CP] = 0.0
            fs[i, CM] = 0.0
    elif ist[i, N_UPD] >= params[PARAM_COMMISSIONING]:
        fs[i, CP] = 0.0
        fs[i, CM] = 0.0
        ist[i, ALARM] = NORMAL
        ist[i, STREAK] = 0
        ist[i, CALIBRATED] = 1
    return score, nis, residual, winsorized


_SIGNATURE = (
    "b1(f8[::1], f8[::1], u2[::1], u2[::1], f8[:, ::1], i8[:, ::1], f8[::1], f8[:, ::1],"
    " u1[:, ::1])"
)


# Compiled eagerly for exactly these types: a call with other types raises TypeError instead of
# compiling a variant, so the estimator can hand its inputs over unchecked and convert on error.
@numba.njit(_SIGNATURE, cache=True, nogil=True, error_model="numpy")
def lag_update(  # noqa: PLR0915, PLR0917 - the hot path inline; numba: no kw-only args
    values: npt.NDArray[np.float64],
    inputs: npt.NDArray[np.float64],
    quality: npt.NDArray[np.uint16],
    input_quality: npt.NDArray[np.uint16],
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    params: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64],
    flags: npt.NDArray[np.uint8],
) -> bool:
    """Advance every point by one tick (``out`` rows: ``OUT_*``; ``flags``: alarm, initialized
    as 0 or 1).

    ``params``: the ``PARAM_*`` scalars, then per point the floor of ``r`` (noise_floor^2).

    Returns False, having changed nothing, when the array shapes do not fit together.
    """
    n = fs.shape[0]
    if (
        values.shape[0] != n
        or inputs.shape[0] != n
        or quality.shape[0] != n
        or input_quality.shape[0] != n
        or ist.shape[0] != n
        or out.shape[1] != n
        or flags.shape[1] != n
        or fs.shape[1] != N_FLOAT
        or ist.shape[1] != N_INT
        or out.shape[0] != N_OUT
        or flags.shape[0] != N_FLAGS
        or params.shape[0] != N_PARAM + n
    ):
        return False
    threshold = params[PARAM_THRESHOLD]
    cusum_k = params[PARAM_CUSUM_K]
    cusum_h = params[PARAM_CUSUM_H]
    alarm_on = int(params[PARAM_ALARM_ON])
    alarm_off = int(params[PARAM_ALARM_OFF])
    horizon = params[PARAM_HORIZON]
    inv_horizon = 1.0 / horizon
    lam = 1.0 - inv_horizon
    ist_t = ist.T  # rows x points, as the shared alarm step indexes it
    for i in range(n):
        y = values[i]
        u = inputs[i]
        # False for NaN and inf
        good = quality[i] == 0 and input_quality[i] == 0 and abs(y) <= MAX_ABS
        good = good and abs(u) <= MAX_ABS
        chain = ist[i, CHAIN]
        score = 0.0
        nis = 0.0
        residual = 0.0
        if good and chain == 1 and ist[i, CALIBRATED] == 1:
            # the steady state: a calibrated point continues its chain
            p1 = fs[i, YP]
            p2 = fs[i, UP]
            a11, a12, a13, a22, a23, a33, l21, l31, l32, d1, d2, d3 = _factor(fs, i, lam)
            y0 = fs[i, Y0]
            yc = y - y0
            p = _predict_from(fs, i, p1, p2)
            nu = yc - p
            q, g1, g2, g3 = _solve(l21, l31, l32, d1, d2, d3, p1, p2)
            fs[i, EST] = y0 + p
            residual = nu
            root_s = math.sqrt(1.0 + q)
            w = nu / root_s
            r = max(
                fs[i, W2], R_FLOOR_ABS, (R_FLOOR_REL * y0) * (R_FLOOR_REL * y0), params[N_PARAM + i]
            )
            root_r = math.sqrt(r)
            zn = w / root_r
            nis = zn * zn
            learn = ist[i, ALARM] != ALARMED and (nis <= threshold or ist[i, STREAK] == 0)
            winsorized = nis > threshold and learn
            if winsorized:
                # the first sample beyond the NIS bound may be a spike: winsorized onto the
                # bound for the update, the noise and the CUSUM (see _step)
                nu = math.copysign(math.sqrt(threshold * r * (1.0 + q)), nu)
                w = nu / root_s
                zn = w / root_r
            if learn:
                info = (a11, a12, a13, a22, a23, a33)
                _learn(
                    fs, ist, i, info, p1, p2, g1, g2, g3, nu / (1.0 + q), w, horizon, inv_horizon
                )
            cp = cusum(fs[i, CP], zn, cusum_k, cusum_h)
            cm = cusum(fs[i, CM], -zn, cusum_k, cusum_h)
            score = max(nis / threshold, max(cp, cm) / cusum_h)
            if alarm_step(ist_t, ALARM, STREAK, i, score, alarm_on, alarm_off):
                cp = 0.0
                cm = 0.0
            fs[i, CP] = cp
            fs[i, CM] = cm
            fs[i, YP] = yc
            fs[i, UP] = u - fs[i, U0]
            ist[i, CHAIN] = WINSORIZED if winsorized else 1
        elif good:
            if ist[i, SEEDED] == 0:
                fs[i, Y0] = y
                fs[i, U0] = u
                ist[i, SEEDED] = 1
            yc = y - fs[i, Y0]
            winsorized = False
            if chain != 0:
                score, nis, residual, winsorized = _step(
                    fs, ist, params, i, yc, params[N_PARAM + i]
                )
            else:
                fs[i, EST] = y
            fs[i, YP] = yc
            fs[i, UP] = u - fs[i, U0]
            ist[i, CHAIN] = WINSORIZED if winsorized else 1
        else:
            if chain != 0:
                fs[i, EST] = fs[i, Y0] + _predict_from(fs, i, fs[i, YP], fs[i, UP])
            ist[i, CHAIN] = 0
        a = min(max(fs[i, TA], 0.0), A_MAX)
        out[OUT_ESTIMATE, i] = fs[i, EST]
        out[OUT_SCORE, i] = score
        out[OUT_NIS, i] = nis
        out[OUT_GAIN, i] = fs[i, TB] / (1.0 - a)
        out[OUT_TAU, i] = -1.0 / math.log(a) if a > 0.0 else 0.0
        out[OUT_RESIDUAL, i] = residual
        flags[0, i] = ist[i, ALARM]
        flags[1, i] = ist[i, SEEDED] == 1
    return True
