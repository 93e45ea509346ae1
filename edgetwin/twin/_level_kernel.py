"""Numba kernels of the level estimator: arrays and scalars in, outputs written in place.

State is structure-of-arrays: ``fs`` (float64, ``N_FLOAT`` rows) and ``ist`` (int64, ``N_INT``
rows), one column per point; the row constants below name the rows. The semantics are
documented in :mod:`edgetwin.twin.level`.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from edgetwin.twin._detect import ALARMED, MAX_ABS, NORMAL, alarm_step, cusum

# float rows of ``fs``
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

# int rows of ``ist``
N_GOOD = 0  # good samples seen while commissioning
CALIBRATED = 1  # 1 once commissioning has ended
ALARM = 2  # Alarm state
STREAK = 3  # consecutive samples towards the next alarm transition
CHAIN = 4  # length of the current chain of consecutive learnable samples, capped at 2
DN = 5  # number of first differences learnt
PN = 6  # number of lag-1 pairs learnt
N_INT = 7
INT_FIELDS = ("n_good", "calibrated", "alarm", "streak", "chain", "diff_n", "pair_n")

R_FLOOR_ABS = 1e-12
R_FLOOR_REL = 1e-6
Q_FLOOR_FRAC = 1e-3
Q_MARGIN = 1.5  # standard errors of the q estimate added to it: se(q) ~ 1.5 var(d) / sqrt(n)
NOISE_HORIZON = 1000  # samples; difference statistics are exact averages up to this many


@numba.njit(cache=True, nogil=True)
def _learn_differences(
    fs: npt.NDArray[np.float64], ist: npt.NDArray[np.int64], i: int, z: float
) -> None:
    if ist[CHAIN, i] >= 1:
        d = z - fs[LAST, i]
        dn = ist[DN, i] + 1
        ist[DN, i] = dn
        w = max(1.0 / dn, 1.0 / NOISE_HORIZON)
        delta = d - fs[DMEAN, i]
        fs[DMEAN, i] += w * delta
        fs[DVAR, i] = (1.0 - w) * (fs[DVAR, i] + w * delta * delta)
        if ist[CHAIN, i] >= 2:
            pn = ist[PN, i] + 1
            ist[PN, i] = pn
            w = max(1.0 / pn, 1.0 / NOISE_HORIZON)
            da = fs[DPREV, i] - fs[PMX, i]
            fs[PMX, i] += w * da
            fs[PMY, i] += w * (d - fs[PMY, i])
            fs[PCOV, i] = (1.0 - w) * fs[PCOV, i] + w * da * (d - fs[PMY, i])
        fs[DPREV, i] = d
        ist[CHAIN, i] = 2
    else:
        ist[CHAIN, i] = 1
    fs[LAST, i] = z


@numba.njit(cache=True, nogil=True)
def _estimate_noise(
    fs: npt.NDArray[np.float64], ist: npt.NDArray[np.int64], i: int, r_floor: float
) -> None:
    pn = ist[PN, i]
    if pn >= 2:
        var_d = fs[DVAR, i]
        r = min(max(-fs[PCOV, i], 0.0), 0.5 * var_d)
        q = var_d - 2.0 * r + Q_MARGIN * var_d / math.sqrt(min(pn, NOISE_HORIZON))
    else:
        # too few consecutive samples to split the spread: call it all measurement noise
        r = fs[VAR, i]
        q = 0.0
    r = max(r, R_FLOOR_ABS, (R_FLOOR_REL * fs[MEAN, i]) ** 2, r_floor)
    fs[R, i] = r
    fs[Q, i] = max(q, Q_FLOOR_FRAC * r)


@numba.njit(cache=True, nogil=True)
def _commission(  # noqa: PLR0917 - numba takes no keyword-only arguments
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    i: int,
    z: float,
    commissioning: int,
    r_floor: float,
) -> None:
    n = ist[N_GOOD, i] + 1
    ist[N_GOOD, i] = n
    w = 1.0 / n
    delta = z - fs[MEAN, i]
    fs[MEAN, i] += w * delta
    fs[VAR, i] = (1.0 - w) * (fs[VAR, i] + w * delta * delta)
    _learn_differences(fs, ist, i, z)
    fs[X, i] = fs[MEAN, i]
    if n >= commissioning:
        _estimate_noise(fs, ist, i, r_floor)
        fs[P, i] = fs[R, i]
        fs[CP, i] = 0.0
        fs[CM, i] = 0.0
        ist[ALARM, i] = NORMAL
        ist[STREAK, i] = 0
        ist[CALIBRATED, i] = 1


@numba.njit(cache=True, nogil=True)
def _filter(  # noqa: PLR0917 - numba takes no keyword-only arguments
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    i: int,
    z: float,
    threshold: float,
    cusum_k: float,
    cusum_h: float,
    alarm_on: int,
    alarm_off: int,
    r_floor: float,
) -> tuple[float, float]:
    p_pred = fs[P, i] + fs[Q, i]
    s = p_pred + fs[R, i]
    nu = z - fs[X, i]
    nis = nu * nu / s
    if nis > threshold and ist[ALARM, i] != ALARMED and ist[STREAK, i] == 0:
        # the first sample beyond the NIS bound may be a spike: winsorized onto the bound for
        # the update, learning and CUSUM, it neither drags the level nor starts a run
        nu = math.copysign(math.sqrt(threshold * s), nu)
        z = fs[X, i] + nu
    k = p_pred / s
    fs[X, i] += k * nu
    fs[P, i] = (1.0 - k) * p_pred
    if ist[ALARM, i] != ALARMED and (nis <= threshold or ist[STREAK, i] == 0):
        _learn_differences(fs, ist, i, z)
        _estimate_noise(fs, ist, i, r_floor)
    else:
        ist[CHAIN, i] = 0
    u = nu / math.sqrt(s)
    fs[CP, i] = cusum(fs[CP, i], u, cusum_k, cusum_h)
    fs[CM, i] = cusum(fs[CM, i], -u, cusum_k, cusum_h)
    score = max(nis / threshold, max(fs[CP, i], fs[CM, i]) / cusum_h)
    if alarm_step(ist, ALARM, STREAK, i, score, alarm_on, alarm_off):
        fs[CP, i] = 0.0
        fs[CM, i] = 0.0
    return score, nis


@numba.njit(cache=True, nogil=True)
def level_update(  # noqa: PLR0917 - numba takes no keyword-only arguments
    values: npt.NDArray[np.float64],
    quality: npt.NDArray[np.uint16],
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    commissioning: int,
    threshold: float,
    cusum_k: float,
    cusum_h: float,
    alarm_on: int,
    alarm_off: int,
    r_floor: npt.NDArray[np.float64],
    out_estimate: npt.NDArray[np.float64],
    out_score: npt.NDArray[np.float64],
    out_nis: npt.NDArray[np.float64],
    out_alarm: npt.NDArray[np.uint8],
    out_initialized: npt.NDArray[np.bool_],
) -> None:
    """Advance every point by one tick and write its outputs (``r_floor``: noise_floor^2)."""
    for i in range(values.shape[0]):
        z = values[i]
        good = quality[i] == 0 and abs(z) <= MAX_ABS  # False for NaN and inf
        score = 0.0
        nis = 0.0
        if not good:
            ist[CHAIN, i] = 0
            if ist[CALIBRATED, i] == 1:
                fs[P, i] += fs[Q, i]
        elif ist[CALIBRATED, i] == 1:
            score, nis = _filter(
                fs, ist, i, z, threshold, cusum_k, cusum_h, alarm_on, alarm_off, r_floor[i]
            )
        else:
            _commission(fs, ist, i, z, commissioning, r_floor[i])
        out_estimate[i] = fs[X, i]
        out_score[i] = score
        out_nis[i] = nis
        out_alarm[i] = ist[ALARM, i]
        out_initialized[i] = ist[CALIBRATED, i] == 1 or ist[N_GOOD, i] > 0
