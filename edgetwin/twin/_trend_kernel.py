"""Numba kernel of the trend estimator: arrays in, outputs written in place, no allocation.

State is flat and chunked field-major: ``fs`` (float64) and ``ist`` (int64) hold, per chunk of
``CH`` points, one row of ``RS`` slots per field (the constants below name the fields), so field
``f`` of point ``c*CH + k`` is at ``c*RS*fields + f*RS + k``. The strides are compile-time
constants, so LLVM can prove the fields of a chunk apart and vectorises the common pass (8 lanes
with AVX-512) with runtime checks against the inputs only; with a runtime row stride (points x
fields or fields x points) it gave up ("too many memory checks"). ``RS`` is not a power of two:
at ``RS = CH`` the ~25 fields of a pass shared cache sets, 2x slower from 256 points per chunk.
The persisted state is not this layout: :mod:`edgetwin.twin.trend` converts. Fields past
``N_FLOAT`` are internal: the floor of ``r`` (a parameter) and this tick's score and nis.
Chunks are whole, so the chunk size is a compile-time choice per estimator (:func:`layout`): up
to ``SMALL_MAX`` = 1024 points ``CH, RS`` = 64, 80, above that 2048, 2064; :func:`_make` builds
the kernel for one, a closure over both (numba caches each as its own entry of one index). The
helpers of the scalar pass take ``rs`` as an argument (a constant once inlined). Tables of a 1-
or 20-point estimator: 23 KB (25-26 KB resident; 2048-point chunks: 597 KB, 270-530 KB).
Scalar parameters arrive packed in one float64 array (``PARAM_*``) to keep the call cheap;
outputs are rows (estimate, rate, score, nis) x points. The semantics are documented in
:mod:`edgetwin.twin.trend`.

Per chunk, three passes. The common pass takes every point, branch-free, and keeps the result of
a calibrated point not in ALARM with a good sample within the NIS bound that continues a run
(run >= 2) and scores < 1; the others keep their state and get nis -1. A scalar pass, only for a
chunk that needs it, runs the full step of those (commissioning, bad samples, winsorized
spikes, alarms, the start of a run) and the periodic learning of the others (the noise update
every ``NOISE_EVERY`` pairs, a completed block): points commission together, so these come in
step. Then the outputs are copied out, one vectorised loop per row.

Measured on a 2-core Zen 4 VM, kernel only, ns per point-update averaged over runs of 64 ticks
(the point-major scalar loop this replaced in brackets): 100 points 14 (19), 1000 5.9 (10.1),
10 000 6.0-6.9 (9.7-10.1), 100 000 10-13 (13-14); a typical tick 5.5 at 10 000 points, the
noise-update tick 8.5 and the block tick 16 (the scalar pass for every point). ``CH``: 256 gave
7-8 ns at 10 000 points and 18-20 at 100 000 (short field rows: the prefetcher loses them),
4096 no gain. Rejected: the single scalar loop with reads hoisted and the alarm step inlined
(3-4 % faster); two scalar passes, a common path that includes the periodic learning then a
scalar one, point-major or fields x points (8-18 % slower: no vectorisation); software
prefetch of the next chunk (no gain); ``fastmath`` contraction (not bit-identical). 64-point
chunks run as fast as 2048 up to ~1000 points (1 point 820 ns per call, 20: 49 ns per point,
100: 14, 512: 6.5) and lose from ~1500 (5 %; 10 000: 7.6-8.7, 100 000: 25).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from edgetwin.twin._detect import (
    ALARMED,
    MAX_ABS,
    NORMAL,
    WARN_LEVEL,
    WARNING,
    alarm_step,
    cusum,
)

# float fields of ``fs``
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
RFLOOR = 27  # internal: floor of r (the noise_floor squared), a parameter
SCORE = 28  # internal: this tick's score
NIS = 29  # internal: this tick's nis; < 0 marks a point the fast pass left
N_FLOAT_INTERNAL = 30
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

# int fields of ``ist``
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

CH = 2048  # points per chunk of the large variant
RS = CH + 16  # its slots per field and chunk: the field stride, not a power of two
SMALL_CH = 64  # points per chunk of the small variant
SMALL_RS = SMALL_CH + 16
SMALL_MAX = 1024  # estimators of up to this many points take the small variant

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
def _split_differences(fs: npt.NDArray[np.float64], j: int, rs: int) -> tuple[float, float]:
    """(r, q_level) from the lag-1 pair statistics of first differences, before margins."""
    dv = fs[j + rs * DV]
    r = min(max(-fs[j + rs * C1], 0.0), 0.5 * dv)
    return r, dv - 2.0 * r


@_inline
def _set_noise(  # noqa: PLR0917 - numba takes no keyword-only arguments
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    j: int,
    ji: int,
    r_floor: float,
    rs: int,
) -> None:
    """r and q_level from the pair statistics (or the line fit), floored; q_rate's floor."""
    pn = ist[ji + rs * PN]
    if pn >= 2:
        r, ql0 = _split_differences(fs, j, rs)
        ql = ql0 + QL_MARGIN * fs[j + rs * DV] * _sqrt_weight(pn)
    else:
        # too few consecutive samples to split the spread: call it all measurement noise
        vt = fs[j + rs * VT]
        r = (
            fs[j + rs * VZ] - fs[j + rs * CTZ] * fs[j + rs * CTZ] / vt
            if vt > 0.0
            else fs[j + rs * VZ]
        )
        ql0 = ql = 0.0
    r = max(r, R_FLOOR_ABS, (R_FLOOR_REL * fs[j + rs * MZ]) ** 2, r_floor)
    ql = max(ql, QL_FLOOR_FRAC * r)
    fs[j + rs * R] = r
    fs[j + rs * QL] = ql
    if ist[ji + rs * BLN] < 2:
        # no block statistic yet: a prior from r and q_level (without its margin, which is
        # large early on; curvature inflates q_level, so smooth data gets a larger prior)
        fs[j + rs * QRE] = PRIOR_R * r + PRIOR_L * ql0
    fs[j + rs * QR] = max(fs[j + rs * QRE], QR_FLOOR_FRAC * r)


