"""Batched level estimator: a random walk + white noise Kalman filter per point, with anomaly score.

Every point is modelled as ``level[t] = level[t-1] + w`` (``var w = q``) measured as
``z = level + v`` (``var v = r``). A sample is *good* when its quality is GOOD (0) and its value is
finite with ``|z| <= 1e100`` (larger squares would approach overflow); other samples are not used.

Noise from differences: for this model the first differences ``d`` of consecutive samples have
``var(d) = 2r + q`` and lag-1 autocovariance ``-r``, so ``r = clip(-cov, 0, var(d)/2)`` and
``q = var(d) - 2r``. Running statistics of ``d`` and of lag-1 pairs of ``d`` are kept only over
chains of consecutive learnable samples (a gap breaks the chain, so no difference spans it). They
are exact averages for the first 1000 differences, exponentially weighted over 1000 after that, so
the noise estimate keeps improving and then follows slow changes. An under-estimated ``q`` makes
the filter lag a random walk, which the CUSUM reports as drift (simulated: 2-20 % of the time in
ALARM for q/r between 0.01 and 1 with 30 commissioning samples), while an over-estimated ``q`` only
costs smoothing; so ``q`` is raised by one standard error of its estimate, ``1.5 var(d)/sqrt(n)``
for ``n`` pairs (n capped at 1000). With fewer than two pairs the whole spread is taken as noise:
``r = var(z)``, ``q = 0``. Floors: ``r >= max(1e-12, (1e-6 * mean)^2, noise_floor^2)`` so constant
data keeps a positive variance, then ``q >= 1e-3 r`` (with the floored ``r``). ``noise_floor`` is
a per-point standard deviation (constructor argument, default 0): the noise a sensor has at
least. It applies wherever ``r`` is estimated (at calibration and at every learnt sample); it is a
parameter, not state, so a state saved under another floor takes this one at its next learnt
sample. For a reading quantised in steps ``D`` that did not move while commissioning, ``D /
sqrt(12)`` (the quantisation noise) keeps a held one-step change from alarming only within a few
samples of calibration, while ``P = r`` still lets the estimate move; once the filter has settled
(``q = 1e-3 r``) the change is a 3.5-sigma shift and is flagged. ``noise_floor = D`` keeps it
below the alarm (simulated: 0.9 D was the least that did; a held 2 D change, once settled, alarms).

Commissioning: the first ``commissioning`` good samples feed the statistics; meanwhile the estimate
is their running mean, score 0 and alarm NORMAL. At the end the filter starts at the mean with
``P = r``. After that a good sample is learnt from only while the point is not in ALARM and its
``nis <= threshold``, or when it is winsorized (below), so anomalies do not teach the model that
they are noise.

Filter, per good sample: ``P += q; S = P + r; nu = z - x; nis = nu^2/S``; then, if ``nis >
threshold`` while the point is not in ALARM and its alarm streak is 0 (its last good sample
scored < 1), the sample is *winsorized* onto the bound: ``nu = copysign(sqrt(threshold S), nu);
z = x + nu``; then ``K = P/S; x += K nu; P = (1 - K) P``. Heavy-tailed data (spikes, bursts)
would otherwise drag the level with every spike, the pull back after it would be a second large
innovation, and the CUSUM charged by both would hold the score over 1 for ``alarm_on`` samples:
an alarm per spike. Winsorized (Huber's clipped innovation), one spike moves the level, the
learnt noise and the CUSUM at most as much as a sample on the bound; its ``nis`` and score
still show how far out it was. A second sample beyond the bound in a row is taken as a
change: the full innovation, not learnt from (as in ALARM), so a held step is still followed
and alarmed (simulated, 200 random walks, commissioning 30: held steps of 8 and 10 noise sigmas
alarmed within 10 samples in 68 and 98 % of them, 72 and 94 % without winsorizing, while spikes
of 5-15 sigmas in 1 % of the samples raised 0.28 alarms per 10 000 samples instead of 6.7). The
winsorized sample is learnt from as ``z``: a series whose spread is wider than commissioning
saw widens the learnt noise by a bounded amount per sample until few samples lie beyond the
bound. CUSUM on ``u = nu / sqrt(S)``: ``cp = min(h, max(0, cp + u - k))``, likewise ``cm``
with ``-u``; the cap at ``h`` lets an alarm clear soon after the anomaly ends instead of after
the sums have wound down from hundreds. Score: ``max(nis / threshold, max(cp, cm) / h)``; 1.0
is the alarm threshold.

Alarm: ALARM after ``alarm_on`` consecutive scores >= 1; it clears after ``alarm_off``
consecutive scores < 0.8, which also resets the CUSUM sums. Outside ALARM the state is WARNING
when the score is >= 0.5, else NORMAL. A sample that is not good only predicts (``P += q``):
estimate, alarm state and counters stay, score and nis are 0. Outputs are always finite; before a
point's first good sample its estimate is 0.0 and ``initialized`` is False.

``update`` returns fresh arrays, or writes into ``out`` (from ``new_output()``) so that a hot loop
allocates nothing; inputs that already are contiguous, writable float64 / uint16 arrays of the
right shape are used as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from edgetwin.core.types import FloatArray
from edgetwin.twin import _level_kernel as _k
from edgetwin.twin._detect import ALARMED
from edgetwin.twin._validate import (
    as_noise_floor,
    as_quality,
    as_values,
    detection,
    misfit,
    pack_params,
    positive_int,
    state_columns,
    state_tables,
)

_F64 = np.dtype(np.float64)
_U8 = np.dtype(np.uint8)


class LevelOutput(NamedTuple):
    """Per-point output of one update: fresh arrays, or the ``out`` given to ``update``."""

    estimate: FloatArray
    score: FloatArray
    nis: FloatArray
    alarm: npt.NDArray[np.uint8]
    initialized: npt.NDArray[np.bool_]


class LevelEstimator:
    """Level estimate, anomaly score and alarm for ``n_points`` points updated together."""

    def __init__(
        self,
        n_points: int,
        *,
        commissioning: int = 30,
        threshold: float = 10.83,
        cusum_k: float = 0.5,
        cusum_h: float = 8.0,
        alarm_on: int = 3,
        alarm_off: int = 5,
        noise_floor: npt.ArrayLike | None = None,
    ) -> None:
        self._n = positive_int("n_points", n_points, 1)
        self._noise_floor = as_noise_floor(noise_floor, self._n)
        # four samples give the two lag-1 pairs of differences the calibration needs
        self._commissioning = positive_int("commissioning", commissioning, 4)
        d = detection(threshold, cusum_k, cusum_h, alarm_on, alarm_off)
        self._params = pack_params(self._commissioning, d, (), self._noise_floor**2)
        self._block_shape = (3, self._n)
        self._flags_shape = (2, self._n)
        self._fs = np.zeros((self._n, _k.N_FLOAT), dtype=np.float64)  # point-major
        self._ist = np.zeros((self._n, _k.N_INT), dtype=np.int64)
        # outputs handed out by new_output(), by id; kept alive so an id is never reused
        self._issued: dict[int, tuple[LevelOutput, FloatArray, npt.NDArray[np.uint8]]] = {}

    @property
    def n_points(self) -> int:
        """Number of points."""
        return self._n

    @property
    def calibrated(self) -> npt.NDArray[np.bool_]:
        """Per point: whether commissioning has ended (False while the twin is still learning)."""
        return np.asarray(self._ist[:, _k.CALIBRATED] == 1, dtype=np.bool_)

    @property
    def noise_floor(self) -> FloatArray:
        """Per-point floor of the measurement noise, as a standard deviation (a copy)."""
        return self._noise_floor.copy()

    def new_output(self) -> LevelOutput:
        """Preallocated output for ``update(..., out=...)``; the estimator keeps a reference."""
        block = np.zeros(self._block_shape, dtype=np.float64)
        flags = np.zeros(self._flags_shape, dtype=np.uint8)
        out = LevelOutput(block[0], block[1], block[2], flags[0], flags[1].view(np.bool_))
        self._issued[id(out)] = (out, block, flags)
        return out

    def update(
        self, values: npt.ArrayLike, quality: npt.ArrayLike, out: LevelOutput | None = None
    ) -> LevelOutput:
        """Advance every point by one sample (float64 values, uint16 quality, shape (n,))."""
        if out is None:
            block = np.empty(self._block_shape, _F64)
            flags = np.empty(self._flags_shape, _U8)
        else:
            issued = self._issued.get(id(out))
            if issued is None or issued[0] is not out:
                raise ValueError("out must come from this estimator's new_output()")
            _, block, flags = issued
        # the kernel's dispatcher checks dtype, layout and writability (TypeError if not
        # exactly float64/uint16, C-contiguous, writable) and the kernel checks the shapes
        z: Any = values
        qual: Any = quality
        try:
            fits = _k.level_update(z, qual, self._fs, self._ist, self._params, block, flags)
        except TypeError:
            fits = _k.level_update(
                as_values(values, self._n),
                as_quality(quality, self._n),
                self._fs,
                self._ist,
                self._params,
                block,
                flags,
            )
        if not fits:
            misfit(values, quality, self._n)
        if out is not None:
            return out
        # initialized: the kernel writes 0 or 1, viewed as bool
        return LevelOutput(block[0], block[1], block[2], flags[0], flags[1].view(np.bool_))

    def state(self) -> dict[str, npt.NDArray[Any]]:
        """Return copies of every state array, enough to resume exactly (see ``load_state``)."""
        return state_columns(self._fs.T, self._ist.T, _k.FLOAT_FIELDS, _k.INT_FIELDS)

    def load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Resume from ``state()`` output; ValueError (and no change) if it does not fit."""
        fs, ist = state_tables(state, _k.FLOAT_FIELDS, _k.INT_FIELDS, self._n)
        _check_state(fs, ist)
        # point-major in the kernel: one point's fields share a cache line
        self._fs = np.ascontiguousarray(fs.T)
        self._ist = np.ascontiguousarray(ist.T)


def _check_state(fs: FloatArray, ist: npt.NDArray[np.int64]) -> None:
    if not np.isfinite(fs).all():
        raise ValueError("state holds non-finite floats")
    for row in (_k.P, _k.Q, _k.R, _k.CP, _k.CM, _k.VAR, _k.DVAR):
        if (fs[row] < 0.0).any():
            raise ValueError(f"state[{_k.FLOAT_FIELDS[row]!r}] must be >= 0")
    calibrated = ist[_k.CALIBRATED] == 1
    if (fs[_k.R][calibrated] <= 0.0).any():
        raise ValueError("state['r'] must be > 0 for calibrated points")
    limits = {
        _k.CALIBRATED: 1,
        _k.ALARM: ALARMED,
        _k.CHAIN: 2,
    }
    for row, name in enumerate(_k.INT_FIELDS):
        if (ist[row] < 0).any() or (row in limits and (ist[row] > limits[row]).any()):
            raise ValueError(f"state[{name!r}] out of range")


def warmup() -> None:
    """Load (or compile) the kernel and run it once, on a one-point estimator."""
    LevelEstimator(1, commissioning=4).update(np.zeros(1), np.zeros(1, dtype=np.uint16))
