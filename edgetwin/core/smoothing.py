"""Exponential smoothing arithmetic the asset model and its config checks share."""

from __future__ import annotations

import math

__all__ = ["burn_in", "effective_samples", "smoothing_alpha"]


def smoothing_alpha(smoothing: float) -> float:
    """Weight of a new sample in the smoothed sample."""
    return 1.0 if smoothing == 0.0 else -math.expm1(-1.0 / smoothing)


def burn_in(commissioning: int, smoothing: float) -> int:
    """Commissioning ticks before the smoothed statistics start."""
    return min(int(3.0 * smoothing), commissioning // 4)


def effective_samples(commissioning: int, smoothing: float) -> float:
    """Independent samples the smoothed commissioning statistics are worth (AR(1) ESS)."""
    a = smoothing_alpha(smoothing)
    return (commissioning - burn_in(commissioning, smoothing)) * a / (2.0 - a)
