"""The outbox database itself: synchronous, and used only on the outbox's one worker thread."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from edgetwin.errors import StorageError

SCHEMA_VERSION = 1
APPLICATION_ID = 0x45544F42  # "ETOB" in the file header: this file is an edgetwin outbox
DROPPABLE_KIND = "frame"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_LOW_WATER = 0.9  # an overflow episode ends once the backlog falls below this share of the budget

# Each entry brings an older schema up to its key's version, in one transaction.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
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
        "INSERT INTO meta (key, value) VALUES ('dropped_frames', 0), ('dropped_bytes', 0)",
    ),
}

_log = logging.getLogger("edgetwin.storage.outbox")


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One committed outbox row, as handed to the uplink."""

    id: int
    topic: str
    payload: bytes
    retain: bool
    kind: str
    created: float


@dataclass(frozen=True, slots=True)
class NewRow:
    """A row put by a producer and not committed yet."""

    topic: str
    payload: bytes
    retain: bool
    kind: str
    created: float
    size: int


@dataclass(frozen=True, slots=True)
class Counts:
    """The database's counters after one operation; ``seq`` orders snapshots."""

    seq: int = 0
    depth: int = 0
    bytes: int = 0
    oldest_created: float | None = None
    newest_id: int | None = None
    dropped_frames: int = 0
    dropped_bytes: int = 0
    commits: int = 0


