"""Read coalescing: coverage, limits, gaps, forbidden ranges, baselines and optimality."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.protocols.modbus.plan import MAX_BITS, Span, merge_ranges, plan_reads


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


# --------------------------------------------------------------------------- forbidden ranges,
# baselines and optimality, on layouts a configuration can produce: points that do not overlap,
# plus bools that share one register.


@st.composite
def layouts(draw: st.DrawFn) -> tuple[list[Span], list[tuple[int, int]]]:
    """Non-overlapping spans (some registers shared by several bit points) and forbidden
    ranges lying in the holes between them."""
    n = draw(st.integers(0, 40))
    spans: list[Span] = []
    address = draw(st.integers(0, 20))
    for _ in range(n):
        count = draw(st.sampled_from([1, 1, 2, 4, 8]))
        spans.append(Span(len(spans), address, count))
        if count == 1:
            for _ in range(draw(st.integers(0, 2))):  # more bits of the same register
                spans.append(Span(len(spans), address, 1))
        address += count + draw(st.sampled_from([0, 0, 1, 2, 3, 5, 9, 20]))
    used = {a for s in spans for a in range(s.address, s.end)}
    forbidden = []
    for _ in range(draw(st.integers(0, 6))):
        first = draw(st.integers(0, address + 5))
        last = first + draw(st.integers(0, 4))
        if not any(a in used for a in range(first, last + 1)):
            forbidden.append((first, last))
    order = draw(st.permutations(range(len(spans))))
    return [spans[i] for i in order], forbidden


def feasible(
    group: list[Span], max_count: int, max_gap: int, forbidden: list[tuple[int, int]]
) -> bool:
    """Whether one request may serve ``group`` (sorted), per the rules, written plainly."""
    start = min(s.address for s in group)
    end = max(s.end for s in group)
    if end - start > max_count:
        return False
    if any(first <= a <= last for a in range(start, end) for first, last in forbidden):
        return False
    covered = {a for s in group for a in range(s.address, s.end)}
    hole = 0
    for a in range(start, end):
        hole = 0 if a in covered else hole + 1
        if hole > max_gap:
            return False
    return True


def fewest_requests(
    spans: list[Span], max_count: int, max_gap: int, forbidden: list[tuple[int, int]]
) -> int:
    """Brute force: the fewest consecutive groups of the sorted spans that are all feasible."""
    ordered = sorted(spans, key=lambda s: (s.address, s.count))
    best = [0] + [len(ordered) + 1] * len(ordered)
    for j in range(1, len(ordered) + 1):
        for i in range(j):
            if feasible(ordered[i:j], max_count, max_gap, forbidden):
                best[j] = min(best[j], best[i] + 1)
    return best[-1]


def contiguous_only(spans: list[Span], max_count: int) -> int:
    """Baseline: merge only spans that touch or share registers, within the size limit."""
    ordered = sorted(spans, key=lambda s: (s.address, s.count))
    count, start, end = 0, 0, -1
    for s in ordered:
        if count and s.address <= end and max(end, s.end) - start <= max_count:
            end = max(end, s.end)
            continue
        count, start, end = count + 1, s.address, s.end
    return count


@settings(max_examples=120, deadline=None)
@given(layout=layouts(), max_count=st.integers(8, 125), max_gap=st.integers(0, 12))
def test_plan_obeys_every_rule_and_needs_the_fewest_requests(
    layout: tuple[list[Span], list[tuple[int, int]]], max_count: int, max_gap: int
) -> None:
    spans, forbidden = layout
    plan = plan_reads(spans, max_count=max_count, max_gap=max_gap, forbidden=forbidden)
    served = sorted(s.key for r in plan for s in r.spans)
    assert served == sorted(s.key for s in spans)  # every point once
    for r in plan:
        assert 1 <= r.count <= max_count
        assert all(r.address <= s.address and s.end <= r.address + r.count for s in r.spans)
        assert r.address == min(s.address for s in r.spans)
        assert r.address + r.count == max(s.end for s in r.spans)
        read = range(r.address, r.address + r.count)
        assert not any(first <= a <= last for a in read for first, last in forbidden)
        assert feasible(sorted(r.spans, key=lambda s: s.address), max_count, max_gap, forbidden)
    assert len(plan) <= len(spans)  # never worse than one request per point
    assert len(plan) <= contiguous_only(spans, max_count)
    if len(spans) <= 16:  # the brute force is quadratic and slow beyond
        assert len(plan) == fewest_requests(spans, max_count, max_gap, forbidden)


@settings(max_examples=40)
@given(layout=layouts(), max_count=st.integers(8, 125))
def test_one_point_per_request_merges_only_shared_registers(
    layout: tuple[list[Span], list[tuple[int, int]]], max_count: int
) -> None:
    spans, forbidden = layout
    plan = plan_reads(spans, max_count=max_count, max_gap=-1, forbidden=forbidden)
    assert len(plan) == len({(s.address, s.count) for s in spans})
    for r in plan:
        assert len({(s.address, s.count) for s in r.spans}) == 1


def test_forbidden_range_splits_even_within_max_gap() -> None:
    # The pump's reserved inputs 16..19, marked forbidden: 0..15 and 20..23, never 16..19.
    spans = [Span(i, a, 2) for i, a in enumerate(range(0, 16, 2))]
    spans += [Span(8, 20, 2), Span(9, 22, 1)]
    plan = plan_reads(spans, max_count=125, max_gap=8, forbidden=[(17, 17)])
    assert [(r.address, r.count) for r in plan] == [(0, 16), (20, 3)]
    plan = plan_reads(spans, max_count=125, max_gap=8, forbidden=[(30, 40), (100, 100)])
    assert [(r.address, r.count) for r in plan] == [(0, 23)]


def test_a_span_inside_a_forbidden_range_is_refused() -> None:
    with pytest.raises(ValueError, match="forbidden"):
        plan_reads([Span(0, 10, 2)], max_count=125, max_gap=0, forbidden=[(11, 12)])
    with pytest.raises(ValueError, match="empty"):
        plan_reads([Span(0, 10, 2)], max_count=125, max_gap=0, forbidden=[(5, 4)])


def test_merge_ranges_joins_touching_and_overlapping() -> None:
    assert merge_ranges([(10, 12), (1, 2), (3, 4), (11, 20), (30, 30)]) == [
        (1, 4),
        (10, 20),
        (30, 30),
    ]


def test_bit_table_limit_is_2000_and_spans_must_fit_the_address_space() -> None:
    spans = [Span(i, i * 10, 1) for i in range(300)]
    plan = plan_reads(spans, max_count=MAX_BITS, max_gap=16)
    # bits 0, 10, ..., 2990: the first 200 fit in 1991 bits, the other 100 in 991
    assert [r.count for r in plan] == [1991, 991]
    with pytest.raises(ValueError, match="out of range"):
        plan_reads([Span(0, 65535, 2)], max_count=125, max_gap=0)
