"""Read coalescing: merge the points of one table into the fewest requests within limits.

Spans are sorted once; spans that share addresses (bits of one register) become one block,
then blocks are taken left to right and a block joins the current request when the hole
before it is at most ``max_gap`` addresses, the request stays within ``max_count`` and the
hole holds no forbidden address. For blocks that do not overlap each other this greedy cut
is optimal: the feasible sets are closed under taking a suffix, so no plan with the same
limits has fewer requests, and in particular none of the one-per-point or contiguous-only
plans has. Everything after the sort is one pass over the spans and the forbidden ranges.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Protocol limits per request (Modbus application protocol v1.1b3, 6.1-6.4).
MAX_REGISTERS = 125
MAX_BITS = 2000
ADDRESSES = 65536


@dataclass(frozen=True, slots=True)
class Span:
    """One item to read: ``count`` consecutive addresses starting at ``address``."""

    key: int  # caller's index of the point
    address: int
    count: int

    @property
    def end(self) -> int:
        """One past the last address."""
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One coalesced request and the spans it serves."""

    address: int
    count: int
    spans: tuple[Span, ...]


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` ranges sorted and merged where they touch or overlap."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if first > last:
            raise ValueError(f"forbidden range {first}..{last} is empty")
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def plan_reads(
    spans: Sequence[Span],
    *,
    max_count: int,
    max_gap: int,
    forbidden: Iterable[tuple[int, int]] = (),
) -> list[ReadRequest]:
    """Return requests covering every span, never longer than ``max_count`` addresses.

    ``max_gap`` is the largest hole of unused addresses read through; -1 merges only spans
    that share addresses (one request per point). No request ever covers an address in
    ``forbidden`` (inclusive ranges); a span inside one is a ValueError.
    """
    if max_count < 1:
        raise ValueError("max_count must be >= 1")
    if max_gap < -1:
        raise ValueError("max_gap must be >= -1")
    holes = merge_ranges(forbidden)
    ordered = sorted(spans, key=lambda s: (s.address, s.count))
    requests: list[ReadRequest] = []
    cur: list[Span] = []
    start = end = 0  # [start, end) of the current request
    f_span = f_gap = 0  # forbidden ranges wholly before the current span / gap
    for span in ordered:
        if span.count < 1 or span.address < 0 or span.end > ADDRESSES:
            raise ValueError(f"span at {span.address} ({span.count}) is out of range")
        if span.count > max_count:
            raise ValueError(f"span at {span.address} ({span.count}) exceeds {max_count}")
        while f_span < len(holes) and holes[f_span][1] < span.address:
            f_span += 1
        if f_span < len(holes) and holes[f_span][0] < span.end:
            first, last = holes[f_span]
            raise ValueError(
                f"span at {span.address} ({span.count}) is forbidden ({first}..{last})"
            )
        if cur:
            new_end = max(end, span.end)
            if span.address < end:
                joins = new_end - start <= max_count  # shares addresses: no hole
            else:
                while f_gap < len(holes) and holes[f_gap][1] < end:
                    f_gap += 1
                clear = f_gap == len(holes) or holes[f_gap][0] >= span.address
                joins = span.address - end <= max_gap and new_end - start <= max_count and clear
            if joins:
                cur.append(span)
                end = new_end
                continue
            requests.append(ReadRequest(start, end - start, tuple(cur)))
        cur, start, end = [span], span.address, span.end
    if cur:
        requests.append(ReadRequest(start, end - start, tuple(cur)))
    return requests
