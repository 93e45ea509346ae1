"""The digital twin: private Numba kernels behind validated estimators; no asyncio, no I/O."""

from __future__ import annotations

from edgetwin.twin.level import LevelEstimator, LevelOutput, warmup

__all__ = ["LevelEstimator", "LevelOutput", "warmup"]
