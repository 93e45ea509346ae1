"""Framer: quantisation exactness, per-point delta chains, snapshots, sync loss, replay flag."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgetwin.core.types import TwinBatch
from edgetwin.errors import PayloadError
from edgetwin.uplink.codec import (
    MAX_DELTA,
    MAX_Q,
    PointInfo,
    WireFrame,
    pack_frame,
    unpack_frame,
)
from edgetwin.uplink.framer import FrameDecoder, FrameEncoder, mark_replay

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def points(resolutions: list[float | None]) -> list[PointInfo]:
    return [
        PointInfo(i, "dev", f"p{i}", "", "float32", "level", 10.0, resolution=r)
        for i, r in enumerate(resolutions)
    ]


def make(
    index: list[int] | np.ndarray,
    value: list[float] | np.ndarray,
    *,
    estimate: Any = None,
    ts: float = 1_700_000_000.0,
    alarm: int = 0,
    quality: int = 0,
) -> TwinBatch:
    idx = np.asarray(index, dtype=np.int64)
    v = np.asarray(value, dtype=np.float64)
    n = len(idx)
    return TwinBatch(
        index=idx,
        ts=np.full(n, ts),
        value=v,
        estimate=v.copy() if estimate is None else np.asarray(estimate, dtype=np.float64),
        score=np.full(n, 0.25),
        alarm=np.full(n, alarm, dtype=np.uint8),
        quality=np.full(n, quality, dtype=np.uint16),
    )


def spec(v: float, r: float) -> float:
    """The documented decoding of one value, computed the slow way."""
    if math.isnan(r) or not math.isfinite(v):
        return v
    with np.errstate(all="ignore"):
        x = float(np.rint(np.float64(v) / np.float64(r)))  # round half to even
    s = round(1 / r) if 1 / r < 2**63 else 0
    if s >= 1 and 1.0 / s == r:
        return float(Fraction(int(x), s)) if math.isfinite(x) else x  # correctly rounded q/s
    return x * r


def expected(values: np.ndarray, res: np.ndarray) -> np.ndarray:
    return np.array([spec(v, r) for v, r in zip(values.tolist(), res.tolist(), strict=True)])


def equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal as float64 values (NaN equals NaN, -0 equals +0)."""
    return bool(((a == b) | (np.isnan(a) & np.isnan(b))).all())


