"""The outbox database itself: synchronous, and used only on the outbox's one worker thread."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from edgetwin.errors import StorageError
from edgetwin.storage import _schema
from edgetwin.storage._overflow import DropLog, Overflow, Tally
from edgetwin.storage._records import DropRecord, NewRow, OutboxRow

_LOW_WATER = 0.9  # an overflow episode ends once the backlog is back under this share of a bound
_ROW_COLUMNS = "id, topic, payload, retain, kind, created, session, seq"
_INSERT = (
    "INSERT INTO outbox (topic, payload, retain, kind, created, size, session, seq)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)

_log = logging.getLogger("edgetwin.storage.outbox")


@dataclass(frozen=True, slots=True)
class Counts:
    """The database's counters after one operation; ``seq`` orders snapshots."""

    seq: int = 0
    depth: int = 0
    bytes: int = 0
    oldest_created: float | None = None
    newest_id: int | None = None
    dropped_frames: int = 0
    dropped_events: int = 0
    dropped_bytes: int = 0
    commits: int = 0
    broken: frozenset[str] = field(default_factory=frozenset)
    drops_waiting: bool = True  # drop records may wait for take_drops()
    head: tuple[OutboxRow, ...] | None = None  # the oldest rows right after this; None: unread


def _row(r: tuple[int, str, bytes, int, str, float, str | None, int | None]) -> OutboxRow:
    return OutboxRow(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6], r[7])


