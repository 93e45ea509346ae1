"""Numba kernel of the trend estimator: arrays in, outputs written in place, no allocation.

State is batched over points but point-major: ``fs`` (float64, points x ``N_FLOAT``) and ``ist``
(int64, points x ``N_INT``); the constants below name the columns. Unlike the level kernel's
rows x points, this keeps one point's fields at fixed offsets from one pointer: the loop is
branchy scalar code (no SIMD either way), and with ~30 rows x points it spent its time reloading
spilled row pointers (measured: 15.6 vs 11.2 ns per point-update at 10 000 points). Scalar
parameters arrive packed in one float64 array (``PARAM_*``) to keep the call cheap. Outputs are
rows (estimate, rate, score, nis) x points. The semantics are documented in
:mod:`edgetwin.twin.trend`. The steady-state path (a good sample of a calibrated point) is
written out in the loop, with one division and no call; the rare steps (commissioning, a
completed block, the noise update every ``NOISE_EVERY`` pairs) are helpers. The loop is bound
by instructions, not memory: a hot/cold split of the state (160 instead of 272 B per update)
was no faster at 10 000 points (the time per point is the same while the state fits in L2), 7 %
slower at 100 points and ~0.1 us slower per call; a prange version gained 15 % on two cores.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from edgetwin.twin._detect import ALARMED, MAX_ABS, NORMAL, alarm_step, cusum

# float columns of ``fs``
XL = 0  # level estimate
XR = 1  # rate estimate, per tick
PLL = 2  # estimate covariance: level variance
PLR = 3  # level-rate covariance
PRR = 4  # rate variance
QL = 5  # level process noise per tick
QR = 6  # rate process noise per tick
R = 7  # measurement noise
CP = 8  # CUSUM upward, in units of h
CM = 9  # CUSUM downward, in units of h
LAST = 10  # last sample of the current run of consecutive learnable samples
DPREV = 11  # the run's last first difference (centred on the rate once calibrated)
DV = 12  # weighted variance of first differences (of d[t] in lag-1 pairs)
C1 = 13  # weighted covariance of lag-1 pairs (d[t-1], d[t])
BSUM = 14  # sum of the current block's samples
HV = 15  # weighted mean of squared second differences of block means
QRE = 16  # q_rate from the blocks, before its floor
BM1 = 17  # mean of the run's last complete block
BM2 = 18  # mean of the block before it
DM = 19  # mean of d[t] in lag-1 pairs (commissioning)
PM = 20  # mean of d[t-1] in lag-1 pairs (commissioning)
TICK = 21  # tick of the current sample, counted from the first good one (commissioning)
MT = 22  # mean tick of the commissioning samples
MZ = 23  # mean of the commissioning values
VT = 24  # variance of their ticks
VZ = 25  # variance of the values
CTZ = 26  # covariance of ticks and values
N_FLOAT = 27
FLOAT_FIELDS = (
    "level",
    "rate",
    "p_ll",
    "p_lr",
    "p_rr",
    "q_level",
    "q_rate",
    "r",
    "cusum_pos",
    "cusum_neg",
    "last",
    "diff_prev",
    "diff_var",
    "diff_cov",
    "block_sum",
    "block_hvar",
    "q_rate_blocks",
    "block_mean_prev",
    "block_mean_prev2",
    "diff_mean",
    "diff_mean_prev",
    "tick",
    "mean_tick",
    "mean",
    "var_tick",
    "var",
    "cov_tick",
)

# int columns of ``ist``
N_GOOD = 0  # good samples seen while commissioning
CALIBRATED = 1  # 1 once commissioning has ended
ALARM = 2  # Alarm state
STREAK = 3  # consecutive samples towards the next alarm transition
RUN = 4  # length of the current run of consecutive learnable samples
PN = 5  # lag-1 pairs of first differences learnt
BLN = 6  # second differences of block means learnt
N_INT = 7
INT_FIELDS = ("n_good", "calibrated", "alarm", "streak", "run", "pair_n", "block_n")

# positions in the packed parameter array
PARAM_COMMISSIONING = 0
PARAM_THRESHOLD = 1
PARAM_INV_THRESHOLD = 2  # 1 / threshold
PARAM_K_OVER_H = 3  # cusum_k / cusum_h
PARAM_INV_H = 4  # 1 / cusum_h
PARAM_ALARM_ON = 5
PARAM_ALARM_OFF = 6
N_PARAMS = 7

R_FLOOR_ABS = 1e-12
R_FLOOR_REL = 1e-6
QL_FLOOR_FRAC = 1e-3  # of r
QR_FLOOR_FRAC = 1e-6  # of r
QL_MARGIN = 1.5  # standard errors of q_level: se ~ 1.5 var(d) / sqrt(n)
QR_MARGIN = 2.0  # standard errors of the block statistic: se ~ 2 hvar / sqrt(n)
NOISE_HORIZON = 1000  # pairs or blocks; statistics are exact averages up to this many
NOISE_EVERY = 16  # pairs between two updates of r and q_level
BLOCK = 32  # samples per block


def block_weights(b: int) -> tuple[float, float, float]:
    """E[f^2] = w_r r + w_l q_level + w_q q_rate, f: second difference of means of b samples."""
    return 6.0 / b, b + 1.0 / b, 11.0 * b**3 / 20.0 + b / 4.0 + 1.0 / (5.0 * b)


INV_BLOCK = 1.0 / BLOCK
W_R, W_L, W_Q = block_weights(BLOCK)
INV_W_Q = 1.0 / W_Q
# before the blocks say anything: the margin that one block of 16 samples would give
_PRIOR_R, _PRIOR_L, _PRIOR_Q = block_weights(16)
PRIOR_R = QR_MARGIN * _PRIOR_R / _PRIOR_Q
PRIOR_L = QR_MARGIN * _PRIOR_L / _PRIOR_Q

# 1/n and sqrt(1/n) for n <= NOISE_HORIZON, then their values at NOISE_HORIZON
_INV = np.array([0.0] + [1.0 / n for n in range(1, NOISE_HORIZON + 1)])
_SQRT_INV = np.array([0.0] + [math.sqrt(1.0 / n) for n in range(1, NOISE_HORIZON + 1)])

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_inline = numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")


@_inline
def _weight(n: int) -> float:
    """``max(1/n, 1/horizon)``: exact averages first, exponential forgetting after."""
    return float(_INV[min(n, NOISE_HORIZON)])


@_inline
def _sqrt_weight(n: int) -> float:
    return float(_SQRT_INV[min(n, NOISE_HORIZON)])


@_inline
def _split_differences(fs: npt.NDArray[np.float64], i: int) -> tuple[float, float]:
    """(r, q_level) from the lag-1 pair statistics of first differences, before margins."""
    dv = fs[i, DV]
    r = min(max(-fs[i, C1], 0.0), 0.5 * dv)
    return r, dv - 2.0 * r


@_jit
def _set_noise(
    fs: npt.NDArray[np.float64], ist: npt.NDArray[np.int64], i: int, r_floor: float
) -> None:
    """r and q_level from the pair statistics (or the line fit), floored; q_rate's floor."""
    pn = ist[i, PN]
    if pn >= 2:
        r, ql0 = _split_differences(fs, i)
        ql = ql0 + QL_MARGIN * fs[i, DV] * _sqrt_weight(pn)
    else:
        # too few consecutive samples to split the spread: call it all measurement noise
        vt = fs[i, VT]
        r = fs[i, VZ] - fs[i, CTZ] * fs[i, CTZ] / vt if vt > 0.0 else fs[i, VZ]
        ql0 = ql = 0.0
    r = max(r, R_FLOOR_ABS, (R_FLOOR_REL * fs[i, MZ]) ** 2, r_floor)
    ql = max(ql, QL_FLOOR_FRAC * r)
    fs[i, R] = r
    fs[i, QL] = ql
    if ist[i, BLN] < 2:
        # no block statistic yet: a prior from r and q_level (without its margin, which is
        # large early on; curvature inflates q_level, so smooth data gets a larger prior)
        fs[i, QRE] = PRIOR_R * r + PRIOR_L * ql0
    fs[i, QR] = max(fs[i, QRE], QR_FLOOR_FRAC * r)


