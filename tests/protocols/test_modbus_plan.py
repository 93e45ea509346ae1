"""Read coalescing: coverage, limits and gap rules, against a brute-force reference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetwin.protocols.modbus.plan import Span, plan_reads


def reference_request_count(spans: list[Span], max_count: int, max_gap: int) -> int:
    """Greedy left-to-right over sorted spans, written out plainly."""
    ordered = sorted(spans, key=lambda s: (s.address, s.count))
    count = 0
    start = end = None
    for s in ordered:
        if start is not None and end is not None:
            new_end = max(end, s.address + s.count)
            if s.address - end <= max_gap and new_end - start <= max_count:
                end = new_end
                continue
        count += 1
        start, end = s.address, s.address + s.count
    return count


spans_strategy = st.lists(
    st.builds(lambda a, c: (a, c), st.integers(0, 400), st.sampled_from([1, 2, 4])),
    min_size=0,
    max_size=60,
).map(lambda pairs: [Span(i, a, c) for i, (a, c) in enumerate(pairs)])


@given(spans=spans_strategy, max_count=st.integers(4, 125), max_gap=st.integers(0, 20))
def test_plan_covers_every_span_within_limits(
    spans: list[Span], max_count: int, max_gap: int
) -> None:
    plan = plan_reads(spans, max_count=max_count, max_gap=max_gap)
    served = [s.key for r in plan for s in r.spans]
    assert sorted(served) == sorted(s.key for s in spans)
    for r in plan:
        assert 1 <= r.count <= max_count
        for s in r.spans:
            assert r.address <= s.address
            assert s.address + s.count <= r.address + r.count
        # Nothing is read that is neither a span nor a hole of at most max_gap between spans.
        covered = sorted((s.address, s.address + s.count) for s in r.spans)
        assert covered[0][0] == r.address
        reach = covered[0][1]
        for a, b in covered[1:]:
            assert a - reach <= max_gap
            reach = max(reach, b)
        assert reach == r.address + r.count
    assert len(plan) == reference_request_count(spans, max_count, max_gap)


def test_pump_map_is_one_request() -> None:
    # float32 points at 0..14, uint32 at 20, int16 at 22: one read of 23 registers.
    spans = [Span(i, a, 2) for i, a in enumerate(range(0, 16, 2))]
    spans += [Span(8, 20, 2), Span(9, 22, 1)]
    plan = plan_reads(spans, max_count=125, max_gap=8)
    assert [(r.address, r.count) for r in plan] == [(0, 23)]
    plan = plan_reads(spans, max_count=125, max_gap=3)
    assert [(r.address, r.count) for r in plan] == [(0, 16), (20, 3)]
    plan = plan_reads(spans, max_count=10, max_gap=8)
    assert all(r.count <= 10 for r in plan)


def test_span_longer_than_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        plan_reads([Span(0, 0, 4)], max_count=2, max_gap=0)
