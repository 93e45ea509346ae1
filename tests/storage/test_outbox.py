"""The SQLite outbox: order, batching, durability across SIGKILL, overflow, refusal of bad files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edgetwin.errors import StorageError
from edgetwin.storage import Outbox, OutboxRow
from tests.storage.crash import kill_when_ready

THREAD_PREFIX = "edgetwin-outbox"
SQLITE_MAGIC = b"SQLite format 3\x00"


def outbox_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


@pytest.fixture(autouse=True)
def _no_threads_left() -> Iterator[None]:
    assert outbox_threads() == []
    yield
    assert outbox_threads() == []


def size_of(topic: str, payload: bytes) -> int:
    """The documented row size: topic bytes plus payload bytes."""
    return len(topic.encode()) + len(payload)


def raw_rows(path: Path) -> list[tuple[int, str, bytes]]:
    """Read the table through an independent connection: what is really committed."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, topic, payload FROM outbox ORDER BY id").fetchall()
    finally:
        conn.close()


def dir_state(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# --- order, content, batching -------------------------------------------------------------------


async def test_put_flush_pending_ack_keeps_order_and_content(tmp_path: Path) -> None:
    sent = [
        ("gw/birth", b"\x00birth", True, "birth"),
        ("gw/frame", b"", False, "frame"),
        ("gw/frame", bytes(range(256)), False, "frame"),
        ("gw/event/\u00e9", b"\xff" * 3, True, "event"),
        ("gw/frame", b"last", False, "frame"),
    ]
    async with Outbox(tmp_path / "ob.db") as ob:
        for topic, payload, retain, kind in sent:
            ob.put(topic, payload, retain=retain, kind=kind)
        assert await ob.pending(100) == []
        assert ob.stats().buffered == len(sent)
        assert ob.stats().depth == 0

        await ob.flush()
        rows = await ob.pending(100)
        assert [(r.topic, r.payload, r.retain, r.kind) for r in rows] == sent
        ids = [r.id for r in rows]
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)
        stats = ob.stats()
        assert (stats.depth, stats.buffered) == (len(sent), 0)
        assert stats.bytes == sum(size_of(t, p) for t, p, _, _ in sent)
        assert stats.oldest_age is not None
        assert stats.oldest_age >= 0

        assert [r.id for r in await ob.pending(2)] == ids[:2]
        assert [r.id for r in await ob.pending(2, after_id=ids[1])] == ids[2:4]

        await ob.ack([ids[0], ids[2], ids[2], 10_000])  # a repeat and an unknown id are ignored
        left = await ob.pending(100)
        assert [r.id for r in left] == [ids[1], ids[3], ids[4]]
        stats = ob.stats()
        assert stats.depth == 3
        assert stats.bytes == sum(size_of(r.topic, r.payload) for r in left)
        assert [r[0] for r in raw_rows(ob.path)] == [ids[1], ids[3], ids[4]]

        await ob.ack([r.id for r in left])
        assert await ob.pending(100) == []
        assert ob.stats().depth == 0
        assert ob.stats().bytes == 0
        assert ob.stats().oldest_age is None


async def test_many_puts_between_commits_make_one_transaction(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "ob.db") as ob:
        before = ob.stats().commits
        for i in range(500):
            ob.put("gw/frame", i.to_bytes(4, "big"))
        # Nothing reaches the file before the commit.
        assert raw_rows(ob.path) == []
        await ob.flush()
        assert ob.stats().commits == before + 1
        assert [int.from_bytes(r[2], "big") for r in raw_rows(ob.path)] == list(range(500))

        await ob.flush()  # nothing buffered: no empty transaction
        assert ob.stats().commits == before + 1


