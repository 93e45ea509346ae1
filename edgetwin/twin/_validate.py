"""Argument checks every estimator shares: located ValueErrors, arrays made safe for the kernels."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, NoReturn

import numpy as np
import numpy.typing as npt

from edgetwin.core.types import FloatArray, Uint16Array
from edgetwin.twin._detect import MAX_ABS

_MAX_EXACT_INT = 2**53


def positive_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")  # noqa: TRY004 - API promise
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


class Detection(NamedTuple):
    """The alarm parameters every point model takes (see ``_detect``), checked."""

    threshold: float
    cusum_k: float
    cusum_h: float
    alarm_on: int
    alarm_off: int


def detection(
    threshold: object, cusum_k: object, cusum_h: object, alarm_on: object, alarm_off: object
) -> Detection:
    """Check the alarm parameters a point model was given; ValueError naming the first bad one."""
    return Detection(
        finite_float("threshold", threshold, allow_zero=False),
        finite_float("cusum_k", cusum_k, allow_zero=True),
        finite_float("cusum_h", cusum_h, allow_zero=False),
        positive_int("alarm_on", alarm_on, 1),
        positive_int("alarm_off", alarm_off, 1),
    )


def pack_params(
    commissioning: int, d: Detection, extra: Sequence[float], r_floor: FloatArray
) -> FloatArray:
    """The level and lag kernels' parameter array: ``commissioning`` and ``d`` at the
    ``_detect.PARAM_*`` positions, then the model's ``extra`` scalars, then the floor of ``r``
    per point."""
    head = (commissioning, d.threshold, d.cusum_k, d.cusum_h, d.alarm_on, d.alarm_off)
    return np.concatenate([np.array([*head, *extra], dtype=np.float64), r_floor])


def finite_float(name: str, value: object, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, got {value!r}")  # noqa: TRY004 - API promise
    out = float(value)
    if not math.isfinite(out) or out < 0.0 or (out == 0.0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return out


def as_values(values: npt.ArrayLike, n: int) -> FloatArray:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"values must have shape ({n},), got {arr.shape}")
    kind = arr.dtype.kind
    if kind == "f" and arr.dtype.itemsize <= 8:
        pass
    elif kind in "iu":
        if (
            arr.dtype.itemsize >= 8
            and n
            and (arr.min() < -_MAX_EXACT_INT or arr.max() > _MAX_EXACT_INT)
        ):
            raise ValueError("values: integers beyond 2**53 do not convert to float64 exactly")
    else:
        raise ValueError(f"values must be a float64 array, got dtype {arr.dtype}")
    out = np.ascontiguousarray(arr, dtype=np.float64)
    return out if out.flags.writeable else out.copy()


def as_quality(quality: npt.ArrayLike, n: int) -> Uint16Array:
    arr = np.asarray(quality)
    if arr.shape != (n,):
        raise ValueError(f"quality must have shape ({n},), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"quality must be a uint16 array, got dtype {arr.dtype}")
    if arr.dtype != np.uint16 and n and (arr.min() < 0 or arr.max() > np.iinfo(np.uint16).max):
        raise ValueError("quality values must fit in uint16")
    out = np.ascontiguousarray(arr, dtype=np.uint16)
    return out if out.flags.writeable else out.copy()


def misfit(values: npt.ArrayLike, quality: npt.ArrayLike, n: int) -> NoReturn:
    """Raise for inputs a kernel refused by their shapes: the located error where there is one."""
    as_values(values, n)
    as_quality(quality, n)
    raise ValueError("values and quality do not fit this estimator")


def state_columns(
    fs: FloatArray, ist: npt.NDArray[np.int64], floats: Sequence[str], ints: Sequence[str]
) -> dict[str, npt.NDArray[Any]]:
    """Copies of every row of field-major state tables, by field name."""
    state: dict[str, npt.NDArray[Any]] = {}
    for row, name in enumerate(floats):
        state[name] = fs[row].copy()
    for row, name in enumerate(ints):
        state[name] = ist[row].copy()
    return state


def state_tables(
    state: Mapping[str, npt.NDArray[Any]], floats: Sequence[str], ints: Sequence[str], n: int
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Field-major float64 and int64 tables from ``state_columns`` output; ValueError if off."""
    expected = set(floats) | set(ints)
    if set(state) != expected:
        missing = sorted(expected - set(state))
        extra = sorted(set(state) - expected)
        raise ValueError(f"state keys mismatch: missing {missing}, unexpected {extra}")
    fs = np.empty((len(floats), n), dtype=np.float64)
    ist = np.empty((len(ints), n), dtype=np.int64)
    for table, names in ((fs, floats), (ist, ints)):
        for row, name in enumerate(names):
            arr = state[name]
            if not isinstance(arr, np.ndarray) or arr.dtype != table.dtype:
                got = arr.dtype if isinstance(arr, np.ndarray) else type(arr).__name__
                raise ValueError(f"state[{name!r}] must be a {table.dtype} array, got {got}")
            if arr.shape != (n,):
                raise ValueError(f"state[{name!r}] must have shape ({n},), got {arr.shape}")
            table[row] = arr
    return fs, ist


def as_noise_floor(noise_floor: npt.ArrayLike | None, n: int) -> FloatArray:
    """Validated copy of ``noise_floor`` (standard deviations, shape (n,); None: zeros)."""
    if noise_floor is None:
        return np.zeros(n, dtype=np.float64)
    arr = np.asarray(noise_floor)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"noise_floor must be a float64 array, got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(f"noise_floor must have shape ({n},), got {arr.shape}")
    std = arr.astype(np.float64)  # a copy: later changes to the caller's array do not leak in
    bad = ~(np.isfinite(std) & (std >= 0.0) & (std <= MAX_ABS))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"noise_floor must be finite, >= 0 and <= {MAX_ABS:g}, got {arr[i]!r} at index {i}"
        )
    return std
