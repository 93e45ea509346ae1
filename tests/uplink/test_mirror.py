"""Mirror: rebuilding gateway twins from (topic, payload) messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.cloud import Mirror, PointUpdate, Seen, SeqWindow
from edgetwin.core.types import Alarm, Quality, TwinBatch
from edgetwin.uplink.codec import (
    Birth,
    Frame,
    PointInfo,
    Status,
    encode_birth,
    encode_event,
    encode_frame,
    encode_status,
)
from edgetwin.uplink.framer import FrameEncoder, mark_replay
from edgetwin.uplink.topics import Topics

GW = "gw-1"
T = Topics("edgetwin/v1", GW)


def table(names: list[str], resolution: float | None = None) -> tuple[PointInfo, ...]:
    return tuple(
        PointInfo(i, "pump", name, f"u{i}", "float32", "level", 10.0, resolution=resolution)
        for i, name in enumerate(names)
    )


def birth(
    session: str,
    names: list[str],
    ts: float = 1000.0,
    gateway: str = GW,
    resolution: float | None = None,
) -> bytes:
    return encode_birth(Birth(gateway, session, "0.1.0", ts, table(names, resolution)))


def frame(
    session: str,
    seq: int,
    values: list[float],
    ts: float | None = None,
    *,
    index: list[int] | None = None,
    replay: bool = False,
    gateway: str = GW,
) -> bytes:
    n = len(values)
    when = 2000.0 + seq if ts is None else ts
    b = TwinBatch(
        index=np.array(index if index is not None else range(n), dtype=np.int64),
        ts=np.full(n, when),
        value=np.array(values, dtype=np.float64),
        estimate=np.array(values, dtype=np.float64) + 0.5,
        score=np.full(n, 0.25),
        alarm=np.full(n, Alarm.WARNING, dtype=np.uint8),
        quality=np.full(n, Quality.GOOD, dtype=np.uint16),
    )
    return encode_frame(Frame(gateway, session, seq, b, replay=replay))


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, gateway: str) -> None:
        self.calls.append(gateway)


@pytest.fixture
def asked() -> Recorder:
    return Recorder()


@pytest.fixture
def mirror(asked: Recorder) -> Mirror:
    m = Mirror(on_rebirth_needed=asked)
    assert m.feed(T.birth, birth("s1", ["flow", "speed", "power"])) == []
    return m


def test_in_order_stream_gives_every_update_once(mirror: Mirror, asked: Recorder) -> None:
    seen: list[tuple[int, int]] = []
    for seq in range(10):
        updates = mirror.feed(T.frames, frame("s1", seq, [seq, seq * 10.0, -seq]))
        seen += [(u.seq, u.index) for u in updates]
    assert sorted(seen) == [(s, i) for s in range(10) for i in range(3)]
    stats = mirror.stats()
    assert (stats.frames, stats.duplicates, stats.gaps, stats.unknown_session) == (10, 0, 0, 0)
    assert stats.undecodable == 0
    assert stats.errors == {}
    assert asked.calls == []


def test_update_fields_come_from_frame_and_birth(mirror: Mirror) -> None:
    (u,) = mirror.feed(T.frames, frame("s1", 0, [42.0], ts=1234.5678, index=[2], replay=True))
    assert u == PointUpdate(
        gateway=GW,
        session="s1",
        seq=0,
        device="pump",
        point="power",
        index=2,
        ts=1234.568,
        value=42.0,
        estimate=42.5,
        score=0.25,
        alarm=Alarm.WARNING,
        quality=Quality.GOOD,
        unit="u2",
        replay=True,
    )
    assert u.id == "pump/power"


def test_duplicates_are_dropped_and_counted(mirror: Mirror) -> None:
    first = frame("s1", 0, [1.0, 2.0, 3.0])
    assert len(mirror.feed(T.frames, first)) == 3
    assert mirror.feed(T.frames, first) == []
    assert mirror.feed(T.frames, frame("s1", 0, [9.0, 9.0, 9.0], replay=True)) == []
    assert mirror.stats().duplicates == 2
    assert mirror.state(GW)["pump/flow"].value == 1.0


def test_gap_is_counted_and_rebirth_requested_once(mirror: Mirror, asked: Recorder) -> None:
    for seq in (0, 1, 4, 5, 6):
        assert mirror.feed(T.frames, frame("s1", seq, [seq]))  # exact floats need no state
    assert mirror.stats().gaps == 1
    assert asked.calls == [GW]
    for seq in (2, 3):  # the outbox replays the hole: accepted, no new gap
        assert mirror.feed(T.frames, frame("s1", seq, [seq], replay=True))
    assert mirror.stats().gaps == 1
    assert mirror.feed(T.frames, frame("s1", 10, [10.0]))
    assert mirror.stats().gaps == 2
    assert asked.calls == [GW]  # still waiting for the snapshot asked for
    snapshot = encode_frame(Frame(GW, "s1", 11, one_row(11.0), snapshot=True))
    assert mirror.feed(T.frames, snapshot)
    assert mirror.feed(T.frames, frame("s1", 14, [14.0]))
    assert asked.calls == [GW, GW]  # in sync again, so a new gap asks again
    assert mirror.stats().frames == 10
    assert mirror.stats().undecodable == 0


def one_row(value: float) -> TwinBatch:
    return TwinBatch(
        index=np.array([0]),
        ts=np.array([3000.0]),
        value=np.array([value]),
        estimate=np.array([value]),
        score=np.zeros(1),
        alarm=np.zeros(1, dtype=np.uint8),
        quality=np.zeros(1, dtype=np.uint16),
    )


def test_older_session_decodes_with_its_kept_birth(mirror: Mirror) -> None:
    assert mirror.feed(T.frames, frame("s1", 0, [1.0, 2.0, 3.0], ts=100.0))
    # the gateway restarts with a different point table
    mirror.feed(T.birth, birth("s2", ["speed", "flow"], ts=2000.0))
    mirror.feed(T.frames, frame("s2", 0, [50.0, 60.0], ts=300.0))
    # a frame of s1, kept in the outbox across the restart, arrives late
    late = mirror.feed(T.frames, frame("s1", 1, [7.0, 8.0, 9.0], ts=200.0, replay=True))
    assert [(u.point, u.value, u.session) for u in late] == [
        ("flow", 7.0, "s1"),
        ("speed", 8.0, "s1"),
        ("power", 9.0, "s1"),
    ]
    assert all(u.replay for u in late)
    state = mirror.state(GW)
    assert sorted(state) == ["pump/flow", "pump/speed"]  # power left with s1's table
    assert state["pump/speed"].value == 50.0  # the newer s2 values are kept
    assert state["pump/flow"].value == 60.0
    assert mirror.birth(GW).session == "s2"  # type: ignore[union-attr]
    assert mirror.birth(GW, "s1").points[2].point == "power"  # type: ignore[union-attr]


def test_state_reflects_the_latest_values(mirror: Mirror) -> None:
    mirror.feed(T.frames, frame("s1", 0, [1.0, 2.0, 3.0], ts=10.0))
    mirror.feed(T.frames, frame("s1", 1, [4.0], ts=11.0))
    mirror.feed(T.frames, frame("s1", 2, [np.nan, 6.0], ts=12.0, index=[1, 2]))
    state = mirror.state(GW)
    assert {k: (u.value, u.ts) for k, u in state.items() if k != "pump/speed"} == {
        "pump/flow": (4.0, 11.0),
        "pump/power": (6.0, 12.0),
    }
    assert np.isnan(state["pump/speed"].value)
    assert state["pump/speed"].seq == 2
    # an older sample arriving later does not roll the state back
    mirror.feed(T.frames, frame("s1", 3, [99.0], ts=5.0, replay=True))
    assert mirror.state(GW)["pump/flow"].value == 4.0
    assert mirror.state("unknown-gw") == {}


def test_unknown_session_is_dropped_and_rebirth_asked_once(asked: Recorder) -> None:
    m = Mirror(on_rebirth_needed=asked)
    for seq in range(3):
        assert m.feed(T.frames, frame("s7", seq, [1.0])) == []
    assert m.stats().unknown_session == 3
    assert asked.calls == [GW]
    m.feed(T.birth, birth("s7", ["flow"]))
    assert m.feed(T.frames, frame("s7", 3, [5.0]))
    assert m.state(GW)["pump/flow"].value == 5.0


def test_junk_is_counted_and_the_mirror_keeps_going(mirror: Mirror) -> None:
    junk = [
        (T.frames, b"\x00garbage"),
        (T.frames, b"ET\x09\x00"),
        (T.birth, b"{not json"),
        (T.status, b'{"state":"sleepy","session":"s","ts":1}'),
        (T.events, b"[]"),
        ("edgetwin/v1/gw-1/metrics", b"{}"),
        ("elsewhere/gw-1/frames", frame("s1", 0, [1.0])),
        ("edgetwin/v1/other/frames", frame("s1", 0, [1.0])),  # body names gw-1
        (T.frames, frame("s1", 0, [1.0], index=[9])),  # no point 9 in s1
    ]
    for topic, payload in junk:
        assert mirror.feed(topic, payload) == []
    assert mirror.stats().errors == {
        "frame": 2,
        "birth": 1,
        "status": 1,
        "event": 1,
        "topic": 2,
        "mismatch": 1,
        "index": 1,
    }
    assert len(mirror.feed(T.frames, frame("s1", 0, [1.0, 2.0, 3.0]))) == 3
    assert mirror.stats().frames == 1


@settings(max_examples=100, deadline=None)
@given(
    kind=st.sampled_from(["birth", "status", "frames", "events", "rebirth"]),
    payload=st.binary(max_size=200),
)
def test_random_payloads_never_raise(kind: str, payload: bytes) -> None:
    m = Mirror()
    m.feed(T.birth, birth("s1", ["flow"]))
    assert m.feed(T.topic(kind), payload) == []  # type: ignore[arg-type]
    assert len(m.feed(T.frames, frame("s1", 0, [1.0]))) == 1


def test_status_follows_sessions(mirror: Mirror) -> None:
    assert mirror.status(GW) is None
    mirror.feed(T.status, encode_status(Status("online", "s2", 200.0)))
    # the will of the previous session, composed when it connected, arrives late
    mirror.feed(T.status, encode_status(Status("offline", "s1", 100.0)))
    assert mirror.status(GW) == Status("online", "s2", 200.0)
    # the will of the current session was composed before its "online"
    mirror.feed(T.status, encode_status(Status("offline", "s2", 199.0)))
    assert mirror.status(GW) == Status("offline", "s2", 199.0)
    mirror.feed(T.status, b"")  # clearing the retained topic is not an error
    assert mirror.stats().statuses == 3
    assert mirror.stats().errors == {}


def test_events_are_validated_and_counted(mirror: Mirror) -> None:
    event = {"gateway": GW, "session": "s1", "ts": 1.0, "type": "device", "device": "pump"}
    mirror.feed(T.events, encode_event({**event, "state": "offline"}))
    mirror.feed(T.events, json.dumps({**event, "v": 1}).encode())  # no state
    mirror.feed(T.events, encode_event({**event, "gateway": "gw-2", "state": "online"}))
    assert mirror.stats().events == 1
    assert mirror.stats().errors == {"event": 1, "mismatch": 1}


def test_births_per_gateway_are_bounded(asked: Recorder) -> None:
    m = Mirror(on_rebirth_needed=asked, sessions_per_gateway=2)
    for i, session in enumerate(["a", "b", "c"]):
        m.feed(T.birth, birth(session, ["flow"], ts=float(i)))
    assert m.birth(GW, "a") is None
    assert m.birth(GW, "b") is not None
    assert m.feed(T.frames, frame("a", 0, [1.0])) == []
    assert m.stats().unknown_session == 1
    assert len(m.feed(T.frames, frame("b", 0, [1.0]))) == 1
    assert m.gateways() == [GW]


def test_current_birth_is_the_newest_not_the_last_received(mirror: Mirror) -> None:
    mirror.feed(T.birth, birth("s2", ["flow"], ts=5000.0))
    mirror.feed(T.birth, birth("s0", ["flow", "speed"], ts=10.0))  # a stale retained birth
    assert mirror.birth(GW).session == "s2"  # type: ignore[union-attr]


# ---------------------------------------------------------------- SeqWindow


def test_seq_window_basics() -> None:
    w = SeqWindow(window=4)
    assert [w.add(s) for s in (0, 1, 1, 3, 2, 3)] == [
        Seen.NEW,
        Seen.NEW,
        Seen.DUPLICATE,
        Seen.GAP,
        Seen.NEW,
        Seen.DUPLICATE,
    ]
    assert (w.floor, len(w)) == (3, 0)
    assert w.add(100) is Seen.GAP
    assert len(w) <= 4
    assert w.add(50) is Seen.STALE  # a hole given up on
    assert w.add(2) is Seen.DUPLICATE
    assert w.add(97) is Seen.NEW
    assert w.add(2**64 - 1) is Seen.GAP
    assert len(w) <= 4


@settings(max_examples=200, deadline=None)
@given(
    window=st.integers(1, 16),
    seqs=st.lists(st.integers(0, 60), max_size=120),
)
def test_seq_window_matches_a_full_memory_model(window: int, seqs: list[int]) -> None:
    w = SeqWindow(window)
    seen: set[int] = set()
    highest = -1
    for seq in seqs:
        result = w.add(seq)
        if seq in seen:
            assert result in (Seen.DUPLICATE, Seen.STALE)
        elif seq > highest - window:
            assert result is (Seen.GAP if seq > highest + 1 else Seen.NEW)
        else:
            assert result in (Seen.NEW, Seen.STALE)
        if result in (Seen.NEW, Seen.GAP):
            seen.add(seq)
            highest = max(highest, seq)
        assert len(w) <= window


# ---------------------------------------------------------------- quantised delta frames


def quantised(
    values: list[float], *, ts: float = 2000.0, index: list[int] | None = None
) -> TwinBatch:
    n = len(values)
    v = np.array(values, dtype=np.float64)
    return TwinBatch(
        index=np.array(index if index is not None else range(n), dtype=np.int64),
        ts=np.full(n, ts),
        value=v,
        estimate=v + 0.04,
        score=np.full(n, 1.5),
        alarm=np.zeros(n, dtype=np.uint8),
        quality=np.zeros(n, dtype=np.uint16),
    )


@pytest.fixture
def qmirror(asked: Recorder) -> tuple[Mirror, FrameEncoder]:
    m = Mirror(on_rebirth_needed=asked)
    m.feed(T.birth, birth("q1", ["flow", "speed"], resolution=0.1))
    return m, FrameEncoder(GW, "q1", table(["flow", "speed"], 0.1))


def test_quantised_frames_arrive_at_their_resolution(
    qmirror: tuple[Mirror, FrameEncoder],
) -> None:
    m, enc = qmirror
    for k in range(20):
        _, payload = enc.encode(quantised([10.0 + 0.123 * k, -3.0 - 0.051 * k], ts=2000.0 + k))
        updates = m.feed(T.frames, payload)
        assert [u.value for u in updates] == [
            round(10.0 + 0.123 * k, 1),
            round(-3.0 - 0.051 * k, 1),
        ]
        assert [u.estimate for u in updates] == [
            round(10.04 + 0.123 * k, 1),
            round(-2.96 - 0.051 * k, 1),
        ]
        assert all(u.score == 1.5 for u in updates)
    assert m.state(GW)["pump/flow"].value == 12.3
    assert m.stats().frames == 20


def test_a_lost_delta_frame_waits_for_the_snapshot(
    qmirror: tuple[Mirror, FrameEncoder], asked: Recorder
) -> None:
    m, enc = qmirror
    payloads = [enc.encode(quantised([float(k), float(-k)], ts=2000.0 + k))[1] for k in range(6)]
    assert m.feed(T.frames, payloads[0])
    assert m.feed(T.frames, payloads[1])
    for p in payloads[3:]:  # frame 2 is lost
        assert m.feed(T.frames, p) == []
    stats = m.stats()
    assert (stats.gaps, stats.undecodable, stats.frames) == (1, 3, 2)
    assert asked.calls == [GW]  # once, not once per undecodable frame
    assert m.state(GW)["pump/flow"].value == 1.0  # nothing wrong was applied
    m.feed(T.birth, birth("q1", ["flow", "speed"], resolution=0.1))  # the rebirth's birth
    _, snap = enc.snapshot(quantised([7.0, -7.0], ts=2010.0))
    assert [u.value for u in m.feed(T.frames, snap)] == [7.0, -7.0]
    _, after = enc.encode(quantised([7.5, -6.5], ts=2011.0))
    assert [u.value for u in m.feed(T.frames, after)] == [7.5, -6.5]
    assert m.stats().undecodable == 3
    assert asked.calls == [GW]


def test_late_subscriber_asks_once_and_syncs_on_the_snapshot(asked: Recorder) -> None:
    enc = FrameEncoder(GW, "q1", table(["flow", "speed"], 0.1))
    early = [enc.encode(quantised([float(k), 0.0]))[1] for k in range(5)]
    m = Mirror(on_rebirth_needed=asked)
    m.feed(T.birth, birth("q1", ["flow", "speed"], resolution=0.1))  # retained
    for p in early[3:]:
        assert m.feed(T.frames, p) == []
    assert asked.calls == [GW]
    assert m.stats().undecodable == 2
    _, snap = enc.snapshot(quantised([9.0, 1.0]))
    assert len(m.feed(T.frames, snap)) == 2


def test_duplicate_delta_frames_are_dropped(qmirror: tuple[Mirror, FrameEncoder]) -> None:
    m, enc = qmirror
    payloads = [enc.encode(quantised([float(k), 0.0], ts=2000.0 + k))[1] for k in range(4)]
    for p in (payloads[0], payloads[1], payloads[1], payloads[0], payloads[2], payloads[3]):
        m.feed(T.frames, p)
    assert m.stats().duplicates == 2
    assert m.stats().undecodable == 0
    assert m.state(GW)["pump/flow"].value == 3.0


def test_replayed_frames_are_marked(qmirror: tuple[Mirror, FrameEncoder]) -> None:
    m, enc = qmirror
    _, first = enc.encode(quantised([1.0, 2.0]))
    _, second = enc.encode(quantised([1.5, 2.5], ts=2001.0))
    assert not any(u.replay for u in m.feed(T.frames, first))
    updates = m.feed(T.frames, mark_replay(second))
    assert [(u.value, u.replay) for u in updates] == [(1.5, True), (2.5, True)]


def test_each_session_keeps_its_own_references(asked: Recorder) -> None:
    m = Mirror(on_rebirth_needed=asked)
    names = ["flow", "speed"]
    old = FrameEncoder(GW, "q1", table(names, 0.1))
    new = FrameEncoder(GW, "q2", table(names, 0.1))
    m.feed(T.birth, birth("q1", names, ts=1000.0, resolution=0.1))
    assert m.feed(T.frames, old.encode(quantised([1.0, 1.0], ts=100.0))[1])
    m.feed(T.birth, birth("q2", names, ts=2000.0, resolution=0.1))
    assert m.feed(T.frames, new.encode(quantised([50.0, 50.0], ts=300.0))[1])
    # the old session's backlog, replayed after the restart, still decodes against q1
    late = m.feed(T.frames, mark_replay(old.encode(quantised([1.2, 0.8], ts=200.0))[1]))
    assert [u.value for u in late] == [1.2, 0.8]
    assert m.feed(T.frames, new.encode(quantised([50.3, 49.7], ts=301.0))[1])
    assert m.state(GW)["pump/flow"].value == 50.3
    assert asked.calls == []


def test_a_frame_with_integers_for_an_exact_point_is_an_error(asked: Recorder) -> None:
    m = Mirror(on_rebirth_needed=asked)
    m.feed(T.birth, birth("q1", ["flow"]))  # no resolution announced
    _, payload = FrameEncoder(GW, "q1", table(["flow"], 0.1)).encode(quantised([1.0]))
    assert m.feed(T.frames, payload) == []
    assert m.stats().errors == {"frame": 1}
