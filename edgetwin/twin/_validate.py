"""Argument checks every estimator shares: located ValueErrors, arrays made safe for the kernels."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from edgetwin.core.types import FloatArray, Uint16Array

_MAX_EXACT_INT = 2**53


def positive_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")  # noqa: TRY004 - API promise
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


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