async def test_pending_after_a_commit_comes_from_the_commit(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "ob.db") as ob:
        assert await ob.pending(3) == []  # asks the database, and sets how many to read back
        asked: list[tuple[int, int]] = []
        real = ob._db.pending

        def pending(limit: int, after: int) -> list[OutboxRow]:
            asked.append((limit, after))
            return real(limit, after)

        ob._db.pending = pending  # type: ignore[method-assign]
        for i in range(5):
            ob.put("gw/frame", bytes([i]))
        await ob.flush()
        first = await ob.pending(3)
        assert [r.payload for r in first] == [b"\0", b"\1", b"\2"]
        assert await ob.pending(2) == first[:2]
        assert asked == []  # read back by the commit itself
        assert [r.payload for r in await ob.pending(5)] == [bytes([i]) for i in range(5)]
        assert asked == [(5, 0)]  # more than the commit read back
        await ob.ack([r.id for r in first])
        assert [r.payload for r in await ob.pending(3)] == [b"\3", b"\4"]
        assert asked == [(5, 0), (3, 0)]  # an ack changed the table: ask again
        assert [r.payload for r in await ob.pending(3, after_id=first[-1].id + 1)] == [b"\4"]


async def test_writer_commits_periodically_and_wait_pending_wakes(tmp_path: Path) -> None:
    async with (
        Outbox(tmp_path / "ob.db", commit_interval=0.01) as ob,
        asyncio.TaskGroup() as tg,
    ):
        tg.create_task(ob.run_writer(), name="outbox-writer")
        waiter = tg.create_task(ob.wait_pending(), name="waiter")
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiter.done()  # nothing was put, so nothing can be committed

        ob.put("gw/frame", b"one")
        await asyncio.wait_for(waiter, timeout=10)
        first = await ob.pending(10)
        assert [r.payload for r in first] == [b"one"]

        # Waiting for rows beyond the ones in flight.
        later = tg.create_task(ob.wait_pending(after_id=first[0].id), name="later")
        for _ in range(20):
            await asyncio.sleep(0)
        assert not later.done()
        ob.put("gw/frame", b"two")
        await asyncio.wait_for(later, timeout=10)
        assert [r.payload for r in await ob.pending(10, after_id=first[0].id)] == [b"two"]
        ob.stop()


async def test_writer_flushes_on_close(tmp_path: Path) -> None:
    path = tmp_path / "ob.db"
    ob = Outbox(path, commit_interval=3600)  # the timer never fires in this test
    await ob.open()
    async with asyncio.TaskGroup() as tg:
        writer = tg.create_task(ob.run_writer(), name="outbox-writer")
        for i in range(50):
            ob.put("gw/frame", bytes([i]))
        await asyncio.sleep(0)
        assert raw_rows(path) == []
        await ob.close()
        assert writer.done()
    assert [r[2] for r in raw_rows(path)] == [bytes([i]) for i in range(50)]


async def test_writer_stopped_before_it_runs_still_flushes(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "ob.db") as ob:
        ob.put("gw/frame", b"early")
        ob.stop()
        await asyncio.wait_for(ob.run_writer(), timeout=10)
        assert [r[2] for r in raw_rows(ob.path)] == [b"early"]


async def test_cancelled_flush_loses_nothing(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "ob.db") as ob:
        for i in range(2000):
            ob.put("gw/frame", i.to_bytes(2, "big"))
        task = asyncio.create_task(ob.flush(), name="flush")
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ob.flush()
        rows = await ob.pending(5000)
        assert [int.from_bytes(r.payload, "big") for r in rows] == list(range(2000))
        assert ob.stats().depth == 2000


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    messages=st.lists(
        st.tuples(st.text(min_size=1, max_size=20), st.binary(max_size=300), st.booleans()),
        max_size=30,
    )
)
def test_any_topic_and_payload_round_trip(
    tmp_path: Path, messages: list[tuple[str, bytes, bool]]
) -> None:
    async def scenario(path: Path) -> None:
        async with Outbox(path) as ob:
            for topic, payload, retain in messages:
                ob.put(topic, payload, retain=retain)
        async with Outbox(path) as ob:
            rows = await ob.pending(100)
        assert [(r.topic, r.payload, r.retain) for r in rows] == messages

    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        asyncio.run(scenario(Path(d) / "ob.db"))


# --- durability -----------------------------------------------------------------------------------

CHILD = r"""
import asyncio
import sys
from pathlib import Path

from edgetwin.storage import Outbox


async def main() -> None:
    ob = Outbox(Path(sys.argv[1]), commit_interval=3600)
    await ob.open()
    n = 0
    for _ in range(5):
        for _ in range(40):
            ob.put(f"gw/{n}", n.to_bytes(4, "big") * 8)
            n += 1
        await ob.flush()
    delivered = await ob.pending(10)
    await ob.ack([r.id for r in delivered])
    ob.put("gw/lost", b"put but never committed")
    print("ready", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
"""


