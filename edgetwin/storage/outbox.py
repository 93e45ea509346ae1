"""Durable store-and-forward outbox between the twin (producer) and the MQTT uplink (consumer).

Producers ``put()`` into an in-memory buffer and never wait on the database. One writer task
(``run_writer()``) commits the buffer in one transaction (one ``executemany``), at most once per
``commit_interval``: a put after a quiet interval is committed at once, later ones wait for the
next slot. No row waits longer than ``commit_interval``, and an outbox with nothing to write
never wakes up. All SQLite work runs on one dedicated worker thread, never on the event loop.
A row leaves the outbox only when the consumer ``ack()``s it after the broker acknowledged it,
or when the overflow policy drops it.

Durability: the database runs in WAL mode with ``synchronous=FULL``: every commit fsyncs the WAL
before it returns, so a SIGKILL, a kernel crash or a power cut loses at most the rows still in
the buffer, one commit interval's worth, and never corrupts the file. Acks alone skip the fsync
(a lost ack only repeats a message). That is one fsync per commit interval: a gateway on an SD
card that must write less raises ``commit_interval``, which is also its loss bound.

Frames form delta chains: a ``"snapshot"`` row carries absolute values and every later ``"frame"``
row (a delta) of the same session needs all frames back to that snapshot to decode; both are put
with their ``session`` and ``seq``. A frame put without a session decodes on its own (schema v1).

Bounds: ``max_bytes`` (topic + payload bytes of the stored rows) and optionally ``max_age``
(seconds since a row was put). Over a bound, whole chains are dropped, oldest first: frames
without a session, then orphan deltas (whose snapshot already left), then chains; events only
once no frame is left; births never. A delta is never kept whose chain lost a member
(``_overflow.py`` states the exact order). Every drop is counted in ``stats()`` (persisted) and
recorded per session as a ``DropRecord``; ``take_drops()`` hands the records out once for
announcing upstream and marks them announced in the next commit, together with the
announcements put meanwhile, so a record survives any crash until its announcement is
committed. After a chain of the producer's own session was dropped,
``needs_snapshot(session)`` is true: its deltas are dropped on arrival until it puts the next
snapshot.

Replay: the uplink reads ``pending()`` in id (put) order, one lane: delta frames decode only
in seq order, so an outage's backlog goes out first (the uplink marks frames put before its
broker session started as replay) and live rows follow. Rows are delivered in put order; a
QoS 1 retry after a broken link may repeat some, which subscribers drop by (session, seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from edgetwin.errors import StorageError
from edgetwin.storage._db import Counts, OutboxDb
from edgetwin.storage._records import DropRecord, NewRow, OutboxRow

__all__ = ["KINDS", "DropRecord", "Outbox", "OutboxRow", "OutboxStats"]

KINDS = frozenset({"birth", "snapshot", "frame", "event"})
"""Row kinds ``put()`` accepts: ``"snapshot"`` heads a delta chain, ``"frame"`` is a delta."""

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """A cheap snapshot of the outbox's counters."""

    depth: int  # committed rows waiting for an ack
    bytes: int  # their topic + payload bytes
    buffered: int  # rows put but not committed yet
    oldest_age: float | None  # seconds since the oldest committed row was put
    dropped_frames: int  # snapshots and deltas dropped unsent, ever (persisted)
    dropped_events: int  # events dropped unsent, ever (persisted)
    dropped_bytes: int  # bytes of every dropped row, ever (persisted)
    commits: int  # write transactions since open()