@_inline
def _block_done(
    fs: npt.NDArray[np.float64], ist: npt.NDArray[np.int64], j: int, ji: int, rs: int
) -> None:
    """A block of the run is complete: learn from its mean, update q_rate, shift the means."""
    mean = fs[j + rs * BSUM] * INV_BLOCK
    if ist[ji + rs * RUN] >= 3 * BLOCK:
        f = mean - 2.0 * fs[j + rs * BM1] + fs[j + rs * BM2]
        bn = ist[ji + rs * BLN] + 1
        ist[ji + rs * BLN] = bn
        hv = fs[j + rs * HV] + _weight(bn) * (f * f - fs[j + rs * HV])
        fs[j + rs * HV] = hv
        if bn >= 2:
            r, ql = _split_differences(fs, j, rs)
            qr = (max(hv - W_R * r - W_L * ql, 0.0) + QR_MARGIN * hv * _sqrt_weight(bn)) * INV_W_Q
            fs[j + rs * QRE] = qr
            fs[j + rs * QR] = max(qr, QR_FLOOR_FRAC * fs[j + rs * R])
    fs[j + rs * BM2] = fs[j + rs * BM1]
    fs[j + rs * BM1] = mean


@_jit
def _extend_block(  # noqa: PLR0917 - numba takes no keyword-only arguments
    fs: npt.NDArray[np.float64], ist: npt.NDArray[np.int64], j: int, ji: int, z: float, rs: int
) -> None:
    """Count ``z`` into the run (already extended with it) and its current block."""
    fill = ist[ji + rs * RUN] % BLOCK
    if fill == 1:
        fs[j + rs * BSUM] = z
    else:
        fs[j + rs * BSUM] += z
        if fill == 0:
            _block_done(fs, ist, j, ji, rs)


