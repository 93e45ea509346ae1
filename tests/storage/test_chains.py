"""Overflow by bytes and age drops whole delta chains and never keeps an undecodable delta."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetwin.storage import DropRecord, Outbox, OutboxRow
from tests.storage.model import Model, Put

SESSIONS = ("a", "b", "c")


class Clock:
    """A settable unix clock, so age bounds are tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def size_of(row: OutboxRow) -> int:
    return len(row.topic.encode()) + len(row.payload)


def key(row: OutboxRow) -> tuple[str, str | None, int | None]:
    return row.kind, row.session, row.seq


class Producer:
    """Puts rows the way the gateway does: per session, seq from 0, each put remembered."""

    def __init__(self, ob: Outbox) -> None:
        self.ob = ob
        self.history: dict[str, list[tuple[int, str]]] = {s: [] for s in SESSIONS}

    def put(self, kind: str, session: str | None = None, size: int = 10) -> Put:
        payload = b"x" * (size - 1)  # topic "t": one byte
        if session is None or kind not in ("snapshot", "frame"):
            self.ob.put("t", payload, kind=kind, retain=kind == "birth")
            return Put(kind, None, None, size)
        seq = len(self.history[session])
        self.history[session].append((seq, kind))
        self.ob.put("t", payload, kind=kind, session=session, seq=seq)
        return Put(kind, session, seq, size)


def assert_decodable(
    rows: list[OutboxRow], history: dict[str, list[tuple[int, str]]], acked: set[tuple[str, int]]
) -> None:
    """Every stored delta's frames back to its snapshot are stored or were delivered."""
    stored = {(r.session, r.seq) for r in rows if r.session is not None and r.seq is not None}
    for r in rows:
        if r.kind != "frame" or r.session is None or r.seq is None:
            continue
        earlier = history[r.session][: r.seq]
        for seq, kind in reversed(earlier):
            assert (r.session, seq) in stored | acked, (
                f"delta {r.session}/{r.seq} kept, but {kind} {r.session}/{seq} was dropped"
            )
            if kind == "snapshot":
                break


# --- the policy, by example -------------------------------------------------------------------


