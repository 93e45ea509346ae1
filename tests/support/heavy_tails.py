"""Heavy-tailed test signals for the twin's point models."""

from __future__ import annotations

import numpy as np


def spikes(
    rng: np.random.Generator, shape: tuple[int, ...], rate: float = 0.01, sigma: float = 1.0
) -> np.ndarray:
    """At ``rate`` of the samples a spike of 5-15 ``sigma`` either way, else 0."""
    hit = rng.random(shape) < rate
    size = rng.choice([-1.0, 1.0], shape) * rng.uniform(5.0, 15.0, shape) * sigma
    return np.where(hit, size, 0.0)