@_jit
def _commission(  # noqa: PLR0917 - numba takes no keyword-only arguments
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    j: int,
    ji: int,
    z: float,
    commissioning: int,
    r_floor: float,
    rs: int,
) -> None:
    n = ist[ji + rs * N_GOOD] + 1
    ist[ji + rs * N_GOOD] = n
    w = 1.0 / n
    dt = fs[j + rs * TICK] - fs[j + rs * MT]
    dz = z - fs[j + rs * MZ]
    fs[j + rs * MT] += w * dt
    fs[j + rs * MZ] += w * dz
    fs[j + rs * VT] = (1.0 - w) * (fs[j + rs * VT] + w * dt * dt)
    fs[j + rs * VZ] = (1.0 - w) * (fs[j + rs * VZ] + w * dz * dz)
    fs[j + rs * CTZ] = (1.0 - w) * (fs[j + rs * CTZ] + w * dt * dz)
    # differences: running (Welford) means, variance and lag-1 covariance
    run = ist[ji + rs * RUN]
    if run >= 1:
        d = z - fs[j + rs * LAST]
        if run >= 2:
            pn = ist[ji + rs * PN] + 1
            ist[ji + rs * PN] = pn
            wp = _weight(pn)
            da = fs[j + rs * DPREV] - fs[j + rs * PM]
            fs[j + rs * PM] += wp * da
            db = d - fs[j + rs * DM]
            fs[j + rs * DM] += wp * db
            fs[j + rs * DV] = (1.0 - wp) * (fs[j + rs * DV] + wp * db * db)
            fs[j + rs * C1] = (1.0 - wp) * fs[j + rs * C1] + wp * da * (d - fs[j + rs * DM])
        fs[j + rs * DPREV] = d
    fs[j + rs * LAST] = z
    ist[ji + rs * RUN] = run + 1
    _extend_block(fs, ist, j, ji, z, rs)
    _fit_line(fs, j, rs)
    if n >= commissioning:
        _set_noise(fs, ist, j, ji, r_floor, rs)
        # covariance of the least-squares line at this tick, with sigma^2 >= r
        vt = fs[j + rs * VT]
        sigma2 = max(fs[j + rs * VZ] - fs[j + rs * CTZ] * fs[j + rs * CTZ] / vt, fs[j + rs * R])
        sxx = n * vt
        dt = fs[j + rs * TICK] - fs[j + rs * MT]
        fs[j + rs * PLL] = sigma2 * (1.0 / n + dt * dt / sxx)
        fs[j + rs * PLR] = sigma2 * dt / sxx
        fs[j + rs * PRR] = sigma2 / sxx
        fs[j + rs * DPREV] -= fs[j + rs * XR]  # from now on differences are centred on the rate
        fs[j + rs * CP] = 0.0
        fs[j + rs * CM] = 0.0
        ist[ji + rs * ALARM] = NORMAL
        ist[ji + rs * STREAK] = 0
        ist[ji + rs * CALIBRATED] = 1


@_jit
def _fit_line(fs: npt.NDArray[np.float64], j: int, rs: int) -> None:
    """Level (at the current tick) and rate of the commissioning samples' least-squares line."""
    vt = fs[j + rs * VT]
    slope = fs[j + rs * CTZ] / vt if vt > 0.0 else 0.0
    fs[j + rs * XR] = slope
    fs[j + rs * XL] = fs[j + rs * MZ] + slope * (fs[j + rs * TICK] - fs[j + rs * MT])


@_jit
def _not_calibrated(  # noqa: PLR0917 - numba takes no keyword-only arguments
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    j: int,
    ji: int,
    z: float,
    good: bool,
    commissioning: int,
    r_floor: float,
    rs: int,
) -> None:
    started = ist[ji + rs * N_GOOD] > 0
    if started:
        fs[j + rs * TICK] += 1.0
    if good:
        _commission(fs, ist, j, ji, z, commissioning, r_floor, rs)
    else:
        ist[ji + rs * RUN] = 0
        if started:
            _fit_line(fs, j, rs)


