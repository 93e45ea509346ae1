"""A schema v1 outbox (before delta chains) is migrated to v2 with every row and counter kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edgetwin.errors import StorageError
from edgetwin.storage import Outbox

# The schema edgetwin 0.1 wrote, verbatim: a test fixture, deliberately not imported from the code.
V1_SCHEMA = (
    """CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        retain INTEGER NOT NULL,
        kind TEXT NOT NULL,
        created REAL NOT NULL,
        size INTEGER NOT NULL
    )""",
    "CREATE INDEX outbox_kind ON outbox (kind)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO meta (key, value) VALUES ('dropped_frames', 7), ('dropped_bytes', 700)",
    "PRAGMA application_id = 1163153218",  # 0x45544F42, "ETOB"
    "PRAGMA user_version = 1",
)
V1_ROWS = [
    ("gw/birth", b"birth-1", 1, "birth", 100.0),
    ("gw/frames", b"frame-1", 0, "frame", 101.0),
    ("gw/events", b"event-1", 0, "event", 102.0),
    ("gw/frames", b"frame-2", 0, "frame", 103.0),
    ("gw/frames", b"frame-3", 0, "frame", 104.0),
]


def make_v1(path: Path, *extra: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        for statement in (*V1_SCHEMA, *extra):
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO outbox (topic, payload, retain, kind, created, size) VALUES (?,?,?,?,?,?)",
            [(t, p, r, k, c, len(t) + len(p)) for t, p, r, k, c in V1_ROWS],
        )
        conn.execute("DELETE FROM outbox WHERE id = 5")  # acked: its id must not come back
        conn.commit()
    finally:
        conn.close()


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


async def test_v1_rows_and_counters_survive_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "ob.db"
    make_v1(path)
    async with Outbox(path) as ob:
        rows = await ob.pending(100)
        assert [(r.id, r.topic, r.payload, int(r.retain), r.kind, r.created) for r in rows] == [
            (i, *row) for i, row in enumerate(V1_ROWS[:4], start=1)
        ]
        assert all(r.session is None and r.seq is None for r in rows)
        stats = ob.stats()
        assert (stats.dropped_frames, stats.dropped_bytes, stats.dropped_events) == (7, 700, 0)
        assert stats.depth == 4
        assert stats.bytes == sum(len(t) + len(p) for t, p, *_ in V1_ROWS[:4])
        assert await ob.take_drops() == []  # v1 kept no records; nothing to announce

        ob.put("gw/frames", b"snap", kind="snapshot", session="s2", seq=0)
        await ob.flush()
        newest = (await ob.pending(100))[-1]
        assert (newest.id, newest.kind, newest.session, newest.seq) == (6, "snapshot", "s2", 0)
    assert user_version(path) == 2

    # v1 frames decode on their own: over budget they go first, one by one, oldest first.
    budget = ob.stats().bytes - 1
    async with Outbox(path, max_bytes=budget) as ob:
        assert [r.payload for r in await ob.pending(100)] == [
            b"birth-1",
            b"event-1",
            b"frame-2",
            b"snap",
        ]
        drops = await ob.take_drops()
        assert [(d.session, d.frames, d.first_seq, d.reason) for d in drops] == [
            (None, 1, None, "bytes")
        ]
        assert ob.stats().dropped_frames == 8


async def test_a_failed_migration_leaves_the_v1_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "ob.db"
    make_v1(path, "CREATE TABLE drops (x INTEGER)")  # makes step 2 fail half way
    with pytest.raises(StorageError, match="cannot open"):
        async with Outbox(path):
            pass
    assert user_version(path) == 1
    conn = sqlite3.connect(path)
    try:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(outbox)")]
        assert "session" not in columns
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 4
    finally:
        conn.close()
