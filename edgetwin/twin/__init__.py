"""The digital twin: private Numba kernels behind validated estimators; no asyncio, no I/O.

Models: ``level`` (random walk + noise), ``trend`` (level + rate), ``lag`` (first-order response
to an input point) per point, and ``asset`` (how several points move together) per asset.
"""

from __future__ import annotations

from edgetwin.twin import asset, lag, level, trend
from edgetwin.twin.asset import AssetEstimator, AssetOutput
from edgetwin.twin.lag import LagEstimator, LagOutput
from edgetwin.twin.level import LevelEstimator, LevelOutput
from edgetwin.twin.trend import TrendEstimator, TrendOutput

__all__ = [
    "AssetEstimator",
    "AssetOutput",
    "LagEstimator",
    "LagOutput",
    "LevelEstimator",
    "LevelOutput",
    "TrendEstimator",
    "TrendOutput",
    "warmup",
]


def warmup() -> None:
    """Compile (or load from the on-disk cache) every model's kernels."""
    for model in (level, trend, lag, asset):
        model.warmup()
