"""Report by exception: each selection rule on its own, then against a row-by-row model."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetwin.core.types import TwinBatch
from edgetwin.uplink.codec import PointInfo
from edgetwin.uplink.rbe import Policy, Reporter


def rows(
    index: list[int],
    value: list[float],
    *,
    estimate: list[float] | None = None,
    alarm: list[int] | None = None,
    quality: list[int] | None = None,
) -> TwinBatch:
    n = len(index)
    return TwinBatch(
        index=np.array(index, dtype=np.int64),
        ts=np.zeros(n),
        value=np.array(value, dtype=np.float64),
        estimate=np.array(estimate if estimate is not None else value, dtype=np.float64),
        score=np.zeros(n),
        alarm=np.array(alarm or [0] * n, dtype=np.uint8),
        quality=np.array(quality or [0] * n, dtype=np.uint16),
    )


def sent(r: Reporter, value: float, *, now: float = 0.0, **kw: object) -> bool:
    """Offer one sample of point 0; return whether it was selected."""
    return bool(r.select(rows([0], [value]), now, **kw)[0])  # type: ignore[arg-type]


def test_the_first_sample_is_always_sent() -> None:
    for mode in ("deadband", "model", "full"):
        r = Reporter([Policy(mode, deadband=1e9)])
        assert sent(r, 5.0)
        assert r.select(rows([0], [5.0]), 0.0).tolist() == [mode == "full"]


def test_deadband_on_the_resolution_grid() -> None:
    r = Reporter([Policy("deadband", resolution=0.1)])  # default deadband: one count
    assert sent(r, 1.0)
    assert not sent(r, 1.1)  # one count
    assert not sent(r, 0.9)
    assert sent(r, 1.2)  # two counts from the last *sent* 1.0
    assert not sent(r, 1.3)
    assert not sent(r, 1.1)
    assert sent(r, 1.0)


def test_one_count_is_one_count_wherever_it_is() -> None:
    # 1.1 - 1.0 > 0.1 and 0.6 - 0.5 < 0.1 in float64; on the grid both are one count
    for base in (0.5, 1.0, 1e6, -3.3):
        r = Reporter([Policy("deadband", resolution=0.1)])
        assert sent(r, base)
        assert not sent(r, base + 0.1)
        assert not sent(r, base - 0.1)


def test_deadband_wider_than_the_resolution() -> None:
    r = Reporter([Policy("deadband", deadband=0.3, resolution=0.1)])
    assert sent(r, 2.0)
    assert not sent(r, 2.3)  # three counts are within 0.3
    assert sent(r, 2.4)


def test_deadband_without_resolution() -> None:
    r = Reporter([Policy("deadband", deadband=0.5)])
    assert sent(r, 10.0)
    assert not sent(r, 10.5)
    assert sent(r, 10.5000001)
    any_change = Reporter([Policy("deadband")])
    assert sent(any_change, 1.0)
    assert not sent(any_change, 1.0)
    assert sent(any_change, 1.0 + 2**-52)


def test_a_slow_creep_is_sent_once_it_adds_up() -> None:
    r = Reporter([Policy("deadband", deadband=1.0)])
    assert sent(r, 0.0)
    picks = [sent(r, 0.3 * k) for k in range(1, 11)]
    assert picks == [False, False, False, True, False, False, False, True, False, False]


def test_quality_change_is_sent() -> None:
    r = Reporter([Policy("deadband", deadband=100.0)])
    r.select(rows([0], [1.0]), 0.0)
    assert r.select(rows([0], [1.0], quality=[1]), 1.0).tolist() == [True]
    assert r.select(rows([0], [1.0], quality=[1]), 2.0).tolist() == [False]
    assert r.select(rows([0], [1.0], quality=[0]), 3.0).tolist() == [True]


def test_alarm_change_is_sent() -> None:
    r = Reporter([Policy("deadband", deadband=100.0)])
    r.select(rows([0], [1.0]), 0.0)
    assert r.select(rows([0], [1.0], alarm=[1]), 1.0).tolist() == [True]
    assert r.select(rows([0], [1.0], alarm=[1]), 2.0).tolist() == [False]
    assert r.select(rows([0], [1.0], alarm=[2]), 3.0).tolist() == [True]


def test_heartbeat() -> None:
    r = Reporter([Policy("deadband", deadband=100.0, heartbeat=10.0)])
    assert sent(r, 1.0, now=100.0)
    assert not sent(r, 1.0, now=109.9)
    assert sent(r, 1.0, now=110.0)
    assert not sent(r, 1.0, now=115.0)  # the age counts from the last send
    never = Reporter([Policy("deadband", deadband=100.0)])
    assert sent(never, 1.0)
    assert not sent(never, 1.0, now=1e9)


def test_full_sends_everything() -> None:
    r = Reporter([Policy("full", deadband=100.0, resolution=1.0)])
    assert [sent(r, 1.0) for _ in range(5)] == [True] * 5


def model_rows(value: float, estimate: float) -> TwinBatch:
    return rows([0], [value], estimate=[estimate])


def test_model_sends_on_surprise() -> None:
    r = Reporter([Policy("model", resolution=0.1)])
    r.select(model_rows(5.0, 5.0), 0.0, np.array([0.0]))
    for nis, expect in ((8.9, False), (9.0, False), (9.01, True), (1e9, True), (0.0, False)):
        assert r.select(model_rows(7.0, 5.0), 0.0, np.array([nis])).tolist() == [expect], nis


def test_model_bound_scales_with_sigmas() -> None:
    r = Reporter([Policy("model", resolution=0.1)])
    r.select(model_rows(5.0, 5.0), 0.0, np.array([0.0]))
    assert r.select(model_rows(9.0, 5.0), 0.0, np.array([5.0]), sigmas=2.0).tolist() == [True]
    assert r.select(model_rows(9.0, 5.0), 0.0, np.array([5.0]), sigmas=3.0).tolist() == [False]


def test_model_follows_the_estimate_beyond_the_deadband() -> None:
    r = Reporter([Policy("model", resolution=0.1)])
    r.select(model_rows(5.0, 5.0), 0.0, np.array([0.0]))
    # the raw value jumps about within the bound: not sent while the estimate holds
    assert r.select(model_rows(9.0, 5.1), 0.0, np.array([1.0])).tolist() == [False]
    # a drift the twin tracks: the estimate moved two counts from the one last sent
    assert r.select(model_rows(5.2, 5.2), 0.0, np.array([1.0])).tolist() == [True]
    assert r.select(model_rows(5.3, 5.3), 0.0, np.array([1.0])).tolist() == [False]


def test_model_without_nis_falls_back_to_deadband() -> None:
    r = Reporter([Policy("model", resolution=0.1)])
    r.select(model_rows(5.0, 5.0), 0.0)
    assert r.select(model_rows(5.1, 9.0), 0.0).tolist() == [False]  # estimate ignored
    assert r.select(model_rows(5.2, 5.0), 0.0).tolist() == [True]
    r.select(model_rows(5.2, 5.0), 0.0, np.array([math.nan]))
    assert r.select(model_rows(5.3, 9.0), 0.0, np.array([math.nan])).tolist() == [False]
    assert r.select(model_rows(5.4, 5.0), 0.0, np.array([math.nan])).tolist() == [True]


def test_deadband_mode_ignores_nis() -> None:
    r = Reporter([Policy("deadband", resolution=0.1)])
    r.select(model_rows(5.0, 5.0), 0.0, np.array([0.0]))
    assert r.select(model_rows(5.1, 5.0), 0.0, np.array([1e9])).tolist() == [False]


def test_non_finite_values() -> None:
    r = Reporter([Policy("deadband", resolution=0.1)])
    assert sent(r, math.nan)
    assert not sent(r, math.nan)  # still NaN: nothing new
    assert sent(r, 1.0)
    assert sent(r, math.inf)
    assert not sent(r, math.inf)
    assert sent(r, -math.inf)
    assert sent(r, math.nan)


def test_only_selected_rows_are_remembered() -> None:
    r = Reporter([Policy("deadband", resolution=1.0)] * 2)
    assert r.select(rows([0, 1], [0.0, 0.0]), 0.0).tolist() == [True, True]
    assert r.select(rows([0, 1], [1.0, 3.0]), 0.0).tolist() == [False, True]
    # point 0 is compared with the 0.0 it last sent, not the 1.0 it last saw
    assert r.select(rows([0, 1], [2.0, 3.0]), 0.0).tolist() == [True, False]


def test_repeated_points_in_one_batch_compare_in_order() -> None:
    r = Reporter([Policy("deadband", resolution=1.0), Policy("full")])
    mask = r.select(rows([0, 1, 0, 0, 1, 0], [0.0, 0.0, 1.0, 2.0, 0.0, 3.0]), 0.0)
    assert mask.tolist() == [True, True, False, True, True, False]
    assert r.select(rows([0], [4.0]), 0.0).tolist() == [True]  # 4 vs the 2.0 sent


def test_record_counts_as_sent() -> None:
    r = Reporter([Policy("deadband", resolution=1.0, heartbeat=10.0)])
    r.select(rows([0], [0.0]), 0.0)
    r.record(rows([0], [5.0]), 8.0)  # a snapshot carried 5.0 at t = 8
    assert not sent(r, 6.0, now=17.0)
    assert sent(r, 6.0, now=18.0)


def test_policies_from_the_birth() -> None:
    pts = [
        PointInfo(0, "d", "a", "", "t", "level", 1.0, 0.5, 1.0, "model", 30.0),
        PointInfo(1, "d", "b", "", "t", "none", 1.0, None, 0.0, "full", None),
    ]
    r = Reporter.from_points(pts)
    assert r.n_points == 2
    assert Policy.of(pts[0]) == Policy("model", 1.0, 30.0, 0.5)
    with pytest.raises(ValueError, match="ordered"):
        Reporter.from_points(pts[::-1])


@pytest.mark.parametrize(
    "kw",
    [
        {"mode": "fast"},
        {"deadband": -1.0},
        {"deadband": math.nan},
        {"heartbeat": 0.0},
        {"resolution": 0.0},
        {"resolution": math.inf},
    ],
)
def test_bad_policies(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each message names its own field
        Policy(**kw)  # type: ignore[arg-type]


def test_bad_batches() -> None:
    r = Reporter([Policy()])
    with pytest.raises(ValueError, match="indexes"):
        r.select(rows([1], [0.0]), 0.0)
    with pytest.raises(ValueError, match="nis"):
        r.select(rows([0], [0.0]), 0.0, np.zeros(2))
    with pytest.raises(ValueError, match="value"):
        r.select(rows([0, 0], [0.0]), 0.0)


# ---------------------------------------------------------------- against a scalar model


@dataclass
class Model:
    """The rules of rbe.py's docstring, one row at a time, in plain Python."""

    policies: list[Policy]
    last: dict[int, tuple[float, float, int, int, float]] = field(default_factory=dict)

    def counts(self, p: Policy, v: float) -> float:
        return v if p.resolution is None or not math.isfinite(v) else round(v / p.resolution)

    def moved(self, p: Policy, new: float, old: float) -> bool:
        a, b = self.counts(p, new), self.counts(p, old)
        if not (math.isfinite(a) and math.isfinite(b)):
            return not (a == b or (math.isnan(a) and math.isnan(b)))
        if p.resolution is None:
            return abs(a - b) > (p.deadband or 0.0)
        band = p.resolution if p.deadband is None else p.deadband
        return abs(a - b) > math.floor(band / p.resolution * (1 + 1e-9))

    def select(
        self, b: TwinBatch, now: float, nis: list[float] | None, sigmas: float
    ) -> list[bool]:
        out = []
        for k, i in enumerate(b.index.tolist()):
            p = self.policies[i]
            v, e = float(b.value[k]), float(b.estimate[k])
            a, q = int(b.alarm[k]), int(b.quality[k])
            prev = self.last.get(i)
            if prev is None:
                send = True
            else:
                pv, pe, pa, pq, at = prev
                moved = self.moved(p, v, pv)
                r = math.nan if nis is None else nis[k]
                if p.mode == "model" and math.isfinite(r):
                    rule = r > sigmas**2 or self.moved(p, e, pe)
                else:
                    rule = moved
                send = (
                    a != pa
                    or q != pq
                    or (p.heartbeat is not None and now - at >= p.heartbeat)
                    or p.mode == "full"
                    or rule
                )
            if send:
                self.last[i] = (v, e, a, q, now)
            out.append(send)
        return out


