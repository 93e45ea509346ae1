"""Batched trend estimator: a local linear trend Kalman filter per point, with anomaly score.

Every point is modelled as ``level[t] = level[t-1] + rate[t-1] + w_l`` (``var w_l = q_l``) and
``rate[t] = rate[t-1] + w_r`` (``var w_r = q_r``), measured as ``z = level + v`` (``var v = r``).
A tick is one ``update`` call, whatever the samples' quality, so the rate is per tick. A sample is
*good* when its quality is GOOD (0) and its value is finite with ``|z| <= 1e100``.

Commissioning: the first ``commissioning`` good samples are fitted with a least-squares line
against their tick ``t`` (0 at the point's first good sample, +1 every tick after). Running
population moments with ``w = 1/n`` for the n-th good sample: ``m += w*dev`` for the means of ``t``
and ``z``, ``v = (1-w)*(v + w*dev^2)`` for their variances, ``c = (1-w)*(c + w*dev_t*dev_z)``
for their covariance (``dev``: the sample minus the mean before it). Meanwhile the rate is the
slope ``c/v_t`` (0 while ``v_t = 0``) and the estimate is the line at the current tick, also
after a bad sample; score and nis are 0 and the alarm NORMAL. At the last commissioning sample the
noise is estimated (below), the filter starts on the line at this tick with
``P = s2 * [[1/n + e^2/sxx, e/sxx], [e/sxx, 1/sxx]]`` (``e = t - mean_t``, ``sxx = n v_t``,
``s2 = max(v_z - c^2/v_t, r)``), the CUSUM sums are 0 and the alarm is NORMAL.

Learnt samples: every good sample while commissioning; after it, a good sample whose
``nis <= threshold``, or that is winsorized (see the filter), while the point was not in ALARM
(its state before this sample), so anomalies do not teach the model that they are noise. A
*run* is a sequence of consecutive learnt samples; any other sample ends it. Weights
``w = max(1/n, 1/1000)`` for the n-th item learnt give exact averages first and forget slowly
after 1000 items.

Level and measurement noise, from first differences ``d = z - last`` within a run (for the model
``var(d) = 2r + q_l`` and the lag-1 covariance is ``-r``). From the third sample of a run on, the
pair ``(p, d)`` (``p``: the run's previous difference) is learnt. While commissioning the
statistics are Welford's about the pairs' own means: ``a = p - mean_p; mean_p += w*a;
b = d - mean_d; mean_d += w*b; dv = (1-w)*(dv + w*b^2); c1 = (1-w)*c1 + w*a*(d - mean_d)``. Once
calibrated, ``d`` is centred on the predicted rate (the rate before this sample's update),
``d = z - last - rate``, so a wandering rate is not taken for noise: ``dv += w*(d^2 - dv);
c1 += w*(d*p - c1)``; at calibration the stored ``p`` is centred on the line's slope. With
``r0 = clip(-c1, 0, dv/2)`` and ``ql0 = dv - 2 r0``, at calibration and, once calibrated, at every
16th pair (n a multiple of 16): for ``n >= 2`` pairs ``r = r0`` and
``q_l = ql0 + 1.5 dv sqrt(1/min(n, 1000))`` (one standard error more: an under-estimated ``q_l``
makes the filter lag, an over-estimated one only costs smoothing), else ``r`` is the line's
residual variance ``v_z - c^2/v_t`` (``v_z`` if ``v_t = 0``) and ``q_l = 0``. Floors:
``r >= max(1e-12, (1e-6 mean_z)^2, noise_floor^2)`` so constant data keeps a positive variance,
then ``q_l >= 1e-3 r`` (with the floored ``r``, as everywhere below; ``r0`` and ``ql0`` are never
floored). ``noise_floor`` is a per-point standard deviation (constructor argument, default 0): the
noise a sensor has at least. It is a parameter, not state: a state saved under another floor
takes this one at its next noise update. For a reading quantised in steps ``D`` that did not move
while commissioning, ``D / sqrt(12)`` (the quantisation noise) does not keep a held one-step
change from alarming, even right after calibration: the filter starts on the commissioning line
with a small ``P`` and the change is a 3.5-sigma shift. ``noise_floor = D`` does (simulated: 0.9 D
was the least that did; held changes of 2-4 D still alarm).

Rate noise, from blocks: a run is cut into blocks of B = 32 samples (its samples 1-32, 33-64, ...).
From a run's third complete block on, the second difference ``f = m - 2 m1 + m2`` of the last
three block means is learnt: ``hv += w*(f^2 - hv)`` (k-th ``f``, ``w = max(1/k, 1/1000)``). For
the model ``E[f^2] = W_R r + W_L q_l + W_Q q_r`` with ``W_R = 6/B``, ``W_L = B + 1/B``,
``W_Q = 11 B^3/20 + B/4 + 1/(5B)``: the rate noise shows at this scale, where first differences
cannot see it. From the second ``f`` on, at each ``f``: ``qrb = (max(hv - W_R r0 - W_L ql0, 0)
+ 2 hv sqrt(1/min(k, 1000))) (1/W_Q)`` (estimate plus one standard error); before that, a
prior, updated with ``r``: ``qrb = P_R r + P_L ql0`` (``ql0`` without margin, 0 when ``r`` comes
from the line), ``P_R = 2 W_R/W_Q`` and ``P_L = 2 W_L/W_Q`` evaluated at B = 16: the margin one
block of 16 would give. Curvature inflates ``ql0``, so smooth data starts with a looser rate; a
looser start would absorb more of an early step. Whenever ``r`` or ``qrb`` changes,
``q_r = max(qrb, 1e-6 r)``.

Filter, per good sample: ``xl = level + rate; pll = P_ll + 2 P_lr + P_rr + q_l;
plr = P_lr + P_rr; prr = P_rr + q_r; s = pll + r; si = 1/s; nu = z - xl; nis = nu^2 si``;
then, if ``nis > threshold`` while the point is not in ALARM and its alarm streak is 0 (its
last good sample scored < 1), the sample is *winsorized* onto the bound:
``nu = copysign(sqrt(threshold s), nu); z = xl + nu`` (the learnt sample and the CUSUM's
innovation too); then ``kr = plr si; level = xl + pll si nu; rate += kr nu; P_ll = pll (r si);
P_lr = plr (r si); P_rr = prr - kr plr``, in that order of operations. A second sample beyond
the bound in a row keeps its full innovation and is not learnt from: a change, not a spike.
Why, and what it does on heavy-tailed data: see :mod:`edgetwin.twin.level`. A sample that is
not good only predicts (``level``, ``P`` as above): score and nis are 0, alarm state and
counters stay.

Detection, after learning: CUSUM in units of ``h`` on ``u = nu si sqrt(s) (1/h)``:
``cp = min(1, max(0, cp + u - k/h))``, likewise ``cm`` with ``-u``. Score
``max(nis (1/threshold), max(cp, cm))``; 1.0 is the alarm threshold (``1/threshold``, ``1/h`` and
``k/h`` are computed once, in float64). ALARM after ``alarm_on`` consecutive scores >= 1; it clears
after ``alarm_off`` consecutive scores < 0.8, which also resets both sums. Outside ALARM the state
is WARNING when the score is >= 0.5, else NORMAL.

So a slow drift is tracked: the rate follows it and the innovations stay white, which is what the
rate output (for time-to-threshold) needs, while a step or a spike still gives a large nis. Outputs
are always finite; before a point's first good sample its estimate and rate are 0.0 and
``initialized`` is False.

``update`` returns fresh arrays, or writes into ``out`` (from ``new_output()``) so that a hot loop
allocates nothing; contiguous, writable float64 values and uint16 quality go to the kernel as they
are, anything else is validated and converted first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from edgetwin.core.types import FloatArray
from edgetwin.twin import _trend_kernel as _k
from edgetwin.twin._detect import ALARMED
from edgetwin.twin._validate import (
    as_noise_floor,
    as_quality,
    as_values,
    detection,
    misfit,
    positive_int,
    state_columns,
    state_tables,
)

_F64 = np.dtype(np.float64)
_U8 = np.dtype(np.uint8)
_BOOL = np.dtype(np.bool_)


class TrendOutput(NamedTuple):
    """Per-point output of one update: fresh arrays, or the ``out`` given to ``update``."""

    estimate: FloatArray  # level
    rate: FloatArray  # per tick
    score: FloatArray
    nis: FloatArray
    alarm: npt.NDArray[np.uint8]
    initialized: npt.NDArray[np.bool_]


class TrendEstimator:
    """Level, rate, anomaly score and alarm for ``n_points`` points updated together."""

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
        self._r_floor = self._noise_floor * self._noise_floor
        self._commissioning = positive_int("commissioning", commissioning, 4)
        d = detection(threshold, cusum_k, cusum_h, alarm_on, alarm_off)
        params = np.empty(_k.N_PARAMS, dtype=np.float64)
        params[_k.PARAM_COMMISSIONING] = self._commissioning
        params[_k.PARAM_THRESHOLD] = d.threshold
        params[_k.PARAM_INV_THRESHOLD] = 1.0 / d.threshold
        params[_k.PARAM_K_OVER_H] = d.cusum_k / d.cusum_h
        params[_k.PARAM_INV_H] = 1.0 / d.cusum_h
        params[_k.PARAM_ALARM_ON] = d.alarm_on
        params[_k.PARAM_ALARM_OFF] = d.alarm_off
        self._params = params
        self._block_shape = (4, self._n)
        # chunk layout: small chunks for small estimators (see the kernel's module docstring)
        self._ch, self._rs = _k.layout(self._n)
        self._kernel = _k.kernel(self._ch)
        self._chunks = -(-self._n // self._ch)
        self._fs, self._ist = self._new_tables()
        # outputs handed out by new_output(), by id; kept alive so an id is never reused
        self._issued: dict[int, tuple[TrendOutput, FloatArray]] = {}

    @property
    def n_points(self) -> int:
        """Number of points."""
        return self._n

    @property
    def calibrated(self) -> npt.NDArray[np.bool_]:
        """Per point: whether commissioning has ended (False while the twin is still learning)."""
        flags = self._chunked(self._ist)[:, _k.CALIBRATED].reshape(-1)[: self._n]
        return np.asarray(flags == 1, dtype=np.bool_)

    @property
    def noise_floor(self) -> FloatArray:
        """Per-point floor of the measurement noise, as a standard deviation (a copy)."""
        return self._noise_floor.copy()

    def new_output(self) -> TrendOutput:
        """Preallocated output for ``update(..., out=...)``; the estimator keeps a reference."""
        block = np.zeros((4, self._n), dtype=np.float64)
        out = TrendOutput(
            block[0],
            block[1],
            block[2],
            block[3],
            np.zeros(self._n, dtype=np.uint8),
            np.zeros(self._n, dtype=np.bool_),
        )
        self._issued[id(out)] = (out, block)
        return out

    def update(
        self, values: npt.ArrayLike, quality: npt.ArrayLike, out: TrendOutput | None = None
    ) -> TrendOutput:
        """Advance every point by one sample (float64 values, uint16 quality, shape (n,))."""
        if out is None:
            block = np.empty(self._block_shape, _F64)
            alarm = np.empty(self._n, _U8)
            initialized = np.empty(self._n, _BOOL)
        else:
            issued = self._issued.get(id(out))
            if issued is None or issued[0] is not out:
                raise ValueError("out must come from this estimator's new_output()")
            block = issued[1]
            alarm = out.alarm
            initialized = out.initialized
        # the kernel's dispatcher checks dtype, layout and writability (TypeError if not
        # exactly float64/uint16, C-contiguous, writable) and the kernel checks the shapes
        z: Any = values
        qual: Any = quality
        try:
            fits = self._kernel(
                z, qual, self._fs, self._ist, self._params, block, alarm, initialized
            )
        except TypeError:
            fits = self._kernel(
                as_values(values, self._n),
                as_quality(quality, self._n),
                self._fs,
                self._ist,
                self._params,
                block,
                alarm,
                initialized,
            )
        if not fits:
            misfit(values, quality, self._n)
        if out is not None:
            return out
        return TrendOutput(block[0], block[1], block[2], block[3], alarm, initialized)

    def state(self) -> dict[str, npt.NDArray[Any]]:
        """Return copies of every state array, enough to resume exactly (see ``load_state``)."""
        fs = self._rows(self._fs)[: _k.N_FLOAT]
        return state_columns(fs, self._rows(self._ist), _k.FLOAT_FIELDS, _k.INT_FIELDS)

    def load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Resume from ``state()`` output; ValueError (and no change) if it does not fit."""
        fs, ist = state_tables(state, _k.FLOAT_FIELDS, _k.INT_FIELDS, self._n)
        _check_state(fs, ist)
        self._fs, self._ist = self._new_tables(fs, ist)

    def _new_tables(
        self, fs: FloatArray | None = None, ist: npt.NDArray[np.int64] | None = None
    ) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """The kernel's flat, chunked tables from rows (fields) x points; zeros if None."""
        floats = np.zeros(self._chunks * self._rs * _k.N_FLOAT_INTERNAL, dtype=np.float64)
        ints = np.zeros(self._chunks * self._rs * _k.N_INT, dtype=np.int64)
        self._chunked(floats)[:, _k.RFLOOR] = self._padded(self._r_floor[None])[0]
        if fs is not None and ist is not None:
            self._chunked(floats)[:, : _k.N_FLOAT] = self._padded(fs).transpose(1, 0, 2)
            self._chunked(ints)[:] = self._padded(ist).transpose(1, 0, 2)
        return floats, ints

    def _chunked(self, flat: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """View of a flat table as chunks x fields x points of the chunk."""
        fields = flat.shape[0] // (self._chunks * self._rs)
        return flat.reshape(self._chunks, fields, self._rs)[:, :, : self._ch]

    def _padded(self, rows: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Rows (fields) x points, zero-padded to whole chunks: fields x chunks x the chunk size."""
        padded = np.zeros((rows.shape[0], self._chunks * self._ch), dtype=rows.dtype)
        padded[:, : self._n] = rows
        return padded.reshape(rows.shape[0], self._chunks, self._ch)

    def _rows(self, flat: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """A flat table as rows (fields) x points (a copy)."""
        chunked = self._chunked(flat)
        return chunked.transpose(1, 0, 2).reshape(chunked.shape[1], -1)[:, : self._n]


_NON_NEGATIVE = (
    _k.PLL,
    _k.PRR,
    _k.QL,
    _k.QR,
    _k.R,
    _k.CP,
    _k.CM,
    _k.DV,
    _k.HV,
    _k.QRE,
    _k.TICK,
    _k.VT,
    _k.VZ,
)


def _check_state(fs: FloatArray, ist: npt.NDArray[np.int64]) -> None:
    """Check the state, given as rows (fields) x points."""
    if not np.isfinite(fs).all():
        raise ValueError("state holds non-finite floats")
    for row in _NON_NEGATIVE:
        if (fs[row] < 0.0).any():
            raise ValueError(f"state[{_k.FLOAT_FIELDS[row]!r}] must be >= 0")
    for row in (_k.CP, _k.CM):
        if (fs[row] > 1.0).any():
            raise ValueError(f"state[{_k.FLOAT_FIELDS[row]!r}] must be <= 1 (units of h)")
    calibrated = ist[_k.CALIBRATED] == 1
    for row in (_k.R, _k.QL, _k.QR):
        if (fs[row][calibrated] <= 0.0).any():
            name = _k.FLOAT_FIELDS[row]
            raise ValueError(f"state[{name!r}] must be > 0 for calibrated points")
    limits = {_k.CALIBRATED: 1, _k.ALARM: ALARMED}
    for row, name in enumerate(_k.INT_FIELDS):
        if (ist[row] < 0).any() or (row in limits and (ist[row] > limits[row]).any()):
            raise ValueError(f"state[{name!r}] out of range")


def warmup() -> None:
    """Load (or compile) both kernel variants and run each once (1 and SMALL_MAX + 1 points)."""
    for n in (1, _k.SMALL_MAX + 1):
        TrendEstimator(n, commissioning=4).update(np.zeros(n), np.zeros(n, dtype=np.uint16))