@_jit
def _block_done(fs: npt.NDArray[np.float64], ist: npt.NDArray[np.int64], i: int) -> None:
    """A block of the run is complete: learn from its mean, update q_rate, shift the means."""
    mean = fs[i, BSUM] * INV_BLOCK
    if ist[i, RUN] >= 3 * BLOCK:
        f = mean - 2.0 * fs[i, BM1] + fs[i, BM2]
        bn = ist[i, BLN] + 1
        ist[i, BLN] = bn
        hv = fs[i, HV] + _weight(bn) * (f * f - fs[i, HV])
        fs[i, HV] = hv
        if bn >= 2:
            r, ql = _split_differences(fs, i)
            qr = (max(hv - W_R * r - W_L * ql, 0.0) + QR_MARGIN * hv * _sqrt_weight(bn)) * INV_W_Q
            fs[i, QRE] = qr
            fs[i, QR] = max(qr, QR_FLOOR_FRAC * fs[i, R])
    fs[i, BM2] = fs[i, BM1]
    fs[i, BM1] = mean


@_jit
def _extend_block(
    fs: npt.NDArray[np.float64], ist: npt.NDArray[np.int64], i: int, z: float
) -> None:
    """Count ``z`` into the run (already extended with it) and its current block."""
    fill = ist[i, RUN] % BLOCK
    if fill == 1:
        fs[i, BSUM] = z
    else:
        fs[i, BSUM] += z
        if fill == 0:
            _block_done(fs, ist, i)


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
    dt = fs[i, TICK] - fs[i, MT]
    dz = z - fs[i, MZ]
    fs[i, MT] += w * dt
    fs[i, MZ] += w * dz
    fs[i, VT] = (1.0 - w) * (fs[i, VT] + w * dt * dt)
    fs[i, VZ] = (1.0 - w) * (fs[i, VZ] + w * dz * dz)
    fs[i, CTZ] = (1.0 - w) * (fs[i, CTZ] + w * dt * dz)
    # differences: running (Welford) means, variance and lag-1 covariance
    run = ist[i, RUN]
    if run >= 1:
        d = z - fs[i, LAST]
        if run >= 2:
            pn = ist[i, PN] + 1
            ist[i, PN] = pn
            wp = _weight(pn)
            da = fs[i, DPREV] - fs[i, PM]
            fs[i, PM] += wp * da
            db = d - fs[i, DM]
            fs[i, DM] += wp * db
            fs[i, DV] = (1.0 - wp) * (fs[i, DV] + wp * db * db)
            fs[i, C1] = (1.0 - wp) * fs[i, C1] + wp * da * (d - fs[i, DM])
        fs[i, DPREV] = d
    fs[i, LAST] = z
    ist[i, RUN] = run + 1
    _extend_block(fs, ist, i, z)
    _fit_line(fs, i)
    if n >= commissioning:
        _set_noise(fs, ist, i, r_floor)
        # covariance of the least-squares line at this tick, with sigma^2 >= r
        vt = fs[i, VT]
        sigma2 = max(fs[i, VZ] - fs[i, CTZ] * fs[i, CTZ] / vt, fs[i, R])
        sxx = n * vt
        dt = fs[i, TICK] - fs[i, MT]
        fs[i, PLL] = sigma2 * (1.0 / n + dt * dt / sxx)
        fs[i, PLR] = sigma2 * dt / sxx
        fs[i, PRR] = sigma2 / sxx
        fs[i, DPREV] -= fs[i, XR]  # from now on differences are centred on the rate
        fs[i, CP] = 0.0
        fs[i, CM] = 0.0
        ist[i, ALARM] = NORMAL
        ist[i, STREAK] = 0
        ist[i, CALIBRATED] = 1