class OutboxDb:
    """Schema, checks and batched writes; every method must run on the same single thread."""

    def __init__(self, path: Path, max_bytes: int, max_age: float | None) -> None:
        self._path = path
        self._max_bytes = max_bytes
        self._max_age = max_age
        self._db: sqlite_utils.Database | None = None
        self._drops = DropLog()
        self._overflow = Overflow(max_bytes, max_age, self._drops)
        self._seq = 0
        self._depth = 0
        self._bytes = 0
        self._oldest_created: float | None = None
        self._newest_id: int | None = None
        self._dropped = Tally()  # ever, persisted in meta
        self._commits = 0
        self._overflowing = False
        self._episode = Tally()

    def open(self, now: float) -> Counts:
        """Check, migrate and configure the file, then count what it holds."""
        _schema.check_header(self._path)
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread (the default) enforces that the connection never leaves this thread.
            conn = sqlite3.connect(self._path)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"{self._path}: cannot open the outbox: {exc}") from exc
        try:
            db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
            version = _schema.check_contents(self._path, db)
            # Only after the checks: switching to WAL rewrites the header of a file we may refuse.
            _schema.use_wal(self._path, db)
            _schema.migrate(self._path, db, version)
            self._db = db
            self._load()
            self._enforce_bounds_now(now)
        except sqlite3.Error as exc:
            self._db = None
            conn.close()
            raise StorageError(f"{self._path}: cannot open the outbox: {exc}") from exc
        except BaseException:
            self._db = None
            conn.close()
            raise
        _log.info(
            "outbox %s open: %d rows, %d bytes; %d frames, %d events (%d bytes) dropped so far",
            self._path,
            self._depth,
            self._bytes,
            self._dropped.frames,
            self._dropped.events,
            self._dropped.bytes,
        )
        return self.snapshot()

    def _load(self) -> None:
        conn = self._require().conn
        depth, total = conn.execute("SELECT count(*), total(size) FROM outbox").fetchone()
        self._depth = int(depth)
        self._bytes = int(total)
        self._oldest_created, self._newest_id = self._ends(conn)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        self._dropped = Tally(
            int(meta["dropped_frames"]), int(meta["dropped_events"]), int(meta["dropped_bytes"])
        )
        self._overflow.load(conn)

    def _reload_after_error(self) -> None:
        # The transaction was rolled back: forget what it changed in memory.
        try:
            self._load()
        except (sqlite3.Error, StorageError):
            _log.exception("outbox %s: cannot re-read the outbox after an error", self._path)

    def snapshot(self, head: tuple[OutboxRow, ...] | None = None) -> Counts:
        """Return the current counters under a new sequence number (and ``head`` if read)."""
        self._seq += 1
        return Counts(
            seq=self._seq,
            depth=self._depth,
            bytes=self._bytes,
            oldest_created=self._oldest_created,
            newest_id=self._newest_id,
            dropped_frames=self._dropped.frames,
            dropped_events=self._dropped.events,
            dropped_bytes=self._dropped.bytes,
            commits=self._commits,
            broken=frozenset(self._overflow.broken),
            drops_waiting=self._drops.waiting,
            head=head,
        )

    def insert(
        self, rows: Sequence[NewRow], now: float, announced_upto: int = 0, head: int = 0
    ) -> Counts:
        """Commit ``rows`` in one transaction, apply the bounds, mark announced drop records.

        With ``head`` > 0 the counters carry the first ``head`` rows after the commit, so the
        consumer woken by it needs no second trip to this thread.
        """
        db = self._require()
        conn = db.conn
        try:
            with db.atomic():
                kept, chained = self._overflow.admit(conn, rows, now)
                conn.executemany(
                    _INSERT,
                    [
                        (
                            r.topic,
                            r.payload,
                            int(r.retain),
                            r.kind,
                            r.created,
                            r.size,
                            r.session,
                            r.seq,
                        )
                        for r in kept
                    ],
                )
                added = sum(r.size for r in kept)
                expired, evicted = self._overflow.enforce(conn, self._bytes + added, now)
                self._save_counters(conn, chained, expired, evicted)
                if announced_upto:
                    self._drops.mark(conn, announced_upto)
                ends = self._ends(conn)
        except sqlite3.Error as exc:
            self._reload_after_error()
            raise StorageError(f"{self._path}: cannot commit to the outbox: {exc}") from exc
        self._commits += 1
        self._depth += len(kept) - expired.rows - evicted.rows
        self._bytes += added - expired.bytes - evicted.bytes
        self._oldest_created, self._newest_id = ends
        self._note_drops(chained, expired, evicted)
        if head <= 0:
            return self.snapshot()
        try:
            first = self._rows(head, 0)
        except StorageError:
            first = None  # committed all the same; the consumer reads the rows itself
        return self.snapshot(None if first is None else tuple(first))

    def _enforce_bounds_now(self, now: float) -> None:
        # The bounds may have shrunk since the last run, and time passed.
        db = self._require()
        with db.atomic():
            expired, evicted = self._overflow.enforce(db.conn, self._bytes, now)
            self._save_counters(db.conn, Tally(), expired, evicted)
            ends = self._ends(db.conn)
        self._depth -= expired.rows + evicted.rows
        self._bytes -= expired.bytes + evicted.bytes
        self._oldest_created, self._newest_id = ends
        self._note_drops(Tally(), expired, evicted)

    @staticmethod
    def _save_counters(conn: sqlite3.Connection, *tallies: Tally) -> None:
        total = Tally()
        for t in tallies:
            total.add(t)
        if total.rows:
            conn.executemany(
                "UPDATE meta SET value = value + ? WHERE key = ?",
                [
                    (total.frames, "dropped_frames"),
                    (total.events, "dropped_events"),
                    (total.bytes, "dropped_bytes"),
                ],
            )

    def _note_drops(self, chained: Tally, expired: Tally, evicted: Tally) -> None:
        for t in (chained, expired, evicted):
            self._dropped.add(t)
            self._episode.add(t)
        if self._overflowing or not (expired.rows or evicted.rows):
            return
        self._overflowing = True
        causes = []
        if evicted.rows:
            causes.append(f"over its budget of {self._max_bytes} bytes")
        if expired.rows:
            causes.append(f"holding rows older than {self._max_age} s")
        _log.warning(
            "outbox %s is %s: dropping the oldest delta chains, then events (births are kept); "
            "every drop is counted and recorded for announcing; no further warning until "
            "delivery catches up",
            self._path,
            " and ".join(causes),
        )

    def _end_episode_if_drained(self, now: float) -> None:
        # Only acks end an episode: drops alone would end and restart it on every commit.
        if not self._overflowing or self._bytes > self._max_bytes * _LOW_WATER:
            return
        oldest = self._oldest_created
        if self._max_age and oldest is not None and now - oldest > self._max_age * _LOW_WATER:
            return
        _log.info(
            "outbox %s is back within its bounds; %d frames and %d events (%d bytes) were "
            "dropped meanwhile",
            self._path,
            self._episode.frames,
            self._episode.events,
            self._episode.bytes,
        )
        self._overflowing = False
        self._episode = Tally()

    def pending(self, limit: int, after_id: int) -> list[OutboxRow]:
        """Return up to ``limit`` committed rows with ``id > after_id``, oldest first."""
        return self._rows(limit, after_id)

    def _rows(self, limit: int, after_id: int) -> list[OutboxRow]:
        conn = self._require().conn
        try:
            rows = conn.execute(
                f"SELECT {_ROW_COLUMNS} FROM outbox WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
                (after_id, limit),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: cannot read the outbox: {exc}") from exc
        return [_row(r) for r in rows]

    def take_drops(self) -> tuple[list[DropRecord], Counts]:
        """Return drop records neither announced nor handed out since open, oldest first."""
        conn = self._require().conn
        try:
            records = self._drops.take(conn)
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: cannot read the drop records: {exc}") from exc
        return records, self.snapshot()

    def ack(self, ids: Sequence[int], now: float) -> Counts:
        """Delete delivered rows; unknown or repeated ids are ignored."""
        db = self._require()
        id_list = json.dumps([int(i) for i in ids])
        try:
            # An ack lost to a power cut only repeats messages, which subscribers drop, so acks
            # skip the fsync; the next commit's fsync makes them durable as well.
            db.execute("PRAGMA synchronous=NORMAL")
            with db.atomic():
                n, total = db.execute(
                    "SELECT count(*), total(size) FROM outbox"
                    " WHERE id IN (SELECT value FROM json_each(?))",
                    [id_list],
                ).fetchone()
                db.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))", [id_list]
                )
                ends = self._ends(db.conn)
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA synchronous=FULL")
            raise StorageError(f"{self._path}: acknowledging rows failed: {exc}") from exc
        self._depth -= int(n)
        self._bytes -= int(total)
        self._oldest_created, self._newest_id = ends
        self._end_episode_if_drained(now)
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
    def _ends(conn: sqlite3.Connection) -> tuple[float | None, int | None]:
        first = conn.execute("SELECT created FROM outbox ORDER BY id LIMIT 1").fetchone()
        last = conn.execute("SELECT max(id) FROM outbox").fetchone()
        return (None if first is None else float(first[0])), last[0]