def test_committed_rows_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ob.db"
    kill_when_ready(CHILD, path)
    # The kill came before any checkpoint: the commits live only in the WAL.
    assert path.with_name("ob.db-wal").stat().st_size > 0

    async def reopen() -> None:
        async with Outbox(path) as ob:
            rows = await ob.pending(1000)
            assert [r.topic for r in rows] == [f"gw/{n}" for n in range(10, 200)]
            assert [r.payload for r in rows] == [n.to_bytes(4, "big") * 8 for n in range(10, 200)]
            ids = [r.id for r in rows]
            assert ids == sorted(set(ids))
            assert ob.stats().depth == 190
            ob.put("gw/after", b"restart")
            await ob.flush()
            newest = (await ob.pending(1, after_id=ids[-1]))[0]
            assert newest.topic == "gw/after"
            assert newest.id > ids[-1]

    asyncio.run(reopen())


async def test_clean_close_and_reopen_keeps_rows_and_ids_grow(tmp_path: Path) -> None:
    path = tmp_path / "ob.db"
    async with Outbox(path) as ob:
        for i in range(10):
            ob.put("gw/frame", bytes([i]), kind="frame" if i else "birth", retain=not i)
        await ob.flush()
        before = await ob.pending(100)
        await ob.ack([before[-1].id])  # the newest id leaves, but is never reused
        stats_before = ob.stats()
    # close() checkpointed and truncated the WAL.
    wal = path.with_name("ob.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0

    async with Outbox(path) as ob:
        after = await ob.pending(100)
        assert after == before[:-1]
        stats = ob.stats()
        assert (stats.depth, stats.bytes) == (stats_before.depth, stats_before.bytes)
        assert stats.oldest_age is not None
        ob.put("gw/frame", b"new")
        await ob.flush()
        newest = (await ob.pending(100))[-1]
        assert newest.payload == b"new"
        assert newest.id > before[-1].id


# --- overflow -------------------------------------------------------------------------------------


def reference_overflow(
    batches: list[list[tuple[str, int]]], max_bytes: int
) -> tuple[list[tuple[int, str, int]], int, int, int]:
    """Obviously-correct model for frames without a session (each decodes alone): after each
    commit, drop the oldest frame while over budget, then the oldest event; never a birth."""
    rows: list[tuple[int, str, int]] = []
    dropped = {"frame": 0, "event": 0}
    dropped_b = 0
    next_id = 1
    for batch in batches:
        for kind, size in batch:
            rows.append((next_id, kind, size))
            next_id += 1
        while sum(r[2] for r in rows) > max_bytes:
            victims = [r for r in rows if r[1] == "frame"] or [r for r in rows if r[1] == "event"]
            if not victims:
                break
            rows.remove(victims[0])
            dropped[victims[0][1]] += 1
            dropped_b += victims[0][2]
    return rows, dropped["frame"], dropped["event"], dropped_b


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(st.sampled_from(["frame", "frame", "birth", "event"]), st.integers(1, 120)),
            max_size=8,
        ),
        max_size=8,
    ),
    max_bytes=st.integers(1, 600),
)
def test_overflow_matches_reference(
    tmp_path: Path, batches: list[list[tuple[str, int]]], max_bytes: int
) -> None:
    expected, dropped_n, dropped_e, dropped_b = reference_overflow(batches, max_bytes)

    async def scenario(path: Path) -> None:
        async with Outbox(path, max_bytes=max_bytes) as ob:
            for batch in batches:
                for kind, size in batch:
                    ob.put("t", b"x" * (size - 1), kind=kind)
                await ob.flush()
            rows = await ob.pending(1000)
            assert [(r.id, r.kind, size_of(r.topic, r.payload)) for r in rows] == expected
            stats = ob.stats()
            assert (stats.dropped_frames, stats.dropped_events, stats.dropped_bytes) == (
                dropped_n,
                dropped_e,
                dropped_b,
            )
            assert stats.bytes == sum(r[2] for r in expected)
        async with Outbox(path, max_bytes=max_bytes) as ob:
            stats = ob.stats()
            assert (stats.dropped_frames, stats.dropped_events, stats.dropped_bytes) == (
                dropped_n,
                dropped_e,
                dropped_b,
            )
            assert (stats.depth, stats.bytes) == (len(expected), sum(r[2] for r in expected))

    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        asyncio.run(scenario(Path(d) / "ob.db"))


