"""Batched lag estimator: a first-order twin of a point ``y`` driven by an input point ``u``.

Model, per point: ``y[t] = a y[t-1] + b u[t-1] + c + e`` (``var e = r``), the per-tick form of
``tau y' = K u - y + const`` with ``a = exp(-1/tau)`` (tau in ticks) and gain ``K = b / (1 - a)``.
A tick's pair is *good* when both qualities are GOOD (0) and both values are finite with
``|v| <= 1e100``. The model works in coordinates centred on the point's first good pair
``(y0, u0)``: ``yc = y - y0``, ``uc = u - u0`` (a and b do not change; c absorbs the shift), which
keeps the regression well conditioned for signals far from zero.

Chain: a prediction needs the previous tick's pair. A tick whose pair is not good breaks the
chain; the next good pair only seeds it (no prediction, no learning, no score).

Learning, on a chained good pair with regressor ``phi = (yc[t-1], uc[t-1], 1)``: recursive
least squares with exponential forgetting ``lam = 1 - 1/horizon`` (a memory of about
``horizon`` learnt pairs), in information form (``R = P^-1``, 3x3 symmetric)::

    A = lam R                                                   (forget)
    A = L D L'    unit lower L, by the textbook loops (d_j = A_jj - sum_k L_jk^2 d_k, ...);
                  each pivot floored at eps A_jj + delta, the floor's increase added to A_jj
    L z = phi     q = sum_j z_j^2 / d_j  (= phi' A^-1 phi)      L' g = D^-1 z  (g = A^-1 phi)
    p = clip(phi' theta, -2e100, 2e100)     nu = yc - p     w = nu / sqrt(1 + q)

and, when the pair is learnt from, ``theta += g nu / (1 + q)`` and ``R = A + phi phi'``; a pair
not learnt from changes neither. ``eps = 1e-9``, ``delta = 1e-24``; R starts as ``delta I`` and
theta as 0. The pivot floor is the regularisation: without it the information in a direction
the data do not excite (an input that never varies, or that moves in step with y) decays by
``lam`` per pair until ``P`` winds up and the factorisation breaks down. With it the diagonally
scaled condition number of ``A`` stays below about ``1/eps``, so ``P`` stays bounded, and the
information the floor adds, centred on the current theta, holds theta where it was in that
direction instead of pulling it anywhere: the gain learnt before the input froze is still
known when it moves again. In well-excited operation no floor is active and theta is exactly
the exponentially weighted least-squares fit. The fit assumes the noise enters the process
(equation error); white noise on the measurement of y biases a, hence tau, towards 0 (errors in
variables: simulated, tau = 20 is learnt as 18 when that noise is 10x the process noise), while
the one-step prediction stays the best linear one.

Noise: ``r`` is the running mean of ``w^2`` over the pairs learnt from, skipping the first three
(one per parameter: their recursive residuals are ~0); the mean is exact for the first
``horizon`` terms and weighted ``1/horizon`` after that. It is used as ``max(mean, 1e-12,
(1e-6 y0)^2, noise_floor^2)`` so constant data keeps a positive variance. ``noise_floor`` is a
per-point standard deviation (constructor argument, default 0): the noise a sensor has at least.
It is a parameter, not state: the running mean is stored without it, and every scored pair uses
the current floor. For a reading quantised in steps ``D`` that did not move while commissioning,
a held one-step change scores on its first tick only (the next prediction starts from the
measured y and learns the change through the unexcited ``a``), with ``nis = (D/sigma)^2 / (1 +
q)``: about 12 for ``noise_floor = D / sqrt(12)`` (above the default threshold, so an ALARM
when ``alarm_on = 1``), about 1 for ``noise_floor = D``, and huge without a floor.

Commissioning: the first ``commissioning`` chained good pairs are all learnt from; meanwhile the
score is 0 and the alarm NORMAL. After that: ``S = r (1 + q)``, ``zn = w / sqrt(r)`` (that is
``nu / sqrt(S)``), ``nis = zn^2``, and a pair is learnt from only while the point is not in
ALARM and its ``nis <= threshold``, or when it is winsorized (below), so anomalies do not teach
the model that they are normal.

Heavy tails, as in :mod:`edgetwin.twin.level`: if ``nis > threshold`` while the point is not in
ALARM and its alarm streak is 0 (its last scored pair scored < 1), the pair is *winsorized* onto
the bound: ``nu = copysign(sqrt(threshold S), nu)``, hence ``w = copysign(sqrt(threshold r),
w)`` and ``zn = copysign(sqrt(threshold), zn)``, for the theta update, the noise mean and the
CUSUM; its ``nis``, score and ``residual`` stay unclipped. A second pair beyond the bound in a
row is a change: the full innovation, not learnt from (as in ALARM). The lag model needs one
more step, because y is also the next regressor: after a spike of the measurement the next
prediction would start from the spike, and its pull back would be a second outlier (a change,
charging the CUSUM: an alarm per spike, as before). So the tick after a winsorized pair has two
candidates for ``y[t-1]``: the measurement, right when the process really moved, and its
prediction ``estimate - y0`` (the last estimate), right when the measurement spiked. The one
with the smaller ``nu^2 / (1 + q)`` is the regressor of that tick, for everything above (``A``
and its factors are the same for both; a tie keeps the measurement). The ``chain`` state is 2
on that tick (1 otherwise), so saved states keep their fields. Simulated (tau 3-60 ticks,
Gaussian noise plus 1 % spikes of 5-15 sigma in the measurement): 20.7 alarm onsets per 10 000
samples before, 18.8 with the winsorized residual alone, 0.6 with both; with the spikes in the
process instead 9.2, 0.4 and 0.3; Student-t (2 dof) process noise 10.6 -> 0.6. A changed gain
is alarmed as before (89 % of points within 10 ticks, all within 60). What is lost: a held
offset of y is an outlier on its first tick only (the next prediction starts from the new y),
so its first tick now charges the CUSUM by ``sqrt(threshold) - k`` instead of up to ``h``, and
the offset is then caught from the persistent ``(1 - a) offset`` residual by the CUSUM: held 15
sigma offsets were alarmed within 60 ticks in 47 % of the points instead of 76 %. Two spikes in
a row remain a change, and the pull back after them may alarm.

CUSUM on ``zn``: ``cp = min(h, max(0, cp + zn - k))``, likewise ``cm`` with ``-zn``. Score:
``max(nis / threshold, max(cp, cm) / h)``; the alarm is the shared state machine of
:mod:`edgetwin.twin._detect` (ALARM after ``alarm_on`` scores >= 1, cleared after ``alarm_off``
scores < 0.8, which also resets the CUSUM sums).

Outputs: ``estimate`` is the model's view of y, not blended with the measurement: ``y0 + p``,
the one-step prediction from the previous pair (from the regressor chosen after a winsorized
pair), on a chained good pair and on a tick right after a good pair; the measurement itself on
a pair that only seeds the chain; otherwise the last estimate held (0.0 before the first good
pair, when ``initialized`` is False). ``residual`` is ``nu`` (y minus the estimate, unclipped)
on a chained good pair, else 0; ``score`` and ``nis`` are 0 unless the pair was scored.
``gain = b / (1 - ac)`` and ``tau = -1 / ln(ac)`` ticks (0 when ``ac = 0``), from theta after
the tick, with ``ac = clip(a, 0, 0.9999)``: the one-step predictor uses theta as learnt (it
starts from the measured ``y[t-1]`` or its clipped prediction, so it cannot diverge) and the
clip only keeps the derived parameters finite. Outputs are always finite.

``update`` returns fresh arrays, or writes into ``out`` (from ``new_output()``) so that a hot loop
allocates nothing; inputs that already are contiguous, writable float64 / uint16 arrays of the
right shape are used as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, NoReturn

import numpy as np
import numpy.typing as npt

from edgetwin.core.types import FloatArray, Uint16Array
from edgetwin.twin import _lag_kernel as _k
from edgetwin.twin._detect import ALARMED
from edgetwin.twin._validate import (
    as_noise_floor,
    as_quality,
    as_values,
    detection,
    pack_params,
    positive_int,
    state_columns,
    state_tables,
)

_F64 = np.dtype(np.float64)
_U8 = np.dtype(np.uint8)
_BOOL = np.dtype(np.bool_)
_new_tuple = tuple.__new__


class LagOutput(NamedTuple):
    """Per-point output of one update: fresh arrays, or the ``out`` given to ``update``."""

    estimate: FloatArray
    score: FloatArray
    nis: FloatArray
    alarm: npt.NDArray[np.uint8]
    initialized: npt.NDArray[np.bool_]
    gain: FloatArray
    tau: FloatArray
    residual: FloatArray


def _output(block: FloatArray, flags: npt.NDArray[np.uint8]) -> LagOutput:
    # tuple.__new__ skips the generated __new__'s argument handling (~0.3 us of a 1-point
    # update); initialized: the kernel writes 0 or 1, viewed as bool
    return _new_tuple(
        LagOutput,
        (
            block[_k.OUT_ESTIMATE],
            block[_k.OUT_SCORE],
            block[_k.OUT_NIS],
            flags[0],
            flags[1].view(_BOOL),
            block[_k.OUT_GAIN],
            block[_k.OUT_TAU],
            block[_k.OUT_RESIDUAL],
        ),
    )


class LagEstimator:
    """First-order response of ``n_points`` points to their inputs, with anomaly score and alarm."""

    def __init__(
        self,
        n_points: int,
        *,
        commissioning: int = 60,
        threshold: float = 10.83,
        cusum_k: float = 0.5,
        cusum_h: float = 8.0,
        alarm_on: int = 3,
        alarm_off: int = 5,
        horizon: int = 1000,
        noise_floor: npt.ArrayLike | None = None,
    ) -> None:
        self._n = positive_int("n_points", n_points, 1)
        self._noise_floor = as_noise_floor(noise_floor, self._n)
        # three parameters, plus two recursive residuals for the noise
        commissioning = positive_int("commissioning", commissioning, 5)
        d = detection(threshold, cusum_k, cusum_h, alarm_on, alarm_off)
        horizon = positive_int("horizon", horizon, 10)
        self._params = pack_params(commissioning, d, (horizon,), self._noise_floor**2)
        self._block_shape = (_k.N_OUT, self._n)
        self._flags_shape = (_k.N_FLAGS, self._n)
        self._fs = np.zeros((self._n, _k.N_FLOAT), dtype=np.float64)  # point-major
        for col in (_k.R11, _k.R22, _k.R33):
            self._fs[:, col] = _k.INFO_FLOOR
        self._ist = np.zeros((self._n, _k.N_INT), dtype=np.int64)
        # outputs handed out by new_output(), by id; kept alive so an id is never reused
        self._issued: dict[int, tuple[LagOutput, FloatArray, npt.NDArray[np.uint8]]] = {}

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

    def new_output(self) -> LagOutput:
        """Preallocated output for ``update(..., out=...)``; the estimator keeps a reference."""
        block = np.zeros(self._block_shape, dtype=np.float64)
        flags = np.zeros(self._flags_shape, dtype=np.uint8)
        out = _output(block, flags)
        self._issued[id(out)] = (out, block, flags)
        return out

    def update(
        self,
        values: npt.ArrayLike,
        inputs: npt.ArrayLike,
        quality: npt.ArrayLike,
        input_quality: npt.ArrayLike,
        out: LagOutput | None = None,
    ) -> LagOutput:
        """Advance every point by one tick: y ``values``, u ``inputs`` and their qualities, (n,)."""
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
        y: Any = values
        u: Any = inputs
        qy: Any = quality
        qu: Any = input_quality
        try:
            fits = _k.lag_update(y, u, qy, qu, self._fs, self._ist, self._params, block, flags)
        except TypeError:
            n = self._n
            fits = _k.lag_update(
                as_values(values, n),
                _renamed(as_values, inputs, n, "inputs"),
                as_quality(quality, n),
                _renamed(as_quality, input_quality, n, "input_quality"),
                self._fs,
                self._ist,
                self._params,
                block,
                flags,
            )
        if not fits:
            _misfit(values, inputs, quality, input_quality, self._n)
        return _output(block, flags) if out is None else out

    def state(self) -> dict[str, npt.NDArray[Any]]:
        """Return copies of every state array, enough to resume exactly (see ``load_state``)."""
        return state_columns(self._fs.T, self._ist.T, _k.FLOAT_FIELDS, _k.INT_FIELDS)

    def load_state(self, state: Mapping[str, npt.NDArray[Any]]) -> None:
        """Resume from ``state()`` output; ValueError (and no change) if it does not fit."""
        fs, ist = state_tables(state, _k.FLOAT_FIELDS, _k.INT_FIELDS, self._n)
        _check_state(fs, ist)
        # point-major in the kernel: one point's fields share cache lines
        self._fs = np.ascontiguousarray(fs.T)
        self._ist = np.ascontiguousarray(ist.T)


def _renamed(
    check: Callable[[npt.ArrayLike, int], npt.NDArray[Any]], arr: npt.ArrayLike, n: int, name: str
) -> npt.NDArray[Any]:
    """Run a shared check on the input point's arrays, naming them in its errors."""
    try:
        return check(arr, n)
    except ValueError as exc:
        msg = str(exc)
        for old in ("values", "quality"):
            if msg.startswith(old):
                msg = name + msg[len(old) :]
        raise ValueError(msg) from exc