def bits(a: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.asarray(a, dtype=np.float64).view(np.uint64)
    return out


def res_of(pts: list[PointInfo], index: np.ndarray) -> np.ndarray:
    table = np.array([np.nan if p.resolution is None else p.resolution for p in pts])
    out: np.ndarray = table[index]
    return out


# ---------------------------------------------------------------- exactness


resolutions_st = st.none() | st.sampled_from([0.1, 0.05, 0.001, 1.0, 2.5, 1e-9, 1e6, 3.7e-3])
resolutions_st |= st.floats(1e-12, 1e12)
values_st = st.floats(allow_nan=True, allow_infinity=True) | st.floats(-1e6, 1e6)


@FUZZ
@given(
    res=st.lists(resolutions_st, min_size=1, max_size=8),
    frames=st.lists(
        st.tuples(
            st.lists(st.tuples(st.integers(0, 7), values_st, values_st), max_size=12),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_lossless_to_the_resolution_across_delta_chains(
    res: list[float | None], frames: list[tuple[list[tuple[int, float, float]], bool]]
) -> None:
    pts = points(res)
    enc = FrameEncoder("gw", "s", pts)
    dec = FrameDecoder(pts)
    for drawn, snapshot in frames:
        rows = [(i % len(res), v, e) for i, v, e in drawn]
        index = np.array([r[0] for r in rows], dtype=np.int64)
        value = np.array([r[1] for r in rows], dtype=np.float64)
        estimate = np.array([r[2] for r in rows], dtype=np.float64)
        seq, payload = enc.encode(make(index, value, estimate=estimate), snapshot=snapshot)
        out = dec.decode(unpack_frame(payload))
        assert out is not None
        assert seq == dec.next_seq - 1
        r = res_of(pts, index)
        assert equal(out.value, expected(value, r))
        assert equal(out.estimate, expected(estimate, r))
        special = np.isnan(r) | ~np.isfinite(value)
        np.testing.assert_array_equal(bits(out.value[special]), bits(value[special]))


@pytest.mark.parametrize(
    ("value", "res"),
    [
        (1.2, 0.1),  # 12 / 10 is 1.2; 12 * 0.1 would be 1.2000000000000002
        (0.30000000000000004, 0.1),
        (0.7, 3.7e-3),  # not an inverse integer: q * r
        (-2.5, 1.0),  # half to even: -2
        (3.5, 1.0),  # half to even: 4
        (2.5, 1.0),  # half to even: 2
        (0.25, 0.5),  # half to even: 0
        (1e300, 0.1),  # quotient beyond 2**53: float64 escape
        (1e308, 1e-10),  # quotient overflows: inf
        (-(2.0**53) * 0.5, 0.5),  # exactly the largest integer: still an integer
        (5e-324, 1.0),
        (-0.04, 0.1),  # rounds to -0.0
    ],
)
def test_edge_values(value: float, res: float) -> None:
    pts = points([res])
    _, payload = FrameEncoder("gw", "s", pts).encode(make([0], [value]))
    out = FrameDecoder(pts).decode(unpack_frame(payload))
    assert out is not None
    assert out.value[0] == spec(value, res)
    if res == 0.1:
        assert out.value[0] == float(Fraction(round(value * 10), 10))


def test_values_become_integers_on_the_wire() -> None:
    pts = points([0.1, None])
    _, payload = FrameEncoder("gw", "s", pts).encode(make([0, 1, 0], [2.34, 2.34, math.nan]))
    w = unpack_frame(payload)
    assert w.value_float.tolist() == [False, True, True]
    assert w.value_q.tolist() == [23]  # absolute: nothing was sent before
    assert w.value_f[0] == 2.34
    assert math.isnan(w.value_f[1])


# ---------------------------------------------------------------- deltas


def test_delta_frames_carry_differences_per_point() -> None:
    pts = points([0.5, 0.01, None])
    enc = FrameEncoder("gw", "s", pts)
    enc.encode(make([0, 1, 2], [10.0, 1.0, 7.0]))
    _, payload = enc.encode(make([1, 0, 2], [1.05, 10.5, 8.0]))
    w = unpack_frame(payload)
    # point 1: 105 - 100; point 0: 21 - 20; point 2 travels as float64
    assert w.value_q.tolist() == [5, 1]
    assert w.value_f.tolist() == [8.0]
    # a point missing from a frame keeps its reference for the next one
    _, payload = enc.encode(make([1], [0.99]))
    assert unpack_frame(payload).value_q.tolist() == [99 - 105]


def test_rows_of_one_point_in_one_frame_chain() -> None:
    pts = points([1.0])
    enc = FrameEncoder("gw", "s", pts)
    dec = FrameDecoder(pts)
    _, payload = enc.encode(make([0, 0, 0], [5.0, 7.0, 4.0]))
    assert unpack_frame(payload).value_q.tolist() == [5, 2, -3]
    _, payload2 = enc.encode(make([0], [4.0]))
    assert unpack_frame(payload2).value_q.tolist() == [0]
    for p, values in ((payload, [5.0, 7.0, 4.0]), (payload2, [4.0])):
        out = dec.decode(unpack_frame(p))
        assert out is not None
        assert out.value.tolist() == values


def test_escaped_values_keep_the_reference() -> None:
    pts = points([1.0])
    enc = FrameEncoder("gw", "s", pts)
    enc.encode(make([0], [40.0]))
    _, payload = enc.encode(make([0, 0], [math.nan, 41.0], quality=1))
    w = unpack_frame(payload)
    assert w.value_float.tolist() == [True, False]
    assert w.value_q.tolist() == [1]  # 41 - 40: the NaN did not move the reference


def test_snapshot_resets_every_reference() -> None:
    pts = points([1.0, 1.0])
    enc = FrameEncoder("gw", "s", pts)
    dec = FrameDecoder(pts)
    payloads = [
        enc.encode(make([0, 1], [100.0, 200.0]))[1],
        enc.snapshot(make([0], [101.0]))[1],
        enc.encode(make([0, 1], [102.0, 203.0]))[1],
    ]
    snap = unpack_frame(payloads[1])
    assert snap.snapshot
    assert snap.value_q.tolist() == [101]
    after = unpack_frame(payloads[2])
    assert after.value_q.tolist() == [1, 203]  # point 1 was not in the snapshot: from 0
    outs = [dec.decode(unpack_frame(p)) for p in payloads]
    assert [o.value.tolist() for o in outs if o is not None] == [
        [100.0, 200.0],
        [101.0],
        [102.0, 203.0],
    ]


def test_long_chain_of_slowly_varying_values() -> None:
    rng = np.random.default_rng(5)
    n = 50
    pts = points([0.01] * n)
    enc = FrameEncoder("gw", "s", pts)
    dec = FrameDecoder(pts)
    level = rng.normal(100, 10, size=n)
    sizes = []
    for k in range(300):
        level += rng.normal(0, 0.01, size=n)
        rows = np.flatnonzero(rng.random(n) < 0.5)
        batch = make(rows, level[rows], ts=1_700_000_000.0 + k / 10)
        _, payload = enc.encode(batch, snapshot=k == 150)
        sizes.append(len(payload))
        out = dec.decode(unpack_frame(payload))
        assert out is not None
        assert equal(out.value, np.rint(level[rows] / 0.01) / 100)
    assert sizes[150] > max(sizes[140:150])  # a snapshot is dearer than the deltas around it


# ---------------------------------------------------------------- sync, gaps, replay


def chain(n: int, *, res: float | None = 0.5) -> tuple[list[PointInfo], list[bytes]]:
    pts = points([res, res])
    enc = FrameEncoder("gw", "s", pts)
    return pts, [enc.encode(make([0, 1], [k * 0.5, -k * 1.0]))[1] for k in range(n)]


def test_a_lost_frame_makes_deltas_undecodable_until_a_snapshot() -> None:
    pts, frames = chain(8)
    enc = FrameEncoder("gw", "s", pts, seq=8)  # the gateway, answering a rebirth after seq 7
    dec = FrameDecoder(pts)
    for p in frames[:3]:
        assert dec.decode(unpack_frame(p)) is not None
    assert dec.synced
    # frame 3 is lost
    assert dec.decode(unpack_frame(frames[4])) is None
    assert not dec.synced
    assert all(dec.decode(unpack_frame(p)) is None for p in frames[5:])
    assert dec.decode(unpack_frame(frames[3])) is None  # too late to help
    _, snap = enc.snapshot(make([0, 1], [10.0, 20.0]))
    out = dec.decode(unpack_frame(snap))
    assert out is not None
    assert out.value.tolist() == [10.0, 20.0]
    assert dec.synced
    _, after = enc.encode(make([0, 1], [10.5, 19.0]))
    out = dec.decode(unpack_frame(after))
    assert out is not None
    assert out.value.tolist() == [10.5, 19.0]


def test_a_decoder_that_starts_late_waits_for_a_snapshot() -> None:
    pts, frames = chain(4)
    dec = FrameDecoder(pts)
    assert dec.decode(unpack_frame(frames[2])) is None
    assert not dec.synced


def test_a_late_snapshot_does_not_roll_the_state_back() -> None:
    pts = points([1.0])
    enc = FrameEncoder("gw", "s", pts)
    payloads = [enc.encode(make([0], [float(v)]), snapshot=v == 1)[1] for v in range(5)]
    dec = FrameDecoder(pts)
    for p in (payloads[0], payloads[2], payloads[4]):  # gaps at 1 and 3: sync lost
        dec.decode(unpack_frame(p))
    assert not dec.synced
    out = dec.decode(unpack_frame(payloads[1]))  # the snapshot, late: decodes on its own
    assert out is not None
    assert out.value.tolist() == [1.0]
    assert not dec.synced  # its state is older than frames 2..4


def test_a_repeated_frame_does_not_disturb_the_state() -> None:
    pts, frames = chain(4)
    dec = FrameDecoder(pts)
    dec.decode(unpack_frame(frames[0]))
    dec.decode(unpack_frame(frames[1]))
    assert dec.decode(unpack_frame(frames[1])) is None
    assert dec.synced
    out = dec.decode(unpack_frame(frames[2]))
    assert out is not None
    assert out.value.tolist() == [1.0, -2.0]


def test_float_only_frames_need_no_state() -> None:
    pts, frames = chain(5, res=None)
    dec = FrameDecoder(pts)
    for k in (4, 1, 3):
        out = dec.decode(unpack_frame(frames[k]))
        assert out is not None
        assert out.value.tolist() == [k * 0.5, -k * 1.0]


def test_mark_replay_sets_the_flag_only() -> None:
    pts, frames = chain(2)
    marked = mark_replay(frames[1])
    assert marked[3] == frames[1][3] | 1
    assert marked[:3] == frames[1][:3]
    assert marked[4:] == frames[1][4:]
    assert mark_replay(marked) == marked
    w = unpack_frame(marked)
    assert w.replay
    assert not w.snapshot
    dec = FrameDecoder(pts)
    dec.decode(unpack_frame(frames[0]))
    out = dec.decode(w)
    assert out is not None
    assert out.value.tolist() == [0.5, -1.0]
    _, snap = FrameEncoder("gw", "s", pts).snapshot(make([0], [1.0]))
    assert unpack_frame(mark_replay(snap)).snapshot


@pytest.mark.parametrize("payload", [b"", b"ET", b"XX\x01\x00\x28\xb5\x2f\xfd", b"ET\x02\x00"])
def test_mark_replay_refuses_what_is_not_a_frame(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        mark_replay(payload)


# ---------------------------------------------------------------- encoder contract


def test_seq_counts_from_the_start_given() -> None:
    pts = points([1.0])
    enc = FrameEncoder("gw", "s", pts, seq=41)
    assert enc.encode(make([0], [1.0]))[0] == 41
    assert enc.snapshot(make([0], [1.0]))[0] == 42
    assert enc.next_seq == 43
    w = unpack_frame(enc.encode(make([0], [1.0]))[1])
    assert (w.gateway, w.session, w.seq) == ("gw", "s", 43)


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        (make([2], [1.0]), "outside 0..1"),
        (make([-1], [1.0]), "outside"),
        (make([0], [1.0], ts=math.nan), "finite"),
        (make([0], [1.0], alarm=3), "alarm"),
        (make([0, 1], [1.0]), "value"),
        (make([0], [1.0], ts=1e12), "epoch"),
    ],
)
def test_a_refused_batch_changes_nothing(batch: TwinBatch, match: str) -> None:
    pts = points([1.0, None])
    enc = FrameEncoder("gw", "s", pts)
    dec = FrameDecoder(pts)
    assert dec.decode(unpack_frame(enc.encode(make([0], [5.0]))[1])) is not None
    with pytest.raises(ValueError, match=match):
        enc.encode(batch)
    seq, payload = enc.encode(make([0], [6.0]))
    assert seq == 1
    out = dec.decode(unpack_frame(payload))
    assert out is not None
    assert out.value.tolist() == [6.0]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("g/w", "s", points([1.0])), "gateway"),
        (("gw", "", points([1.0])), "session"),
        (("gw", "s", [PointInfo(1, "d", "p", "", "t", "m", 1.0)]), "0..n-1"),
        (("gw", "s", points([1.0, 1.0])[:1] * 2), "0..n-1"),
        (("gw", "s", [PointInfo(0, "d", "p", "", "t", "m", 1.0, -1.0)]), "resolution"),
        (("gw", "s", [PointInfo(0, "d", "p", "", "t", "m", 1.0, math.inf)]), "resolution"),
    ],
)
def test_encoder_arguments(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FrameEncoder(*args)


# ---------------------------------------------------------------- hostile frames


def raw(index: list[int], value_q: list[int], *, seq: int = 0, snapshot: bool = True) -> WireFrame:
    n = len(index)
    return WireFrame(
        gateway="gw",
        session="s",
        seq=seq,
        index=np.array(index, dtype=np.int64),
        ts_ms=np.zeros(n, dtype=np.int64),
        alarm=np.zeros(n, dtype=np.uint8),
        quality=np.zeros(n, dtype=np.uint16),
        score_q=np.zeros(n, dtype=np.uint8),
        value_float=np.zeros(n, dtype=bool),
        value_q=np.array(value_q, dtype=np.int64),
        value_f=np.zeros(0),
        estimate_float=np.zeros(n, dtype=bool),
        estimate_q=np.zeros(n, dtype=np.int64),
        estimate_f=np.zeros(0),
        snapshot=snapshot,
    )


@pytest.mark.parametrize(
    "frame",
    [
        raw([0, 0], [MAX_DELTA, MAX_DELTA]),
        raw([0], [MAX_Q + 1]),
        raw([0], [-MAX_Q - 1]),
        raw([0, 1, 0, 1, 0], [MAX_Q, -MAX_Q, 1, 0, 0]),
        raw([0] * 600, [MAX_DELTA, -MAX_DELTA + 1] * 300),  # climbs by one per pair
        raw([1] + [0] * 1000, [0] + [MAX_Q // 500] * 1000),  # a slow climb past the bound
    ],
)
def test_absurd_deltas_are_refused_not_wrapped(frame: WireFrame) -> None:
    pts = points([1.0, 1.0])
    dec = FrameDecoder(pts)
    with pytest.raises(PayloadError, match="beyond"):
        dec.decode(unpack_frame(pack_frame(frame)))
    assert not dec.synced


def test_delta_beyond_the_bound_from_a_reference() -> None:
    pts = points([1.0])
    dec = FrameDecoder(pts)
    assert dec.decode(raw([0], [MAX_Q])) is not None
    with pytest.raises(PayloadError, match="beyond"):
        dec.decode(raw([0], [1], seq=1, snapshot=False))
    assert not dec.synced


def test_integer_rows_for_an_exact_point_are_refused() -> None:
    dec = FrameDecoder(points([None]))
    with pytest.raises(PayloadError, match="resolution"):
        dec.decode(raw([0], [5]))


def test_index_beyond_the_point_table_is_refused() -> None:
    dec = FrameDecoder(points([1.0]))
    with pytest.raises(PayloadError, match="beyond"):
        dec.decode(raw([1], [5]))


@settings(FUZZ, max_examples=100)
@given(
    res=st.lists(st.none() | st.floats(1e-6, 1e6), min_size=1, max_size=4),
    frames=st.lists(
        st.tuples(
            hnp.arrays(np.int64, st.integers(0, 10), elements=st.integers(0, 4)),
            st.integers(0, 6),
            st.booleans(),
            st.integers(0, 2**32),
        ),
        max_size=6,
    ),
)
def test_random_frames_decode_or_raise_payload_error(
    res: list[float | None], frames: list[tuple[np.ndarray, int, bool, int]]
) -> None:
    dec = FrameDecoder(points(res))
    for index, seq, snapshot, seed in frames:
        rng = np.random.default_rng(seed)
        n = len(index)
        vf = rng.random(n) < 0.3
        w = raw(index.tolist(), [], seq=seq, snapshot=snapshot)
        w = WireFrame(
            **{
                **{k: getattr(w, k) for k in w.__dataclass_fields__},
                "value_float": vf,
                "value_q": rng.integers(-MAX_DELTA, MAX_DELTA, size=int((~vf).sum())),
                "value_f": rng.normal(size=int(vf.sum())),
            }
        )
        try:
            out = dec.decode(unpack_frame(pack_frame(w)))
        except PayloadError:
            continue
        if out is not None:
            assert len(out.value) == n