async def test_overflow_drops_oldest_frames_keeps_births_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ob.db"
    caplog.set_level(logging.INFO, logger="edgetwin.storage")
    payload = b"p" * 99  # 100 bytes a row with topic "t"
    async with Outbox(path, max_bytes=1000) as ob:
        ob.put("t", payload, kind="birth", retain=True)
        for i in range(15):
            ob.put("t", payload)
            if i % 5 == 4:
                await ob.flush()  # three commits, the last two over budget
        rows = await ob.pending(100)
        assert rows[0].kind == "birth"
        assert len(rows) == 10  # 1000 bytes: the birth and the 9 newest frames
        assert [r.created for r in rows[1:]] == sorted(r.created for r in rows[1:])
        stats = ob.stats()
        assert (stats.dropped_frames, stats.dropped_bytes, stats.bytes) == (6, 600, 1000)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1

        # Births alone may exceed the budget: they are kept.
        for _ in range(12):
            ob.put("t", payload, kind="birth")
        await ob.flush()
        births = [r for r in await ob.pending(100) if r.kind == "birth"]
        assert len(births) == 13
        assert ob.stats().dropped_frames == 15
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1

        # Delivery catches up: the episode ends; the next overflow warns again.
        await ob.ack([r.id for r in await ob.pending(100)])
        for _ in range(11):
            ob.put("t", payload)
        await ob.flush()
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
        assert ob.stats().dropped_frames == 16

    async with Outbox(path, max_bytes=1000) as ob:
        stats = ob.stats()
        assert (stats.dropped_frames, stats.dropped_bytes) == (16, 1600)
        assert stats.depth == 10


async def test_shrunk_budget_is_enforced_at_open(tmp_path: Path) -> None:
    path = tmp_path / "ob.db"
    async with Outbox(path) as ob:
        for i in range(10):
            ob.put("t", bytes([i]) * 9)  # 10 bytes each
        await ob.flush()
    async with Outbox(path, max_bytes=45) as ob:
        rows = await ob.pending(100)
        assert [r.payload[0] for r in rows] == [6, 7, 8, 9]
        assert (ob.stats().dropped_frames, ob.stats().bytes) == (6, 40)


# --- files that must be refused ----------------------------------------------------------------


async def refuse(path: Path) -> StorageError:
    state = dir_state(path.parent)
    ob = Outbox(path)
    with pytest.raises(StorageError) as info:
        await ob.open()
    assert outbox_threads() == []
    assert dir_state(path.parent) == state  # nothing written, nothing created
    await ob.close()  # harmless after a failed open
    assert str(path) in str(info.value)
    return info.value


@settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.binary(min_size=1, max_size=8192))
def test_non_sqlite_file_is_refused_and_left_alone(tmp_path: Path, data: bytes) -> None:
    assume(not data.startswith(SQLITE_MAGIC))
    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        path = Path(d) / "ob.db"
        path.write_bytes(data)
        error = asyncio.run(refuse(path))
        assert "not an edgetwin outbox" in str(error) or "not an SQLite database" in str(error)