@_jit
def _fit_line(fs: npt.NDArray[np.float64], i: int) -> None:
    """Level (at the current tick) and rate of the commissioning samples' least-squares line."""
    vt = fs[i, VT]
    slope = fs[i, CTZ] / vt if vt > 0.0 else 0.0
    fs[i, XR] = slope
    fs[i, XL] = fs[i, MZ] + slope * (fs[i, TICK] - fs[i, MT])


@_jit
def _not_calibrated(  # noqa: PLR0917 - numba takes no keyword-only arguments
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    i: int,
    z: float,
    good: bool,
    commissioning: int,
    r_floor: float,
) -> None:
    started = ist[i, N_GOOD] > 0
    if started:
        fs[i, TICK] += 1.0
    if good:
        _commission(fs, ist, i, z, commissioning, r_floor)
    else:
        ist[i, RUN] = 0
        if started:
            _fit_line(fs, i)


_SIGNATURE = (
    "b1(f8[::1], u2[::1], f8[:, ::1], i8[:, ::1], f8[::1], f8[::1], f8[:, ::1], u1[::1], b1[::1])"
)


# Compiled eagerly for exactly these types: a call with other types raises TypeError instead of
# compiling a variant, so the estimator can hand its inputs over unchecked and convert on error.
@numba.njit(_SIGNATURE, cache=True, nogil=True, error_model="numpy")
def trend_update(  # noqa: PLR0915, PLR0917 - the hot path inline; no keyword-only args in numba
    values: npt.NDArray[np.float64],
    quality: npt.NDArray[np.uint16],
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    params: npt.NDArray[np.float64],
    r_floor: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64],
    out_alarm: npt.NDArray[np.uint8],
    out_initialized: npt.NDArray[np.bool_],
) -> bool:
    """Advance every point by one tick (``out`` rows: estimate, rate, score, nis).

    ``r_floor`` is the per-point floor of ``r``, the square of the estimator's ``noise_floor``.

    Returns False, having changed nothing, when the array shapes do not fit together.
    """
    n = fs.shape[0]
    if (
        values.shape[0] != n
        or quality.shape[0] != n
        or ist.shape[0] != n
        or r_floor.shape[0] != n
        or out.shape[1] != n
        or out_alarm.shape[0] != n
        or out_initialized.shape[0] != n
        or fs.shape[1] != N_FLOAT
        or ist.shape[1] != N_INT
        or out.shape[0] != 4
        or params.shape[0] != N_PARAMS
    ):
        return False
    commissioning = int(params[PARAM_COMMISSIONING])
    threshold = params[PARAM_THRESHOLD]
    inv_threshold = params[PARAM_INV_THRESHOLD]
    k_over_h = params[PARAM_K_OVER_H]
    inv_h = params[PARAM_INV_H]
    alarm_on = int(params[PARAM_ALARM_ON])
    alarm_off = int(params[PARAM_ALARM_OFF])
    ist_t = ist.T  # rows x points, as the shared alarm step indexes it
    for i in range(n):
        z = values[i]
        good = quality[i] == 0 and abs(z) <= MAX_ABS  # False for NaN and inf
        if ist[i, CALIBRATED] != 1:
            _not_calibrated(fs, ist, i, z, good, commissioning, r_floor[i])
            out[0, i] = fs[i, XL]
            out[1, i] = fs[i, XR]
            out[2, i] = 0.0
            out[3, i] = 0.0
            out_alarm[i] = ist[i, ALARM]
            out_initialized[i] = ist[i, CALIBRATED] == 1 or ist[i, N_GOOD] > 0
            continue
        # predict
        xr = fs[i, XR]
        xl = fs[i, XL] + xr
        plr = fs[i, PLR]
        prr = fs[i, PRR]
        pll = fs[i, PLL] + 2.0 * plr + prr + fs[i, QL]
        plr += prr
        prr += fs[i, QR]
        if not good:
            ist[i, RUN] = 0
            fs[i, XL] = xl
            fs[i, PLL] = pll
            fs[i, PLR] = plr
            fs[i, PRR] = prr
            out[0, i] = xl
            out[1, i] = xr
            out[2, i] = 0.0
            out[3, i] = 0.0
            out_alarm[i] = ist[i, ALARM]
            out_initialized[i] = True
            continue
        # update
        r = fs[i, R]
        s = pll + r
        s_inv = 1.0 / s
        root = math.sqrt(s)  # independent of the division: both run at once
        nu = z - xl
        nis = nu * nu * s_inv
        if nis > threshold and ist[i, ALARM] != ALARMED and ist[i, STREAK] == 0:
            # the first sample beyond the NIS bound may be a spike: winsorized onto the bound
            # for the update, learning and CUSUM, it neither drags the state nor starts a run
            nu = math.copysign(math.sqrt(threshold * s), nu)
            z = xl + nu
        k_r = plr * s_inv
        xl_new = xl + pll * s_inv * nu
        xr_new = xr + k_r * nu
        keep = r * s_inv  # 1 - gain of the level
        fs[i, XL] = xl_new
        fs[i, XR] = xr_new
        fs[i, PLL] = pll * keep
        fs[i, PLR] = plr * keep
        fs[i, PRR] = prr - k_r * plr
        # learn: first differences centred on the predicted rate, and blocks
        if ist[i, ALARM] != ALARMED and (nis <= threshold or ist[i, STREAK] == 0):
            run = ist[i, RUN]
            if run >= 1:
                d = z - fs[i, LAST] - xr
                if run >= 2:
                    pn = ist[i, PN] + 1
                    ist[i, PN] = pn
                    w = _weight(pn)
                    fs[i, DV] += w * (d * d - fs[i, DV])
                    fs[i, C1] += w * (d * fs[i, DPREV] - fs[i, C1])
                    if pn % NOISE_EVERY == 0:
                        _set_noise(fs, ist, i, r_floor[i])
                fs[i, DPREV] = d
            fs[i, LAST] = z
            run += 1
            ist[i, RUN] = run
            fill = run % BLOCK  # as in _extend_block, written out to stay inlined
            if fill == 1:
                fs[i, BSUM] = z
            else:
                fs[i, BSUM] += z
                if fill == 0:
                    _block_done(fs, ist, i)
        else:
            ist[i, RUN] = 0
        # detect
        u = nu * s_inv * root * inv_h
        cp = cusum(fs[i, CP], u, k_over_h, 1.0)
        cm = cusum(fs[i, CM], -u, k_over_h, 1.0)
        score = max(nis * inv_threshold, cp, cm)
        if alarm_step(ist_t, ALARM, STREAK, i, score, alarm_on, alarm_off):
            cp = 0.0
            cm = 0.0
        fs[i, CP] = cp
        fs[i, CM] = cm
        out[0, i] = xl_new
        out[1, i] = xr_new
        out[2, i] = score
        out[3, i] = nis
        out_alarm[i] = ist[i, ALARM]
        out_initialized[i] = True
    return True