policies_st = st.builds(
    Policy,
    mode=st.sampled_from(["deadband", "model", "full"]),
    deadband=st.none() | st.sampled_from([0.0, 0.05, 0.1, 0.25, 1.0]),
    heartbeat=st.none() | st.sampled_from([0.5, 1.0, 3.0]),
    resolution=st.none() | st.sampled_from([0.05, 0.1, 1.0]),
)
sample_st = st.tuples(
    st.integers(0, 3),
    st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 1.05, -0.1, math.nan, math.inf]),
    st.sampled_from([0.0, 0.1, 0.35, 1.0]),
    st.integers(0, 2),
    st.sampled_from([0, 0, 1]),
    st.sampled_from([0.0, 1.0, 9.5, math.nan]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policies=st.lists(policies_st, min_size=4, max_size=4),
    ticks=st.lists(st.lists(sample_st, max_size=6), max_size=12),
    with_nis=st.booleans(),
)
def test_reporter_matches_the_row_by_row_model(
    policies: list[Policy],
    ticks: list[list[tuple[int, float, float, int, int, float]]],
    with_nis: bool,
) -> None:
    reporter = Reporter(policies)
    model = Model(policies)
    for t, tick in enumerate(ticks):
        b = TwinBatch(
            index=np.array([s[0] for s in tick], dtype=np.int64),
            ts=np.zeros(len(tick)),
            value=np.array([s[1] for s in tick]),
            estimate=np.array([s[2] for s in tick]),
            score=np.zeros(len(tick)),
            alarm=np.array([s[3] for s in tick], dtype=np.uint8),
            quality=np.array([s[4] for s in tick], dtype=np.uint16),
        )
        nis = [s[5] for s in tick] if with_nis else None
        now = 0.7 * t
        got = reporter.select(b, now, None if nis is None else np.array(nis), 3.0).tolist()
        assert got == model.select(b, now, nis, 3.0), (t, tick)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(["deadband", "model", "full"]),
    policies=st.lists(policies_st, min_size=4, max_size=4),
    exact=st.booleans(),
    ticks=st.lists(
        st.tuples(st.integers(0, 3), st.lists(sample_st, min_size=1, max_size=4)), max_size=12
    ),
    with_nis=st.booleans(),
)
def test_runs_of_points_under_one_mode_match_the_row_by_row_model(
    mode: str,
    policies: list[Policy],
    exact: bool,
    ticks: list[tuple[int, list[tuple[int, float, float, int, int, float]]]],
    with_nis: bool,
) -> None:
    # A gateway's batches: a run of consecutive points (one device's poll), all points reported
    # alike, often without any resolution.
    policies = [
        dataclasses.replace(p, mode=mode, resolution=None if exact else p.resolution)
        for p in policies
    ]
    reporter = Reporter(policies)
    model = Model(policies)
    for t, (start, samples) in enumerate(ticks):
        tick = samples[: 4 - start]
        n = len(tick)
        b = TwinBatch(
            index=np.arange(start, start + n, dtype=np.int64),
            ts=np.zeros(n),
            value=np.array([s[1] for s in tick]),
            estimate=np.array([s[2] for s in tick]),
            score=np.zeros(n),
            alarm=np.array([s[3] for s in tick], dtype=np.uint8),
            quality=np.array([s[4] for s in tick], dtype=np.uint16),
        )
        nis = [s[5] for s in tick] if with_nis else None
        now = 0.7 * t
        got = reporter.select(b, now, None if nis is None else np.array(nis), 3.0).tolist()
        assert got == model.select(b, now, nis, 3.0), (t, start, tick)
    snapshot = TwinBatch(
        index=np.arange(4, dtype=np.int64),
        ts=np.zeros(4),
        value=np.full(4, 0.5),
        estimate=np.full(4, 0.5),
        score=np.zeros(4),
        alarm=np.zeros(4, dtype=np.uint8),
        quality=np.zeros(4, dtype=np.uint16),
    )
    reporter.record(snapshot, 100.0)
    model.last.update(dict.fromkeys(range(4), (0.5, 0.5, 0, 0, 100.0)))
    again = reporter.select(snapshot, 100.5, None, 3.0).tolist()
    assert again == model.select(snapshot, 100.5, None, 3.0)
