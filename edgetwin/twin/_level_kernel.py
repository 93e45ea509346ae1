"""Numba kernel of the level estimator: arrays in, outputs written in place, no allocation.

State is batched over points but point-major: ``fs`` (float64, points x ``N_FLOAT``) and ``ist``
(int64, points x ``N_INT``); the constants below name the columns (``state()`` hands them out by
field, as the former rows x points layout held them). Scalar parameters and the per-point floor of
``r`` arrive packed in one float64 array (``PARAM_*``, then one per point); outputs are rows
(estimate, score, nis) x points and rows (alarm, initialized) x points of uint8: seven array
arguments instead of sixteen. The semantics are documented in :mod:`edgetwin.twin.level`. The
steady-state path is written out in the loop with the small helpers inlined; commissioning is a
call. Results are bit-identical to the former kernel: tables give exactly ``max(1/n, 1/horizon)``
and ``sqrt(min(n, horizon))``, and every division stays a division. Measured per point-update (best
of 15 runs of consecutive ticks; 100 / 10 000 / 100 000 points; 2-core Zen 4 VM): former kernel 67
/ 50 / 52 ns, now 21.5 / 12.3 / 12.6 ns (trend: 22 / 10 / 13.5); single-point ``update(out=)`` 1.48
-> 0.71 us (trend 0.96). By step, at 10 000 points: point-major, inlined, eagerly compiled 13.6 ns;
the square root, CUSUM and score before the learning, so their chain of latencies overlaps it, 12.4
ns; two fewer array arguments -0.2 us per call (dispatch is ~0.1 us per array).
``error_model="numpy"`` alone, locals instead of reloads in the learning and columns padded to 16
made no measurable difference. Multiplying by ``1/s``, ``1/threshold`` and ``1/cusum_h`` gave 10.5
ns at 10 000 points but changes results in the last bits, so it is not done.
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
X = 0  # level estimate (running mean while commissioning)
P = 1  # estimate variance
Q = 2  # process noise per tick
R = 3  # measurement noise
CP = 4  # CUSUM, upward
CM = 5  # CUSUM, downward
MEAN = 6  # mean of the commissioning values
VAR = 7  # variance of the commissioning values
LAST = 8  # last sample of the current chain of consecutive learnable samples
DPREV = 9  # last first difference of that chain
DMEAN = 10  # weighted mean of first differences
DVAR = 11  # weighted variance of first differences
PMX = 12  # weighted mean of the earlier difference of lag-1 pairs
PMY = 13  # weighted mean of the later difference of lag-1 pairs
PCOV = 14  # weighted covariance of lag-1 pairs (the lag-1 autocovariance of differences)
N_FLOAT = 15
FLOAT_FIELDS = (
    "x",
    "p",
    "q",
    "r",
    "cusum_pos",
    "cusum_neg",
    "mean",
    "var",
    "last",
    "diff_prev",
    "diff_mean",
    "diff_var",
    "pair_mean_prev",
    "pair_mean_next",
    "pair_cov",
)

# int columns of ``ist``
N_GOOD = 0  # good samples seen while commissioning
CALIBRATED = 1  # 1 once commissioning has ended
ALARM = 2  # Alarm state
STREAK = 3  # consecutive samples towards the next alarm transition
CHAIN = 4  # length of the current chain of consecutive learnable samples, capped at 2
DN = 5  # number of first differences learnt
PN = 6  # number of lag-1 pairs learnt
N_INT = 7
INT_FIELDS = ("n_good", "calibrated", "alarm", "streak", "chain", "diff_n", "pair_n")

# positions in the packed parameter array
# (the PARAM_* of _detect, and no others)
N_PARAMS = N_DETECT_PARAMS  # then the per-point floor of r, the square of the noise_floor

R_FLOOR_ABS = 1e-12
R_FLOOR_REL = 1e-6
Q_FLOOR_FRAC = 1e-3
Q_MARGIN = 1.5  # standard errors of the q estimate added to it: se(q) ~ 1.5 var(d) / sqrt(n)
NOISE_HORIZON = 1000  # samples; difference statistics are exact averages up to this many

# max(1/n, 1/horizon) and sqrt(min(n, horizon)) for n <= NOISE_HORIZON: the same doubles
_INV = np.array([0.0] + [1.0 / n for n in range(1, NOISE_HORIZON + 1)])
_SQRT = np.array([math.sqrt(n) for n in range(NOISE_HORIZON + 1)])

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_inline = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")


@_inline
def _learn_differences(
    fs: npt.NDArray[np.float64], ist: npt.NDArray[np.int64], i: int, z: float
) -> None:
    chain = ist[i, CHAIN]
    if chain >= 1:
        d = z - fs[i, LAST]
        dn = ist[i, DN] + 1
        ist[i, DN] = dn
        w = _INV[min(dn, NOISE_HORIZON)]
        delta = d - fs[i, DMEAN]
        fs[i, DMEAN] += w * delta
        fs[i, DVAR] = (1.0 - w) * (fs[i, DVAR] + w * delta * delta)
        if chain >= 2:
            pn = ist[i, PN] + 1
            ist[i, PN] = pn
            w = _INV[min(pn, NOISE_HORIZON)]
            da = fs[i, DPREV] - fs[i, PMX]
            fs[i, PMX] += w * da
            pmy = fs[i, PMY] + w * (d - fs[i, PMY])
            fs[i, PMY] = pmy
            fs[i, PCOV] = (1.0 - w) * fs[i, PCOV] + w * da * (d - pmy)
        fs[i, DPREV] = d
        ist[i, CHAIN] = 2
    else:
        ist[i, CHAIN] = 1
    fs[i, LAST] = z


@_inline
def _estimate_noise(
    fs: npt.NDArray[np.float64], ist: npt.NDArray[np.int64], i: int, r_floor: float
) -> None:
    pn = ist[i, PN]
    if pn >= 2:
        var_d = fs[i, DVAR]
        r = min(max(-fs[i, PCOV], 0.0), 0.5 * var_d)
        q = var_d - 2.0 * r + Q_MARGIN * var_d / _SQRT[min(pn, NOISE_HORIZON)]
    else:
        # too few consecutive samples to split the spread: call it all measurement noise
        r = fs[i, VAR]
        q = 0.0
    r = max(r, R_FLOOR_ABS, (R_FLOOR_REL * fs[i, MEAN]) ** 2, r_floor)
    fs[i, R] = r
    fs[i, Q] = max(q, Q_FLOOR_FRAC * r)


@_jit
def _commission(  # noqa: PLR0917 - numba takes no keyword-only arguments
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    i: int,
    z: float,
    commissioning: int,
    r_floor: float,
) -> None:
    n = ist[i, N_GOOD] + 1
    ist[i, N_GOOD] = n
    w = 1.0 / n
    delta = z - fs[i, MEAN]
    fs[i, MEAN] += w * delta
    fs[i, VAR] = (1.0 - w) * (fs[i, VAR] + w * delta * delta)
    _learn_differences(fs, ist, i, z)
    fs[i, X] = fs[i, MEAN]
    if n >= commissioning:
        _estimate_noise(fs, ist, i, r_floor)
        fs[i, P] = fs[i, R]
        fs[i, CP] = 0.0
        fs[i, CM] = 0.0
        ist[i, ALARM] = NORMAL
        ist[i, STREAK] = 0
        ist[i, CALIBRATED] = 1


_SIGNATURE = "b1(f8[::1], u2[::1], f8[:, ::1], i8[:, ::1], f8[::1], f8[:, ::1], u1[:, ::1])"


# Compiled eagerly for exactly these types: a call with other types raises TypeError instead of
# compiling a variant, so the estimator can hand its inputs over unchecked and convert on error.
@numba.njit(_SIGNATURE, cache=True, nogil=True, error_model="numpy")
def level_update(  # noqa: PLR0915, PLR0917 - the hot path inline; no keyword-only args in numba
    values: npt.NDArray[np.float64],
    quality: npt.NDArray[np.uint16],
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    params: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64],
    flags: npt.NDArray[np.uint8],
) -> bool:
    """Advance every point by one tick (``out`` rows: estimate, score, nis; ``flags``: alarm,
    initialized as 0 or 1).

    ``params``: the ``PARAM_*`` scalars, then per point the floor of ``r``.

    Returns False, having changed nothing, when the array shapes do not fit together.
    """
    n = fs.shape[0]
    if (
        values.shape[0] != n
        or quality.shape[0] != n
        or ist.shape[0] != n
        or out.shape[1] != n
        or flags.shape[1] != n
        or fs.shape[1] != N_FLOAT
        or ist.shape[1] != N_INT
        or out.shape[0] != 3
        or flags.shape[0] != 2
        or params.shape[0] != N_PARAMS + n
    ):
        return False
    commissioning = int(params[PARAM_COMMISSIONING])
    threshold = params[PARAM_THRESHOLD]
    cusum_k = params[PARAM_CUSUM_K]
    cusum_h = params[PARAM_CUSUM_H]
    alarm_on = int(params[PARAM_ALARM_ON])
    alarm_off = int(params[PARAM_ALARM_OFF])
    ist_t = ist.T  # rows x points, as the shared alarm step indexes it
    for i in range(n):
        z = values[i]
        good = quality[i] == 0 and abs(z) <= MAX_ABS  # False for NaN and inf
        if ist[i, CALIBRATED] != 1:
            if good:
                _commission(fs, ist, i, z, commissioning, params[N_PARAMS + i])
            else:
                ist[i, CHAIN] = 0
            out[0, i] = fs[i, X]
            out[1, i] = 0.0
            out[2, i] = 0.0
            flags[0, i] = ist[i, ALARM]
            flags[1, i] = ist[i, CALIBRATED] == 1 or ist[i, N_GOOD] > 0
            continue
        if not good:
            ist[i, CHAIN] = 0
            fs[i, P] += fs[i, Q]
            out[0, i] = fs[i, X]
            out[1, i] = 0.0
            out[2, i] = 0.0
            flags[0, i] = ist[i, ALARM]
            flags[1, i] = 1
            continue
        # predict and update; the CUSUM and score before learning, so that their chain of
        # square root and divisions overlaps the learning's work instead of following it
        x = fs[i, X]
        p_pred = fs[i, P] + fs[i, Q]
        s = p_pred + fs[i, R]
        root = math.sqrt(s)
        nu = z - x
        nis = nu * nu / s
        u = nu / root
        learn = ist[i, ALARM] != ALARMED and (nis <= threshold or ist[i, STREAK] == 0)
        if nis > threshold and learn:
            # the first sample beyond the NIS bound may be a spike: winsorized onto the bound
            # for the update, learning and CUSUM, it neither drags the level nor starts a run
            nu = math.copysign(math.sqrt(threshold * s), nu)
            z = x + nu
            u = nu / root
        k = p_pred / s
        x += k * nu
        fs[i, X] = x
        fs[i, P] = (1.0 - k) * p_pred
        cp = cusum(fs[i, CP], u, cusum_k, cusum_h)
        cm = cusum(fs[i, CM], -u, cusum_k, cusum_h)
        score = max(nis / threshold, max(cp, cm) / cusum_h)
        if learn:
            _learn_differences(fs, ist, i, z)
            _estimate_noise(fs, ist, i, params[N_PARAMS + i])
        else:
            ist[i, CHAIN] = 0
        if alarm_step(ist_t, ALARM, STREAK, i, score, alarm_on, alarm_off):
            cp = 0.0
            cm = 0.0
        fs[i, CP] = cp
        fs[i, CM] = cm
        out[0, i] = x
        out[1, i] = score
        out[2, i] = nis
        flags[0, i] = ist[i, ALARM]
        flags[1, i] = 1
    return True