@_jit
def _step(  # noqa: PLR0915, PLR0917 - one path per case; no keyword-only args in numba
    fs: npt.NDArray[np.float64],
    ist: npt.NDArray[np.int64],
    j: int,
    ji: int,
    z: float,
    good: bool,
    params: npt.NDArray[np.float64],
    rs: int,
) -> None:
    """Advance one point by one tick on any path; its score and nis go to SCORE and NIS.

    ``j`` and ``ji``: the point's slot in the first field of ``fs`` and of ``ist``.
    """
    r_floor = fs[j + rs * RFLOOR]
    fs[j + rs * SCORE] = 0.0
    fs[j + rs * NIS] = 0.0
    if ist[ji + rs * CALIBRATED] != 1:
        _not_calibrated(fs, ist, j, ji, z, good, int(params[PARAM_COMMISSIONING]), r_floor, rs)
        return
    # predict
    xr = fs[j + rs * XR]
    xl = fs[j + rs * XL] + xr
    plr = fs[j + rs * PLR]
    prr = fs[j + rs * PRR]
    pll = fs[j + rs * PLL] + 2.0 * plr + prr + fs[j + rs * QL]
    plr += prr
    prr += fs[j + rs * QR]
    if not good:
        ist[ji + rs * RUN] = 0
        fs[j + rs * XL] = xl
        fs[j + rs * PLL] = pll
        fs[j + rs * PLR] = plr
        fs[j + rs * PRR] = prr
        return
    # update
    threshold = params[PARAM_THRESHOLD]
    r = fs[j + rs * R]
    s = pll + r
    s_inv = 1.0 / s
    root = math.sqrt(s)
    nu = z - xl
    nis = nu * nu * s_inv
    learn = ist[ji + rs * ALARM] != ALARMED and (nis <= threshold or ist[ji + rs * STREAK] == 0)
    if nis > threshold and learn:
        # the first sample beyond the NIS bound may be a spike: winsorized onto the bound
        # for the update, learning and CUSUM, it neither drags the state nor starts a run
        nu = math.copysign(math.sqrt(threshold * s), nu)
        z = xl + nu
    k_r = plr * s_inv
    xl_new = xl + pll * s_inv * nu
    xr_new = xr + k_r * nu
    keep = r * s_inv  # 1 - gain of the level
    fs[j + rs * XL] = xl_new
    fs[j + rs * XR] = xr_new
    fs[j + rs * PLL] = pll * keep
    fs[j + rs * PLR] = plr * keep
    fs[j + rs * PRR] = prr - k_r * plr
    # learn: first differences centred on the predicted rate, and blocks
    if learn:
        run = ist[ji + rs * RUN]
        if run >= 1:
            d = z - fs[j + rs * LAST] - xr
            if run >= 2:
                pn = ist[ji + rs * PN] + 1
                ist[ji + rs * PN] = pn
                w = _weight(pn)
                fs[j + rs * DV] += w * (d * d - fs[j + rs * DV])
                fs[j + rs * C1] += w * (d * fs[j + rs * DPREV] - fs[j + rs * C1])
                if pn % NOISE_EVERY == 0:
                    _set_noise(fs, ist, j, ji, r_floor, rs)
            fs[j + rs * DPREV] = d
        fs[j + rs * LAST] = z
        ist[ji + rs * RUN] = run + 1
        _extend_block(fs, ist, j, ji, z, rs)
    else:
        ist[ji + rs * RUN] = 0
    # detect
    u = nu * s_inv * root * params[PARAM_INV_H]
    k_over_h = params[PARAM_K_OVER_H]
    cp = cusum(fs[j + rs * CP], u, k_over_h, 1.0)
    cm = cusum(fs[j + rs * CM], -u, k_over_h, 1.0)
    score = max(nis * params[PARAM_INV_THRESHOLD], cp, cm)
    alarm_on = int(params[PARAM_ALARM_ON])
    alarm_off = int(params[PARAM_ALARM_OFF])
    base = ji - ji % rs
    rows = ist[base : base + rs * N_INT].reshape((N_INT, rs))
    if alarm_step(rows, ALARM, STREAK, ji - base, score, alarm_on, alarm_off):
        cp = 0.0
        cm = 0.0
    fs[j + rs * CP] = cp
    fs[j + rs * CM] = cm
    fs[j + rs * SCORE] = score
    fs[j + rs * NIS] = nis


