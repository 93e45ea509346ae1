"""Helpers for the codec tests: feed a stream in chunks, compare parses."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from hypothesis import strategies as st

from edgetwin.protocols.serial.frame import ErrorCounts, Frame, FrameParser


def feed_chunks(parser: FrameParser, data: bytes, cuts: Sequence[int]) -> list[Frame]:
    """Feed ``data`` split at ``cuts`` (any positions, any order, repeats allowed)."""
    frames: list[Frame] = []
    last = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        frames += parser.feed(data[last:cut])
        last = cut
    return frames


def summary(frames: list[Frame], counts: ErrorCounts) -> tuple[object, ...]:
    """Frames (NaN made comparable) and counters, for equality checks."""
    rows = [
        (
            sorted((k, "nan" if math.isnan(v) else v) for k, v in f.values.items()),
            sorted(f.bad),
            f.tag,
            f.raw,
        )
        for f in frames
    ]
    return (rows, counts.as_dict())


def cuts() -> st.SearchStrategy[list[int]]:
    """Split points for a stream (taken modulo its length)."""
    return st.lists(st.integers(min_value=0, max_value=10_000), max_size=20)


def split_invariant(make: Callable[[], FrameParser], data: bytes, points: Sequence[int]) -> None:
    """One feed and a chunked feed give the same frames and counters."""
    whole = make()
    once = summary(whole.feed(data), whole.counts)
    chunked = make()
    assert summary(feed_chunks(chunked, data, points), chunked.counts) == once


def interleave(frames: Sequence[bytes], noise: Sequence[bytes]) -> bytes:
    """noise[0] frame[0] noise[1] frame[1] ... (noise cycled)."""
    out = bytearray()
    for i, frame in enumerate(frames):
        out += noise[i % len(noise)] if noise else b""
        out += frame
    return bytes(out)
