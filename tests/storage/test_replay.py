"""Replay lanes: live rows and the backlog, each in put order, births always live."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetwin.storage import Outbox, OutboxRow


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def expected_lanes(
    rows: list[OutboxRow], live_since: float, limit: int
) -> tuple[list[int], list[int]]:
    live = [r.id for r in rows if r.created >= live_since or r.kind == "birth"]
    backlog = [r.id for r in rows if r.created < live_since and r.kind != "birth"]
    return live[:limit], backlog[:limit]


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    before=st.lists(st.tuples(st.sampled_from(["birth", "frame", "event"]), st.integers(0, 3))),
    after=st.lists(st.tuples(st.sampled_from(["birth", "frame", "event"]), st.integers(0, 3))),
    acks=st.lists(st.integers(0, 100), max_size=5),
    limit=st.integers(1, 12),
)
def test_lanes_split_by_put_time_and_keep_put_order(
    tmp_path: Path,
    before: list[tuple[str, int]],
    after: list[tuple[str, int]],
    acks: list[int],
    limit: int,
) -> None:
    clock = Clock(1000.0)

    async def scenario(path: Path) -> None:
        async with Outbox(path, clock=clock) as ob:
            for kind, step in before:  # the outage: put while the broker was away
                clock.now += step
                ob.put("t", kind.encode(), kind=kind)
            await ob.flush()
            clock.now += 1
            live_since = clock.now  # the broker session starts
            for kind, step in after[: len(after) // 2]:
                ob.put("t", kind.encode(), kind=kind)
                clock.now += step
            await ob.flush()
            for round_ in range(2):
                rows = await ob.pending(1000)
                live, backlog = await ob.pending_split(limit, live_since)
                assert ([r.id for r in live], [r.id for r in backlog]) == expected_lanes(
                    rows, live_since, limit
                )
                assert live == sorted(live, key=lambda r: r.id)
                if rows:
                    await ob.ack([rows[i % len(rows)].id for i in acks])
                if round_ == 0:  # more rows come, then the link breaks and comes back
                    for kind, step in after[len(after) // 2 :]:
                        ob.put("t", kind.encode(), kind=kind)
                        clock.now += step
                    clock.now += 1
                    live_since = clock.now
                    ob.put("t", b"first after reconnect")
                    await ob.flush()

    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        asyncio.run(scenario(Path(d) / "ob.db"))


async def test_round_robin_delivers_live_rows_while_the_backlog_drains(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    async with Outbox(tmp_path / "ob.db", clock=clock) as ob:
        ob.put("gw/birth", b"old session", kind="birth", retain=True)
        for seq in range(10):
            ob.put("gw/frames", b"old", kind="frame", session="s1", seq=seq)
        await ob.flush()
        clock.now += 60
        live_since = clock.now
        ob.put("gw/birth", b"new session", kind="birth", retain=True)
        delivered: list[tuple[str, OutboxRow]] = []
        seq = 0
        while True:  # the uplink's loop: one live batch, then one backlog batch, per round
            ob.put("gw/frames", b"new", kind="frame", session="s2", seq=seq)
            seq += 1
            await ob.flush()
            live, backlog = await ob.pending_split(3, live_since)
            delivered += [("live", r) for r in live] + [("replay", r) for r in backlog]
            await ob.ack([r.id for r in live + backlog])
            if not backlog:
                break
        lanes = [(lane, r.payload) for lane, r in delivered]
        # Both births first (old, then new: the new one is the last retained), while 10 old
        # frames still wait; the new frames go out every round as the backlog drains.
        assert lanes[:3] == [("live", b"old session"), ("live", b"new session"), ("live", b"new")]
        assert [r.seq for lane, r in delivered if lane == "replay"] == list(range(10))
        assert [r.seq for lane, r in delivered if r.session == "s2"] == list(range(seq))
        assert seq == 5  # 10 backlog rows at 3 a round, then a round that finds none left
        assert await ob.pending(100) == []
