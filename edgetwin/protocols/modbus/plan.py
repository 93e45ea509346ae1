"""Read coalescing: merge the points of one table into the fewest requests within limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Protocol limits per request (Modbus application protocol v1.1b3, 6.1-6.4).
MAX_REGISTERS = 125
MAX_BITS = 2000


@dataclass(frozen=True, slots=True)
class Span:
    """One item to read: ``count`` consecutive addresses starting at ``address``."""

    key: int  # caller's index of the point
    address: int
    count: int


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One coalesced request and the spans it serves."""

    address: int
    count: int
    spans: tuple[Span, ...]


def plan_reads(spans: Sequence[Span], *, max_count: int, max_gap: int) -> list[ReadRequest]:
    """Return requests covering every span, never longer than ``max_count`` addresses.

    Adjacent spans are merged while the hole between them is at most ``max_gap``
    addresses. Linear after the sort.
    """
    if max_count < 1:
        raise ValueError("max_count must be >= 1")
    ordered = sorted(spans, key=lambda s: (s.address, s.count))
    requests: list[ReadRequest] = []
    cur: list[Span] = []
    start = end = 0  # [start, end) of the current request
    for span in ordered:
        if span.count > max_count:
            raise ValueError(f"span at {span.address} ({span.count}) exceeds {max_count}")
        span_end = span.address + span.count
        if cur and span.address - end <= max_gap and max(end, span_end) - start <= max_count:
            cur.append(span)
            end = max(end, span_end)
            continue
        if cur:
            requests.append(ReadRequest(start, end - start, tuple(cur)))
        cur, start, end = [span], span.address, span_end
    if cur:
        requests.append(ReadRequest(start, end - start, tuple(cur)))
    return requests
