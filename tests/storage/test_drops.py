"""Drop records: kept on disk until announced, handed out once, marked with the next commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edgetwin.storage import DropRecord, Outbox
from tests.storage.crash import kill_when_ready

ROW = 10  # bytes per row below: topic "t" + 9 payload bytes


def put_chain(ob: Outbox, session: str, first_seq: int, deltas: int) -> None:
    ob.put("t", b"s" * (ROW - 1), kind="snapshot", session=session, seq=first_seq)
    for seq in range(first_seq + 1, first_seq + 1 + deltas):
        ob.put("t", b"d" * (ROW - 1), kind="frame", session=session, seq=seq)


def summary(records: list[DropRecord]) -> list[tuple[str | None, int | None, int | None, int, int]]:
    return [(d.session, d.first_seq, d.last_seq, d.frames, d.bytes) for d in records]


async def test_records_survive_restarts_until_taken_and_are_taken_once(tmp_path: Path) -> None:
    path = tmp_path / "ob.db"
    async with Outbox(path, max_bytes=5 * ROW) as ob:
        put_chain(ob, "a", 0, 2)  # a/0..2
        put_chain(ob, "b", 0, 1)  # b/0..1
        put_chain(ob, "a", 3, 1)  # a/3..4: 7 rows, 70 bytes; a's first chain must go
        await ob.flush()
        assert ob.stats().dropped_frames == 3
    for _ in range(2):  # not taken: still there after every restart
        async with Outbox(path, max_bytes=5 * ROW) as ob:
            pass
    async with Outbox(path) as ob:
        records = await ob.take_drops()
        assert summary(records) == [("a", 0, 2, 3, 3 * ROW)]
        assert records[0].reason == "bytes"
        assert records[0].events == 0
        assert records[0].first_at <= records[0].last_at
        assert await ob.take_drops() == []  # handed out once
        ob.put("t", b"announcement", kind="event")
        await ob.flush()  # marks the record announced, together with the announcement
    async with Outbox(path) as ob:
        assert await ob.take_drops() == []
        assert [r.kind for r in await ob.pending(100)][-1] == "event"


async def test_drops_after_a_take_start_a_new_record(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "ob.db", max_bytes=4 * ROW) as ob:
        put_chain(ob, "a", 0, 1)
        put_chain(ob, "a", 2, 2)  # 50 bytes: a/0..1 go
        await ob.flush()
        first = await ob.take_drops()
        assert summary(first) == [("a", 0, 1, 2, 2 * ROW)]
        # Same session, same reason, but the first record was handed out: a new one.
        put_chain(ob, "a", 5, 1)  # 50 bytes: a/2..4 go, in the commit that marks the first
        await ob.flush()
        second = await ob.take_drops()
        assert summary(second) == [("a", 2, 4, 3, 3 * ROW)]
        assert second[0].id > first[0].id
        put_chain(ob, "a", 7, 2)  # 50 bytes: a/5..6 go
        await ob.flush()
        assert summary(await ob.take_drops()) == [("a", 5, 6, 2, 2 * ROW)]
        # Not taken in between: drops of the same session and reason merge into one record.
        put_chain(ob, "a", 10, 1)  # a/7..9 go
        await ob.flush()
        put_chain(ob, "a", 12, 2)  # a/10..11 go
        await ob.flush()
        assert summary(await ob.take_drops()) == [("a", 7, 11, 5, 5 * ROW)]
        stats = ob.stats()
        assert (stats.dropped_frames, stats.dropped_bytes) == (12, 12 * ROW)


async def test_take_drops_asks_the_database_only_after_a_drop(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "ob.db", max_bytes=4 * ROW) as ob:
        assert await ob.take_drops() == []  # at open, records of a past run may wait
        asked: list[int] = []
        real = ob._db.take_drops
        ob._db.take_drops = lambda: asked.append(1) or real()  # type: ignore[method-assign]
        put_chain(ob, "a", 0, 1)  # 20 bytes: within the budget
        await ob.flush()
        assert await ob.take_drops() == []
        assert asked == []  # nothing dropped since the last take: no trip to the database
        put_chain(ob, "a", 2, 2)  # 50 bytes: a/0..1 go
        await ob.flush()
        assert summary(await ob.take_drops()) == [("a", 0, 1, 2, 2 * ROW)]
        assert asked == [1]
        assert await ob.take_drops() == []
        assert asked == [1]


CHILD = r"""
import asyncio
import sys
from pathlib import Path

from edgetwin.storage import Outbox


async def main() -> None:
    ob = Outbox(Path(sys.argv[1]), commit_interval=3600, max_bytes=30)
    await ob.open()
    ob.put("t", b"s" * 9, kind="snapshot", session="a", seq=0)
    ob.put("t", b"d" * 9, kind="frame", session="a", seq=1)
    ob.put("t", b"s" * 9, kind="snapshot", session="a", seq=2)
    ob.put("t", b"d" * 9, kind="frame", session="a", seq=3)
    await ob.flush()
    taken = await ob.take_drops()
    assert len(taken) == 1, taken
    ob.put("t", b"announcement", kind="event")  # buffered: the kill comes before its commit
    print("ready", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
"""


def test_records_taken_but_not_committed_as_announced_come_back_after_sigkill(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ob.db"
    kill_when_ready(CHILD, path)

    async def reopen() -> None:
        async with Outbox(path, max_bytes=30) as ob:
            assert [r.kind for r in await ob.pending(100)] == ["snapshot", "frame"]
            assert summary(await ob.take_drops()) == [("a", 0, 1, 2, 2 * ROW)]

    asyncio.run(reopen())