async def test_orphans_go_first_then_the_oldest_chain_and_its_session_resumes_at_a_snapshot(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ob.db"
    async with Outbox(path) as ob:
        p = Producer(ob)
        p.put("birth")
        p.put("snapshot", "a")  # a/0
        p.put("snapshot", "b")  # b/0, the oldest stored snapshot once a/0 is delivered
        p.put("frame", "b")  # b/1
        p.put("frame", "a")  # a/1
        p.put("frame", "a")  # a/2
        p.put("snapshot", "a")  # a/3
        p.put("frame", "a")  # a/4
        await ob.flush()
        rows = await ob.pending(100)
        await ob.ack([rows[1].id])  # a/0 delivered: a/1 and a/2 are now orphans
    # 70 bytes stored, reopened with a 55-byte budget: the orphans go, not b's older chain.
    async with Outbox(path, max_bytes=55) as ob:
        p.ob = ob
        assert [key(r) for r in await ob.pending(100)] == [
            ("birth", None, None),
            ("snapshot", "b", 0),
            ("frame", "b", 1),
            ("snapshot", "a", 3),
            ("frame", "a", 4),
        ]
        assert not ob.needs_snapshot("a")  # a/3 heads a chain that is still whole
        p.put("frame", "a")  # a/5: 60 bytes, so the oldest chain goes: b's
        await ob.flush()
        rows = await ob.pending(100)
        assert [key(r) for r in rows] == [
            ("birth", None, None),
            ("snapshot", "a", 3),
            ("frame", "a", 4),
            ("frame", "a", 5),
        ]
        assert ob.needs_snapshot("b")  # b's newest chain lost its head
        await ob.ack([r.id for r in rows[1:]])
        p.put("frame", "b")  # b/2 could never be decoded: dropped on arrival
        p.put("snapshot", "b")  # b/3 starts a new chain
        p.put("frame", "b")  # b/4
        await ob.flush()
        assert not ob.needs_snapshot("b")
        assert [key(r) for r in await ob.pending(100)] == [
            ("birth", None, None),
            ("snapshot", "b", 3),
            ("frame", "b", 4),
        ]
        drops = await ob.take_drops()
        assert [(d.session, d.reason, d.frames, d.first_seq, d.last_seq) for d in drops] == [
            ("a", "bytes", 2, 1, 2),
            ("b", "bytes", 2, 0, 1),
            ("b", "chain", 1, 2, 2),
        ]
        stats = ob.stats()
        assert (stats.dropped_frames, stats.dropped_events) == (5, 0)
        assert stats.dropped_bytes == sum(d.bytes for d in drops) == 50


async def test_events_go_only_when_no_frame_is_left_and_births_never(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "ob.db", max_bytes=25) as ob:
        p = Producer(ob)
        p.put("birth")
        p.put("event")
        p.put("snapshot", "a")
        p.put("frame", "a")
        p.put("event")
        await ob.flush()
        # 50 bytes over a 25-byte budget: the chain (20) goes, then the older event (10).
        assert [key(r) for r in await ob.pending(100)] == [
            ("birth", None, None),
            ("event", None, None),
        ]
        stats = ob.stats()
        assert (stats.dropped_frames, stats.dropped_events, stats.dropped_bytes) == (2, 1, 30)
        for _ in range(4):
            p.put("birth")
        await ob.flush()
        rows = await ob.pending(100)
        assert [r.kind for r in rows] == ["birth"] * 5  # over budget, yet every birth stays
        assert ob.stats().dropped_events == 2
        drops = await ob.take_drops()
        assert sum(d.events for d in drops) == 2
        assert sum(d.frames for d in drops) == 2


async def test_age_bound_drops_whole_chains_whose_head_is_too_old(
    tmp_path: Path, clock: Clock
) -> None:
    async with Outbox(tmp_path / "ob.db", max_age=10, clock=clock) as ob:
        p = Producer(ob)
        p.put("birth")
        p.put("snapshot", "a")  # t=0
        p.put("event")
        await ob.flush()
        clock.now += 8
        p.put("frame", "a")  # t=8, young, but its chain's head is not
        p.put("snapshot", "b")
        await ob.flush()
        assert len(await ob.pending(100)) == 5
        clock.now += 3  # t=11: the first chain and the event are over age
        p.put("frame", "b")
        await ob.flush()
        assert [key(r) for r in await ob.pending(100)] == [
            ("birth", None, None),
            ("snapshot", "b", 0),
            ("frame", "b", 1),
        ]
        assert ob.needs_snapshot("a")
        assert not ob.needs_snapshot("b")
        stats = ob.stats()
        assert (stats.dropped_frames, stats.dropped_events) == (2, 1)
        drops = await ob.take_drops()
        assert {(d.session, d.reason, d.frames, d.events) for d in drops} == {
            ("a", "age", 2, 0),
            (None, "age", 0, 1),
        }
    # Time also passes while the gateway is down: the bound applies at open.
    clock.now += 20
    async with Outbox(tmp_path / "ob.db", max_age=10, clock=clock) as ob:
        assert [r.kind for r in await ob.pending(100)] == ["birth"]


def test_put_checks_chain_fields(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Outbox(tmp_path / "ob.db") as ob:
            with pytest.raises(ValueError, match="snapshot"):
                ob.put("t", b"x", kind="snapshot", session="a")
            with pytest.raises(ValueError, match="seq"):
                ob.put("t", b"x", kind="frame", seq=3)
            with pytest.raises(ValueError, match="seq"):
                ob.put("t", b"x", kind="frame", session="a", seq=-1)
            with pytest.raises(ValueError, match="session"):
                ob.put("t", b"x", kind="frame", session="", seq=1)
            assert ob.stats().buffered == 0

    asyncio.run(scenario())


# --- the policy against the model ---------------------------------------------------------------

put_items = st.lists(
    st.tuples(
        st.sampled_from(["frame", "frame", "frame", "snapshot", "birth", "event", "legacy"]),
        st.sampled_from(SESSIONS),
        st.integers(1, 120),
    ),
    max_size=10,
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), put_items),
        st.tuples(st.just("ack"), st.lists(st.integers(0, 1000), max_size=6)),
        st.tuples(st.just("tick"), st.integers(0, 4)),
        st.tuples(st.just("take"), st.none()),
        st.tuples(st.just("reopen"), st.none()),
    ),
    max_size=20,
)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ops=operations,
    max_bytes=st.integers(1, 1500),
    max_age=st.none() | st.integers(1, 8),
)
def test_overflow_matches_model_and_keeps_every_delta_decodable(
    tmp_path: Path,
    ops: list[tuple[str, Any]],
    max_bytes: int,
    max_age: int | None,
) -> None:
    clock = Clock()
    model = Model(max_bytes, max_age)
    acked: set[tuple[str, int]] = set()
    taken: list[DropRecord] = []

    async def scenario(path: Path) -> None:
        def outbox() -> Outbox:
            return Outbox(path, max_bytes=max_bytes, max_age=max_age, clock=clock)

        ob = outbox()
        await ob.open()
        p = Producer(ob)
        try:
            for op, arg in ops:
                if op == "put":
                    batch = []
                    for kind, session, size in arg:
                        if kind == "legacy":
                            batch.append(p.put("frame", None, size))
                        elif kind in ("frame", "snapshot") and not p.history[session]:
                            batch.append(p.put("snapshot", session, size))  # chains start whole
                        else:
                            batch.append(p.put(kind, session, size))
                    await ob.flush()
                    model.commit(batch, clock.now)
                elif op == "ack":
                    rows = await ob.pending(10_000)
                    picked = [rows[i % len(rows)] for i in arg] if rows else []
                    await ob.ack([r.id for r in picked])
                    model.ack({r.id for r in picked})
                    acked.update(
                        (r.session, r.seq) for r in picked if r.session and r.seq is not None
                    )
                elif op == "tick":
                    clock.now += arg
                elif op == "take":
                    taken.extend(await ob.take_drops())
                else:
                    await ob.close()
                    ob = p.ob = outbox()
                    await ob.open()
                    model.enforce(clock.now)

                rows = await ob.pending(10_000)
                assert [(r.id, *key(r), size_of(r)) for r in rows] == [
                    (m.id, m.kind, m.session, m.seq, m.size) for m in model.rows
                ]
                assert_decodable(rows, p.history, acked)
                stats = ob.stats()
                assert (stats.dropped_frames, stats.dropped_events, stats.dropped_bytes) == (
                    model.frames,
                    model.events,
                    model.bytes,
                )
                assert (stats.depth, stats.bytes) == (len(rows), sum(m.size for m in model.rows))
                assert {s for s in SESSIONS if ob.needs_snapshot(s)} == model.broken
            taken.extend(await ob.take_drops())
        finally:
            await ob.close()

        # Every drop was recorded, merged per session and reason.
        summary: dict[tuple[str | None, str], list[int | None]] = {}
        for d in taken:
            s = summary.setdefault((d.session, d.reason), [0, 0, 0, None, None])
            s[0] = (s[0] or 0) + d.frames
            s[1] = (s[1] or 0) + d.events
            s[2] = (s[2] or 0) + d.bytes
            if d.first_seq is not None:
                s[3] = d.first_seq if s[3] is None else min(s[3], d.first_seq)
            if d.last_seq is not None:
                s[4] = d.last_seq if s[4] is None else max(s[4], d.last_seq)
        assert summary == {
            k: [r.frames, r.events, r.bytes, min(r.seqs, default=None), max(r.seqs, default=None)]
            for k, r in model.records.items()
        }
        assert len({d.id for d in taken}) == len(taken)  # each record handed out once

    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        asyncio.run(scenario(Path(d) / "ob.db"))