class OutboxDb:
    """Schema, checks and batched writes; every method must run on the same single thread."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self._path = path
        self._max_bytes = max_bytes
        self._db: sqlite_utils.Database | None = None
        self._seq = 0
        self._depth = 0
        self._bytes = 0
        self._oldest_created: float | None = None
        self._newest_id: int | None = None
        self._dropped_frames = 0
        self._dropped_bytes = 0
        self._commits = 0
        self._overflowing = False
        self._episode_frames = 0
        self._episode_bytes = 0

    def open(self) -> Counts:
        """Check, migrate and configure the file, then count what it holds."""
        self._check_header()
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread (the default) enforces that the connection never leaves this thread.
            conn = sqlite3.connect(self._path)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"{self._path}: cannot open the outbox: {exc}") from exc
        try:
            db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
            version = self._check_contents(db)
            # Only after the checks: switching to WAL rewrites the header of a file we may refuse.
            self._use_wal(db)
            self._migrate(db, version)
            self._db = db
            self._recount()
            self._enforce_budget_now()
        except sqlite3.Error as exc:
            self._db = None
            conn.close()
            raise StorageError(f"{self._path}: cannot open the outbox: {exc}") from exc
        except BaseException:
            self._db = None
            conn.close()
            raise
        _log.info(
            "outbox %s open: %d rows, %d bytes; %d frames (%d bytes) dropped so far",
            self._path,
            self._depth,
            self._bytes,
            self._dropped_frames,
            self._dropped_bytes,
        )
        return self.snapshot()

    def _check_header(self) -> None:
        # SQLite happily treats a short non-database file as empty and would overwrite it.
        try:
            with self._path.open("rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"{self._path}: cannot read the outbox file: {exc}") from exc
        if head and head != _SQLITE_MAGIC:
            raise StorageError(
                f"{self._path}: not an edgetwin outbox (not an SQLite database); "
                "move the file aside or point the outbox elsewhere"
            )

    def _check_contents(self, db: sqlite_utils.Database) -> int:
        try:
            problems = [str(r[0]) for r in db.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.DatabaseError as exc:
            raise StorageError(
                f"{self._path}: the outbox database is corrupt or not an SQLite database ({exc}); "
                "move it aside to start an empty outbox"
            ) from exc
        if problems != ["ok"]:
            raise StorageError(
                f"{self._path}: the outbox database is corrupt (PRAGMA quick_check: "
                f"{'; '.join(problems[:5])}); move it aside to start an empty outbox"
            )
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        app_id = int(db.execute("PRAGMA application_id").fetchone()[0])
        if app_id not in (0, APPLICATION_ID):
            raise StorageError(
                f"{self._path}: not an edgetwin outbox (application_id is {app_id:#x}, "
                f"expected {APPLICATION_ID:#x})"
            )
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self._path}: outbox schema version {version} is newer than the version this "
                f"edgetwin supports ({SCHEMA_VERSION}); upgrade edgetwin or move the file aside"
            )
        if (version > 0 and app_id != APPLICATION_ID) or (version == 0 and db.table_names()):
            raise StorageError(
                f"{self._path}: not an edgetwin outbox (an SQLite database with "
                f"user_version {version} and tables {db.table_names()})"
            )
        return version

    def _use_wal(self, db: sqlite_utils.Database) -> None:
        db.enable_wal()
        if db.journal_mode != "wal":
            raise StorageError(
                f"{self._path}: cannot switch the outbox to WAL (journal_mode is "
                f"{db.journal_mode!r}); is the file system read-only or a network share?"
            )
        # WAL + NORMAL: a commit is durable against a process crash (it is in the WAL file),
        # but the WAL is fsynced only at checkpoints, so a power cut can lose the last commits.
        db.execute("PRAGMA synchronous=NORMAL")

    def _migrate(self, db: sqlite_utils.Database, version: int) -> None:
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with db.atomic():
                for statement in _MIGRATIONS[target]:
                    db.execute(statement)
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {target}")
            _log.info("outbox %s: schema now at version %d", self._path, target)

    def _recount(self) -> None:
        db = self._require()
        depth, total = db.execute("SELECT count(*), total(size) FROM outbox").fetchone()
        self._depth = int(depth)
        self._bytes = int(total)
        self._oldest_created, self._newest_id = self._ends(db)
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        self._dropped_frames = int(meta["dropped_frames"])
        self._dropped_bytes = int(meta["dropped_bytes"])

    def snapshot(self) -> Counts:
        """Return the current counters under a new sequence number."""
        self._seq += 1
        return Counts(
            seq=self._seq,
            depth=self._depth,
            bytes=self._bytes,
            oldest_created=self._oldest_created,
            newest_id=self._newest_id,
            dropped_frames=self._dropped_frames,
            dropped_bytes=self._dropped_bytes,
            commits=self._commits,
        )

    def insert(self, rows: Sequence[NewRow]) -> Counts:
        """Commit ``rows`` in one transaction, dropping the oldest frames if over budget."""
        db = self._require()
        added = sum(r.size for r in rows)
        try:
            with db.atomic():
                db.table("outbox").insert_all(
                    {
                        "topic": r.topic,
                        "payload": r.payload,
                        "retain": int(r.retain),
                        "kind": r.kind,
                        "created": r.created,
                        "size": r.size,
                    }
                    for r in rows
                )
                n_dropped, b_dropped = self._drop_oldest_frames(db, self._bytes + added)
                ends = self._ends(db)
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: cannot commit to the outbox: {exc}") from exc
        self._commits += 1
        self._depth += len(rows) - n_dropped
        self._bytes += added - b_dropped
        self._oldest_created, self._newest_id = ends
        self._count_drops(n_dropped, b_dropped)
        return self.snapshot()

    def _enforce_budget_now(self) -> None:
        # The budget may have shrunk since the last run.
        db = self._require()
        with db.atomic():
            n_dropped, b_dropped = self._drop_oldest_frames(db, self._bytes)
            ends = self._ends(db)
        self._depth -= n_dropped
        self._bytes -= b_dropped
        self._oldest_created, self._newest_id = ends
        self._count_drops(n_dropped, b_dropped)

    def _drop_oldest_frames(self, db: sqlite_utils.Database, total: int) -> tuple[int, int]:
        """Inside the caller's transaction, delete the oldest frames until ``total`` fits."""
        excess = total - self._max_bytes
        if excess <= 0:
            return 0, 0
        if not self._overflowing:
            self._overflowing = True
            _log.warning(
                "outbox %s is over its budget of %d bytes: dropping the oldest frames (births "
                "and events are kept); no further warning until the backlog falls below %d bytes",
                self._path,
                self._max_bytes,
                int(self._max_bytes * _LOW_WATER),
            )
        n_dropped = b_dropped = 0
        last_id: int | None = None
        cursor = db.execute(
            "SELECT id, size FROM outbox WHERE kind = ? ORDER BY id", [DROPPABLE_KIND]
        )
        try:
            for row_id, size in cursor:
                last_id = row_id
                n_dropped += 1
                b_dropped += size
                if b_dropped >= excess:
                    break
        finally:
            cursor.close()
        if last_id is None:
            return 0, 0
        db.execute("DELETE FROM outbox WHERE kind = ? AND id <= ?", [DROPPABLE_KIND, last_id])
        db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped_frames'", [n_dropped])
        db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped_bytes'", [b_dropped])
        return n_dropped, b_dropped

    def _count_drops(self, n_dropped: int, b_dropped: int) -> None:
        self._dropped_frames += n_dropped
        self._dropped_bytes += b_dropped
        self._episode_frames += n_dropped
        self._episode_bytes += b_dropped

    def _end_episode_if_drained(self) -> None:
        # Only acks end an episode: drops alone would end and restart it on every commit.
        if self._overflowing and self._bytes <= self._max_bytes * _LOW_WATER:
            _log.info(
                "outbox %s is back under budget; %d frames (%d bytes) were dropped meanwhile",
                self._path,
                self._episode_frames,
                self._episode_bytes,
            )
            self._overflowing = False
            self._episode_frames = self._episode_bytes = 0

    def pending(self, limit: int, after_id: int) -> list[OutboxRow]:
        """Return up to ``limit`` committed rows with ``id > after_id``, oldest first."""
        db = self._require()
        try:
            return [
                OutboxRow(
                    id=r["id"],
                    topic=r["topic"],
                    payload=r["payload"],
                    retain=bool(r["retain"]),
                    kind=r["kind"],
                    created=r["created"],
                )
                for r in db.table("outbox").rows_where(
                    "id > ?",
                    [after_id],
                    order_by="id",
                    select="id, topic, payload, retain, kind, created",
                    limit=limit,
                )
            ]
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: cannot read the outbox: {exc}") from exc

    def ack(self, ids: Sequence[int]) -> Counts:
        """Delete delivered rows; unknown or repeated ids are ignored."""
        db = self._require()
        id_list = json.dumps([int(i) for i in ids])
        try:
            with db.atomic():
                n, total = db.execute(
                    "SELECT count(*), total(size) FROM outbox"
                    " WHERE id IN (SELECT value FROM json_each(?))",
                    [id_list],
                ).fetchone()
                db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))", [id_list]
                )
                ends = self._ends(db)
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: acknowledging rows failed: {exc}") from exc
        self._depth -= int(n)
        self._bytes -= int(total)
        self._oldest_created, self._newest_id = ends
        self._end_episode_if_drained()
        return self.snapshot()

    def close(self) -> None:
        """Checkpoint and truncate the WAL, then close; a no-op when not open."""
        db, self._db = self._db, None
        if db is None:
            return
        try:
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                _log.warning("outbox %s: WAL checkpoint incomplete (busy)", self._path)
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: cannot checkpoint the outbox: {exc}") from exc
        finally:
            db.close()

    def close_quietly(self) -> None:
        """Close without a checkpoint, for error paths; a no-op when not open."""
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _require(self) -> sqlite_utils.Database:
        if self._db is None:
            raise StorageError(f"{self._path}: the outbox database is not open")
        return self._db

    @staticmethod
    def _ends(db: sqlite_utils.Database) -> tuple[float | None, int | None]:
        first = db.execute("SELECT created FROM outbox ORDER BY id LIMIT 1").fetchone()
        last = db.execute("SELECT max(id) FROM outbox").fetchone()
        return (None if first is None else float(first[0])), last[0]