_SIGNATURE = "b1(f8[::1], u2[::1], f8[::1], i8[::1], f8[::1], f8[:, ::1], u1[::1], b1[::1])"


def _make(ch: int, rs: int) -> Any:  # noqa: PLR0915 - the kernel's statements
    """The kernel for chunks of ``ch`` points of ``rs`` slots per field, both compile-time.

    Compiled eagerly for exactly these types: a call with other types raises TypeError instead of
    compiling a variant, so the estimator can hand its inputs over unchecked and convert on error.
    """

    def trend_update(  # noqa: PLR0915, PLR0917 - no keyword-only args in numba
        values: npt.NDArray[np.float64],
        quality: npt.NDArray[np.uint16],
        fs: npt.NDArray[np.float64],
        ist: npt.NDArray[np.int64],
        params: npt.NDArray[np.float64],
        out: npt.NDArray[np.float64],
        out_alarm: npt.NDArray[np.uint8],
        out_initialized: npt.NDArray[np.bool_],
    ) -> bool:
        """Advance every point by one tick (``out`` rows: estimate, rate, score, nis).

        Returns False, having changed nothing, when the array shapes do not fit together.
        """
        n = values.shape[0]
        chunks = (n + ch - 1) // ch
        if (
            quality.shape[0] != n
            or fs.shape[0] != chunks * rs * N_FLOAT_INTERNAL
            or ist.shape[0] != chunks * rs * N_INT
            or out.shape[0] != 4
            or out.shape[1] != n
            or out_alarm.shape[0] != n
            or out_initialized.shape[0] != n
            or params.shape[0] != N_PARAMS
        ):
            return False
        threshold = params[PARAM_THRESHOLD]
        inv_threshold = params[PARAM_INV_THRESHOLD]
        k_over_h = params[PARAM_K_OVER_H]
        inv_h = params[PARAM_INV_H]
        for c in range(chunks):
            i0 = c * ch
            m = min(ch, n - i0)
            b = c * (rs * N_FLOAT_INTERNAL)
            bi = c * (rs * N_INT)
            todo = 0  # points left, or taken on a tick with periodic learning
            for k in range(m):  # the common path, branch-free so that it vectorises
                z = values[i0 + k]
                j = b + k
                ji = bi + k
                good = (quality[i0 + k] == 0) & (abs(z) <= MAX_ABS)
                run0 = ist[ji + rs * RUN]
                pn0 = ist[ji + rs * PN]
                alarm0 = ist[ji + rs * ALARM]
                streak0 = ist[ji + rs * STREAK]
                xr = fs[j + rs * XR]
                xl0 = fs[j + rs * XL]
                xl = xl0 + xr
                pll0 = fs[j + rs * PLL]
                plr0 = fs[j + rs * PLR]
                prr0 = fs[j + rs * PRR]
                pll = pll0 + 2.0 * plr0 + prr0 + fs[j + rs * QL]
                plr = plr0 + prr0
                prr = prr0 + fs[j + rs * QR]
                r = fs[j + rs * R]
                s = pll + r
                s_inv = 1.0 / s
                root = math.sqrt(s)
                nu = z - xl
                nis = nu * nu * s_inv
                u = nu * s_inv * root * inv_h
                cp0 = fs[j + rs * CP]
                cm0 = fs[j + rs * CM]
                cp = cusum(cp0, u, k_over_h, 1.0)
                cm = cusum(cm0, -u, k_over_h, 1.0)
                score = max(nis * inv_threshold, cp, cm)
                ok = (
                    good
                    & (ist[ji + rs * CALIBRATED] == 1)
                    & (alarm0 != ALARMED)
                    & (run0 >= 2)
                    & (nis <= threshold)
                    & (score < 1.0)
                )
                k_r = plr * s_inv
                keep = r * s_inv
                fs[j + rs * XL] = xl + pll * s_inv * nu if ok else xl0
                fs[j + rs * XR] = xr + k_r * nu if ok else xr
                fs[j + rs * PLL] = pll * keep if ok else pll0
                fs[j + rs * PLR] = plr * keep if ok else plr0
                fs[j + rs * PRR] = prr - k_r * plr if ok else prr0
                last = fs[j + rs * LAST]
                d = z - last - xr
                pn = pn0 + 1
                w = _weight(pn)
                dv = fs[j + rs * DV]
                c1 = fs[j + rs * C1]
                dprev = fs[j + rs * DPREV]
                fs[j + rs * DV] = dv + w * (d * d - dv) if ok else dv
                fs[j + rs * C1] = c1 + w * (d * dprev - c1) if ok else c1
                fs[j + rs * DPREV] = d if ok else dprev
                fs[j + rs * LAST] = z if ok else last
                run = run0 + 1
                fill = run % BLOCK
                bsum = fs[j + rs * BSUM]
                fs[j + rs * BSUM] = (z if fill == 1 else bsum + z) if ok else bsum
                fs[j + rs * CP] = cp if ok else cp0
                fs[j + rs * CM] = cm if ok else cm0
                fs[j + rs * SCORE] = score
                fs[j + rs * NIS] = nis if ok else -1.0
                ist[ji + rs * RUN] = run if ok else run0
                ist[ji + rs * PN] = pn if ok else pn0
                ist[ji + rs * STREAK] = 0 if ok else streak0
                alarm = WARNING if score >= WARN_LEVEL else NORMAL
                ist[ji + rs * ALARM] = alarm if ok else alarm0
                periodic = (pn % NOISE_EVERY == 0) | (fill == 0)
                todo += (not ok) | periodic
            if todo:  # the points left, and the periodic learning of those taken
                for k in range(m):
                    j = b + k
                    ji = bi + k
                    if fs[j + rs * NIS] < 0.0:
                        z = values[i0 + k]
                        good = quality[i0 + k] == 0 and abs(z) <= MAX_ABS
                        _step(fs, ist, j, ji, z, good, params, rs)
                    else:
                        if ist[ji + rs * PN] % NOISE_EVERY == 0:
                            _set_noise(fs, ist, j, ji, fs[j + rs * RFLOOR], rs)
                        if ist[ji + rs * RUN] % BLOCK == 0:
                            _block_done(fs, ist, j, ji, rs)
            for k in range(m):  # one loop per output row: each vectorises
                out[0, i0 + k] = fs[b + k + rs * XL]
            for k in range(m):
                out[1, i0 + k] = fs[b + k + rs * XR]
            for k in range(m):
                out[2, i0 + k] = fs[b + k + rs * SCORE]
            for k in range(m):
                out[3, i0 + k] = fs[b + k + rs * NIS]
            for k in range(m):
                out_alarm[i0 + k] = ist[bi + k + rs * ALARM]
            for k in range(m):
                ji = bi + k
                out_initialized[i0 + k] = (ist[ji + rs * CALIBRATED] == 1) | (
                    ist[ji + rs * N_GOOD] > 0
                )
        return True

    # one cache index for both variants (the constants ``ch``, ``rs`` are in the key)
    trend_update.__qualname__ = "trend_update"
    return numba.njit(_SIGNATURE, cache=True, nogil=True, error_model="numpy")(trend_update)


_KERNELS: dict[int, Any] = {}


def layout(n_points: int) -> tuple[int, int]:
    """(points per chunk, slots per field and chunk) of the variant for ``n_points`` points."""
    return (SMALL_CH, SMALL_RS) if n_points <= SMALL_MAX else (CH, RS)


def kernel(ch: int) -> Any:
    """The kernel of the variant with ``ch`` points per chunk, built (or loaded) on first use."""
    update = _KERNELS.get(ch)
    if update is None:
        update = _KERNELS[ch] = _make(ch, RS if ch == CH else SMALL_RS)
    return update


trend_update = kernel(CH)