class Outbox:
    """Durable FIFO of MQTT messages; see the module docstring for the contract."""

    def __init__(
        self,
        path: Path,
        *,
        commit_interval: float = 0.25,
        max_bytes: int = 256 * 1024 * 1024,
        max_age: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not commit_interval > 0:
            raise ValueError(f"commit_interval must be > 0, got {commit_interval!r}")
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes!r}")
        if max_age is not None and not max_age > 0:
            raise ValueError(f"max_age must be > 0 or None, got {max_age!r}")
        self._path = Path(path)
        self._commit_interval = commit_interval
        self._clock = clock  # unix seconds; rows are stamped with it and aged by it
        self._db = OutboxDb(self._path, max_bytes, max_age)
        self._executor: ThreadPoolExecutor | None = None
        self._opened = False
        self._closing: asyncio.Event | None = None  # set once close() has finished
        self._buffer: list[NewRow] = []
        self._inflight = 0  # rows handed to the worker thread, not committed yet
        self._counts = Counts()
        self._stop = asyncio.Event()
        self._work = asyncio.Event()  # something to commit, or stop(): wakes the writer
        self._changed = asyncio.Event()  # replaced on every change; see _notify()
        self._writer_running = False
        self._writer_done = asyncio.Event()
        self._announce_upto = 0  # drop records handed out by take_drops()
        self._announced_upto = 0  # ... and marked announced in a commit
        self._head = 0  # rows a commit reads back for the next pending(): its last limit

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    async def open(self) -> None:
        """Open (creating or migrating) the database; StorageError if corrupt or foreign."""
        if self._executor is not None or self._closing is not None:
            raise RuntimeError("Outbox.open() may be called only once")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgetwin-outbox")
        try:
            counts = await self._call(partial(self._db.open, self._clock()))
        except BaseException:
            self._shutdown_thread()
            self._closing = asyncio.Event()
            self._closing.set()
            raise
        self._opened = True
        self._apply(counts)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def put(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        kind: str = "frame",
        session: str | None = None,
        seq: int | None = None,
    ) -> None:
        """Buffer one message for the next commit; never waits on the database."""
        if self._closing is not None:
            raise StorageError(f"{self._path}: the outbox is closed; {kind} for {topic!r} lost")
        if kind not in KINDS:
            raise ValueError(f"unknown outbox row kind {kind!r}; expected one of {sorted(KINDS)}")
        if not topic:
            raise ValueError("an outbox row needs a topic")
        if session is not None and not session:
            raise ValueError("an outbox row's session, if given, must not be empty")
        if seq is not None and (session is None or seq < 0):
            raise ValueError(f"seq {seq!r} needs a session and must be >= 0")
        if kind == "snapshot" and (session is None or seq is None):
            raise ValueError("a snapshot heads a delta chain: it needs a session and a seq")
        data = bytes(payload)
        size = len(data) + len(topic.encode())
        self._buffer.append(NewRow(topic, data, retain, kind, self._clock(), size, session, seq))
        self._work.set()

    async def run_writer(self) -> None:
        """Commit what is put, at most once per commit interval, until stop()/close()."""
        if self._closing is not None:
            return  # close() already flushed; a writer task that started late has nothing to do
        self._require_open()
        if self._writer_running:
            raise RuntimeError("Outbox.run_writer() is already running")
        self._writer_running = True
        self._writer_done.clear()
        loop = asyncio.get_running_loop()
        due = loop.time() + self._commit_interval  # the earliest next commit
        try:
            while not self._stop.is_set():
                await self._work.wait()
                if (wait := due - loop.time()) > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._stop.wait()
                # Rows put from here on (also while the commit runs) set it again.
                self._work.clear()
                if self._buffer or self._announce_upto > self._announced_upto:
                    due = loop.time() + self._commit_interval
                    await self._commit()
            if self._buffer:  # stop() came before the loop ever ran
                await self._commit()
        finally:
            self._writer_running = False
            self._writer_done.set()

    def stop(self) -> None:
        """Ask run_writer() to flush once more and return."""
        self._stop.set()
        self._work.set()

    async def flush(self) -> None:
        """Commit everything put so far; returns once it is on disk (see module docstring)."""
        self._require_open()
        await self._commit()

    async def pending(self, limit: int, *, after_id: int = 0) -> list[OutboxRow]:
        """Return up to ``limit`` committed rows with ``id > after_id``, oldest first."""
        self._require_open()
        if limit <= 0:
            return []
        self._head = limit
        counts = self._counts
        head = counts.head
        if after_id == 0 and head is not None and len(head) >= min(limit, counts.depth):
            # Read back by the latest commit, and nothing has changed the table since.
            return list(head[:limit])
        return await self._call(partial(self._db.pending, limit, after_id))

    async def wait_pending(self, *, after_id: int = 0) -> None:
        """Return once a committed row with ``id > after_id`` exists; StorageError on close."""
        while True:
            self._require_open()
            newest = self._counts.newest_id
            if newest is not None and newest > after_id:
                return
            await self._changed.wait()

    async def ack(self, ids: Sequence[int]) -> None:
        """Delete rows the broker acknowledged; unknown or repeated ids are ignored."""
        self._require_open()
        if ids:
            self._apply(await self._call(partial(self._db.ack, list(ids), self._clock())))

    async def take_drops(self) -> list[DropRecord]:
        """Return drop records not announced yet, once; put their announcements right away."""
        self._require_open()
        if not self._counts.drops_waiting:
            return []  # nothing was dropped since the last take: no trip to the database
        records, counts = await self._call(self._db.take_drops)
        self._apply(counts)
        if records:
            # Marked in the next commit, atomically with the announcements put before it.
            self._announce_upto = max(self._announce_upto, records[-1].id)
            self._work.set()
        return records

    def needs_snapshot(self, session: str) -> bool:
        """True while ``session``'s chain is broken: its deltas are dropped until a snapshot."""
        return session in self._counts.broken

    def stats(self) -> OutboxStats:
        """Return the counters kept in memory; no database access."""
        c = self._counts
        age = None if c.oldest_created is None else max(0.0, self._clock() - c.oldest_created)
        return OutboxStats(
            depth=c.depth,
            bytes=c.bytes,
            buffered=len(self._buffer) + self._inflight,
            oldest_age=age,
            dropped_frames=c.dropped_frames,
            dropped_events=c.dropped_events,
            dropped_bytes=c.dropped_bytes,
            commits=c.commits,
        )

    async def close(self) -> None:
        """Flush, checkpoint the WAL, close the database and end the worker thread; idempotent."""
        if self._closing is not None:
            await self._closing.wait()
            return
        self._closing = closing = asyncio.Event()
        self.stop()
        try:
            if self._writer_running:
                await self._writer_done.wait()
            if self._opened:
                await self._commit()
                await self._call(self._db.close)
        finally:
            self._opened = False
            self._shutdown_thread()
            self._notify()
            closing.set()

    async def _commit(self) -> None:
        rows, self._buffer = self._buffer, []
        upto = self._announce_upto if self._announce_upto > self._announced_upto else 0
        if not rows and not upto:
            # Queued behind any commit in flight, so flush() returns only after that one too.
            self._apply(await self._call(self._db.snapshot))
            return
        self._inflight += len(rows)
        try:
            counts = await self._call(
                partial(self._db.insert, rows, self._clock(), upto, self._head)
            )
        except StorageError:
            self._buffer[:0] = rows  # kept for a later flush; the transaction was rolled back
            raise
        finally:
            self._inflight -= len(rows)
        self._announced_upto = max(self._announced_upto, upto)
        self._apply(counts)

    async def _call(self, fn: Callable[[], _T]) -> _T:
        assert self._executor is not None
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn)
        # Shielded: a submitted job always runs to completion, so a cancelled caller loses no batch.
        return await asyncio.shield(future)

    def _apply(self, counts: Counts) -> None:
        if counts.seq <= self._counts.seq:
            return
        changed = counts.newest_id != self._counts.newest_id
        self._counts = counts
        if changed:
            self._notify()

    def _notify(self) -> None:
        # A fresh Event per change wakes every waiter once, with no clear() race.
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _require_open(self) -> None:
        if self._closing is not None:
            raise StorageError(f"{self._path}: the outbox is closed")
        if not self._opened:
            raise RuntimeError("the outbox is not open; await Outbox.open() first")

    def _shutdown_thread(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            # Closes the connection if an error or a cancellation skipped the orderly close.
            executor.submit(self._db.close_quietly)
            # Normally blocks only until the idle worker takes the sentinel; after a cancellation
            # it also waits for the shielded job still running, which must not outlive the thread.
            executor.shutdown(wait=True)
