"""The outbox file's schema: checks before use, and migrations from every older version."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import sqlite_utils

from edgetwin.errors import StorageError

SCHEMA_VERSION = 2
APPLICATION_ID = 0x45544F42  # "ETOB" in the file header: this file is an edgetwin outbox
_SQLITE_MAGIC = b"SQLite format 3\x00"

# Each entry brings the schema one version up, in one transaction; a new file runs them all.
MIGRATIONS: dict[int, tuple[str, ...]] = {
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
    # Delta chains: frames carry their session and seq; drops are recorded until announced.
    2: (
        "ALTER TABLE outbox ADD COLUMN session TEXT",
        "ALTER TABLE outbox ADD COLUMN seq INTEGER",
        "DROP INDEX outbox_kind",
        # (kind, session, rowid): a session's first snapshot or delta, and chain ranges by id.
        "CREATE INDEX outbox_chain ON outbox (kind, session)",
        """CREATE TABLE drops (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session TEXT,
            first_seq INTEGER,
            last_seq INTEGER,
            frames INTEGER NOT NULL,
            events INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            reason TEXT NOT NULL,
            first_at REAL NOT NULL,
            last_at REAL NOT NULL,
            announced INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE TABLE broken (session TEXT PRIMARY KEY) WITHOUT ROWID",
        "INSERT INTO meta (key, value) VALUES ('dropped_events', 0)",
    ),
}

_log = logging.getLogger("edgetwin.storage.outbox")


def check_header(path: Path) -> None:
    """Refuse a file that exists but is not an SQLite database, before SQLite touches it."""
    # SQLite happily treats a short non-database file as empty and would overwrite it.
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the outbox file: {exc}") from exc
    if head and head != _SQLITE_MAGIC:
        raise StorageError(
            f"{path}: not an edgetwin outbox (not an SQLite database); "
            "move the file aside or point the outbox elsewhere"
        )


def check_contents(path: Path, db: sqlite_utils.Database) -> int:
    """Integrity and identity checks; return the file's schema version (0 for a new file)."""
    try:
        problems = [str(r[0]) for r in db.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        raise StorageError(
            f"{path}: the outbox database is corrupt or not an SQLite database ({exc}); "
            "move it aside to start an empty outbox"
        ) from exc
    if problems != ["ok"]:
        raise StorageError(
            f"{path}: the outbox database is corrupt (PRAGMA quick_check: "
            f"{'; '.join(problems[:5])}); move it aside to start an empty outbox"
        )
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    app_id = int(db.execute("PRAGMA application_id").fetchone()[0])
    if app_id not in (0, APPLICATION_ID):
        raise StorageError(
            f"{path}: not an edgetwin outbox (application_id is {app_id:#x}, "
            f"expected {APPLICATION_ID:#x})"
        )
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path}: outbox schema version {version} is newer than the version this "
            f"edgetwin supports ({SCHEMA_VERSION}); upgrade edgetwin or move the file aside"
        )
    if (version > 0 and app_id != APPLICATION_ID) or (version == 0 and db.table_names()):
        raise StorageError(
            f"{path}: not an edgetwin outbox (an SQLite database with "
            f"user_version {version} and tables {db.table_names()})"
        )
    return version


def use_wal(path: Path, db: sqlite_utils.Database) -> None:
    """Switch to WAL with synchronous=FULL, or refuse the file system."""
    db.enable_wal()
    if db.journal_mode != "wal":
        raise StorageError(
            f"{path}: cannot switch the outbox to WAL (journal_mode is "
            f"{db.journal_mode!r}); is the file system read-only or a network share?"
        )
    # WAL + FULL: every commit fsyncs the WAL, so a power cut loses at most the buffer (one
    # commit interval). Acks lower it per transaction (see OutboxDb.ack).
    db.execute("PRAGMA synchronous=FULL")


def migrate(path: Path, db: sqlite_utils.Database, version: int) -> None:
    """Bring the schema from ``version`` up to SCHEMA_VERSION, one transaction per step."""
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with db.atomic():
            for statement in MIGRATIONS[target]:
                db.execute(statement)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {target}")
        _log.info("outbox %s: schema now at version %d", path, target)