def make_sqlite(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


async def test_newer_schema_version_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "ob.db"
    make_sqlite(path, "CREATE TABLE outbox (id INTEGER PRIMARY KEY)", "PRAGMA user_version = 99")
    error = await refuse(path)
    assert "schema version 99 is newer" in str(error)


async def test_newer_version_of_our_own_outbox_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ob.db"
    async with Outbox(path) as ob:
        ob.put("t", b"x")
    make_sqlite(path, "PRAGMA user_version = 3")
    error = await refuse(path)
    assert "newer" in str(error)


async def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    make_sqlite(path, "CREATE TABLE users (name TEXT)", "INSERT INTO users VALUES ('ada')")
    error = await refuse(path)
    assert "not an edgetwin outbox" in str(error)
    other = tmp_path / "other.db"
    make_sqlite(other, "PRAGMA application_id = 1234")
    assert "not an edgetwin outbox" in str(await refuse(other))


async def test_corrupt_outbox_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ob.db"
    async with Outbox(path) as ob:
        for i in range(3000):
            ob.put(f"gw/{i}", bytes(100))
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    for start in range(2 * page, len(data) - page, 3 * page):
        data[start : start + page] = bytes([0xA5]) * page  # garbage b-tree pages
    path.write_bytes(bytes(data))
    error = await refuse(path)
    assert "corrupt" in str(error)


# --- lifecycle ------------------------------------------------------------------------------------


async def test_close_leaves_no_thread_or_task_and_is_idempotent(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "sub" / "dir" / "ob.db", commit_interval=0.01)
    await ob.open()
    assert len(outbox_threads()) <= 1

    async def consume() -> StorageError | None:
        try:
            await ob.wait_pending(after_id=10**9)
        except StorageError as exc:
            return exc
        return None

    async with asyncio.TaskGroup() as tg:
        tg.create_task(ob.run_writer(), name="outbox-writer")
        consumer = tg.create_task(consume(), name="consumer")
        ob.put("gw/frame", b"x")
        await ob.flush()
        assert outbox_threads() != []
        await ob.close()
    # A waiting consumer learns of the close instead of hanging.
    assert "closed" in str(consumer.result())
    await ob.close()
    assert outbox_threads() == []
    assert asyncio.all_tasks() == {asyncio.current_task()}
    with pytest.raises(StorageError, match="closed"):
        ob.put("gw/frame", b"late")
    with pytest.raises(StorageError, match="closed"):
        await ob.pending(1)


async def test_kind_is_checked_at_put(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "ob.db") as ob:
        with pytest.raises(ValueError, match="kind"):
            ob.put("t", b"x", kind="frames")
        assert ob.stats().buffered == 0


def test_sqlite_work_never_runs_on_the_event_loop_thread(tmp_path: Path) -> None:
    seen: set[str] = set()

    def trace(_statement: str) -> None:
        seen.add(threading.current_thread().name)

    original = sqlite3.connect

    def traced_connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = original(*args, **kwargs)  # type: ignore[call-overload]
        conn.set_trace_callback(trace)
        return conn  # type: ignore[no-any-return]

    async def scenario() -> None:
        async with Outbox(tmp_path / "ob.db") as ob:
            ob.put("t", b"x")
            await ob.flush()
            await ob.ack([r.id for r in await ob.pending(10)])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sqlite3, "connect", traced_connect)
        asyncio.run(scenario())
    assert seen
    assert all(name.startswith(THREAD_PREFIX) for name in seen), seen


def test_row_is_frozen() -> None:
    row = OutboxRow(id=1, topic="t", payload=b"", retain=False, kind="frame", created=0.0)
    with pytest.raises(AttributeError):
        row.id = 2  # type: ignore[misc]


def test_commits_fsync_and_acks_do_not(tmp_path: Path) -> None:
    """A power cut loses at most the buffer: every commit of rows runs with synchronous=FULL."""
    statements: list[str] = []
    original = sqlite3.connect

    def traced_connect(*args: object, **kwargs: object) -> sqlite3.Connection:
        conn = original(*args, **kwargs)  # type: ignore[call-overload]
        conn.set_trace_callback(statements.append)
        return conn  # type: ignore[no-any-return]

    async def scenario() -> None:
        async with Outbox(tmp_path / "ob.db") as ob:
            for round_ in range(3):
                ob.put("t", bytes([round_]))
                await ob.flush()
                await ob.ack([r.id for r in await ob.pending(10)])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sqlite3, "connect", traced_connect)
        asyncio.run(scenario())
    mode = None
    seen = {"insert": 0, "ack": 0}
    for statement in statements:
        text = " ".join(statement.split()).upper()
        if text.startswith("PRAGMA SYNCHRONOUS="):
            mode = text.split("=")[1]
        elif text.startswith("INSERT INTO OUTBOX"):
            assert mode == "FULL", statement
            seen["insert"] += 1
        elif text.startswith("DELETE FROM OUTBOX WHERE ID IN"):
            assert mode == "NORMAL", statement
            seen["ack"] += 1
    assert seen == {"insert": 3, "ack": 3}