def _misfit(
    values: npt.ArrayLike,
    inputs: npt.ArrayLike,
    quality: npt.ArrayLike,
    input_quality: npt.ArrayLike,
    n: int,
) -> NoReturn:
    """Raise for inputs the kernel refused by their shapes: the located error where there is one."""
    as_values(values, n)
    _renamed(as_values, inputs, n, "inputs")
    as_quality(quality, n)
    _renamed(as_quality, input_quality, n, "input_quality")
    raise ValueError("values, inputs and their qualities do not fit this estimator")


def _check_state(fs: FloatArray, ist: npt.NDArray[np.int64]) -> None:
    if not np.isfinite(fs).all():
        raise ValueError("state holds non-finite floats")
    for row in (_k.W2, _k.CP, _k.CM):
        if (fs[row] < 0.0).any():
            raise ValueError(f"state[{_k.FLOAT_FIELDS[row]!r}] must be >= 0")
    info = fs[list(_k.INFO_ROWS)]
    diag = info[[0, 3, 5]]
    if (diag <= 0.0).any():
        raise ValueError("state['info_*'] must be positive definite")
    # scaled to a unit diagonal, so that points of any magnitude are judged alike
    scale = 1.0 / np.sqrt(diag)
    m = np.empty((fs.shape[1], 3, 3))
    for (j, k), row in zip(((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)), info, strict=True):
        m[:, j, k] = m[:, k, j] = row * scale[j] * scale[k]
    if fs.shape[1] and not (np.linalg.eigvalsh(m)[:, 0] > 0.0).all():
        raise ValueError("state['info_*'] must be positive definite")
    limits = {_k.CALIBRATED: 1, _k.ALARM: ALARMED, _k.SEEDED: 1, _k.CHAIN: _k.WINSORIZED}
    for row, name in enumerate(_k.INT_FIELDS):
        if (ist[row] < 0).any() or (row in limits and (ist[row] > limits[row]).any()):
            raise ValueError(f"state[{name!r}] out of range")
    unseeded = ist[_k.SEEDED] == 0
    if (ist[_k.CHAIN][unseeded] != 0).any() or (ist[_k.CALIBRATED][unseeded] != 0).any():
        raise ValueError("state['seeded'] is 0 for a point with a chain or a calibration")
    if (ist[_k.CALIBRATED][ist[_k.CHAIN] == _k.WINSORIZED] != 1).any():
        raise ValueError("state['chain'] marks a winsorized sample before calibration")


def warmup() -> None:
    """Compile (or load from the on-disk cache) the kernel, on a one-point estimator."""
    quality: Uint16Array = np.zeros(1, dtype=np.uint16)
    LagEstimator(1).update(np.zeros(1), np.zeros(1), quality, quality)
