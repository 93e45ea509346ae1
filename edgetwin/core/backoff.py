"""Capped, jittered exponential backoff."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from ``base`` up to ``cap``, with full jitter on the upper half."""

    def __init__(self, base: float, cap: float, *, rng: random.Random | None = None) -> None:
        if not 0 < base <= cap:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """Return the delay before the next attempt and count the attempt."""
        ceiling = min(self.cap, self.base * 2.0**self.attempt)
        self.attempt += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        """Start again from ``base`` (after a success)."""
        self.attempt = 0
