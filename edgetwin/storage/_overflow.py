"""The overflow policy: which rows leave unsent when the outbox is over its byte or age bound.

Frames form delta chains: a snapshot carries absolute values and every later delta (kind
"frame") of its session needs every frame back to that snapshot to decode. So rows are dropped in
whole units, never from the middle of a chain, in this order:

1. frames put without a session (schema v1 rows), one by one: each decodes on its own;
2. orphan runs: a session's deltas before its first stored snapshot (their head was delivered,
   or they are all that is left of the chain), the run with the oldest first row first;
3. chains: a session's oldest stored snapshot with every delta up to its next stored snapshot,
   the oldest snapshot first;
4. events, oldest first, only once no frame is left. Births are never dropped.

By age, every unit whose first row was put more than ``max_age`` seconds ago goes, so no
frame or event older than that stays. By bytes, units go in the order above until the total
fits. Dropping a session's newest unit breaks its chain: the session's later deltas are dropped
on arrival (reason "chain") until its next snapshot, since they could not be decoded.

Everything here runs inside the caller's transaction, on the outbox's worker thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from edgetwin.storage._records import DropRecord, NewRow

_END = 2**63 - 1  # an id bound past every row: the chain runs to the newest delta
_KEEP_ANNOUNCED = 100  # announced records kept for inspection with the sqlite3 shell
_CHAIN_ROWS = (
    "FROM outbox WHERE kind IN ('snapshot', 'frame') AND session = ? AND id >= ? AND id < ?"
)
_CHAIN_SELECT = "SELECT seq, size " + _CHAIN_ROWS
_CHAIN_DELETE = "DELETE " + _CHAIN_ROWS
_LEGACY = "kind = 'frame' AND session IS NULL"
_EVENTS = "kind = 'event'"
_LEGACY_OLD = _LEGACY + " AND created < ?"
_EVENTS_OLD = _EVENTS + " AND created < ?"


@dataclass(slots=True)
class Tally:
    """Rows dropped by one operation: frames (snapshots and deltas), events, their bytes."""

    frames: int = 0
    events: int = 0
    bytes: int = 0

    @property
    def rows(self) -> int:
        """Frames and events together."""
        return self.frames + self.events

    def add(self, other: Tally) -> None:
        """Accumulate ``other`` into this tally."""
        self.frames += other.frames
        self.events += other.events
        self.bytes += other.bytes


@dataclass(frozen=True, slots=True)
class _Unit:
    """The oldest droppable unit of one session: an orphan run or a chain."""

    session: str
    orphan: bool
    start: int  # id of its first row
    end: int  # id of the session's next stored snapshot (not part of it), or _END
    created: float  # when its first row was put
    open: bool  # no stored snapshot follows: dropping it breaks the session's live chain


class DropLog:
    """The drops table: one record per session and reason, merged until taken for announcing."""

    def __init__(self) -> None:
        self._taken_upto = 0  # records up to this id were handed out: never merge into them
        self.waiting = True  # a record may wait to be taken (unknown before the first take)

    def record(
        self,
        conn: sqlite3.Connection,
        session: str | None,
        *,
        reason: str,
        tally: Tally,
        seqs: Sequence[int | None],
        now: float,
    ) -> None:
        """Add ``tally`` to the session's open record for ``reason``, or start one."""
        self.waiting = True
        known = [s for s in seqs if s is not None]
        first, last = (min(known), max(known)) if known else (None, None)
        row = conn.execute(
            "SELECT id FROM drops WHERE announced = 0 AND id > ? AND session IS ? AND reason = ?"
            " ORDER BY id DESC LIMIT 1",
            (self._taken_upto, session, reason),
        ).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO drops (session, first_seq, last_seq, frames, events, bytes, reason,"
                " first_at, last_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session, first, last, tally.frames, tally.events, tally.bytes, reason, now, now),
            )
            return
        conn.execute(
            "UPDATE drops SET first_seq = coalesce(min(first_seq, ?1), first_seq, ?1),"
            " last_seq = coalesce(max(last_seq, ?2), last_seq, ?2), frames = frames + ?3,"
            " events = events + ?4, bytes = bytes + ?5, last_at = ?6 WHERE id = ?7",
            (first, last, tally.frames, tally.events, tally.bytes, now, row[0]),
        )

    def take(self, conn: sqlite3.Connection) -> list[DropRecord]:
        """Return the records not announced nor handed out yet, oldest first."""
        rows = conn.execute(
            "SELECT id, session, first_seq, last_seq, frames, events, bytes, reason, first_at,"
            " last_at FROM drops WHERE announced = 0 AND id > ? ORDER BY id",
            (self._taken_upto,),
        ).fetchall()
        if rows:
            self._taken_upto = int(rows[-1][0])
        self.waiting = False
        return [DropRecord(*row) for row in rows]

    @staticmethod
    def mark(conn: sqlite3.Connection, upto: int) -> None:
        """Mark records up to ``upto`` announced, and forget all but the latest announced ones."""
        conn.execute("UPDATE drops SET announced = 1 WHERE announced = 0 AND id <= ?", (upto,))
        conn.execute("DELETE FROM drops WHERE announced = 1 AND id <= ?", (upto - _KEEP_ANNOUNCED,))


class Overflow:
    """Applies the module's policy; keeps which sessions have frames and which chains broke."""

    def __init__(self, max_bytes: int, max_age: float | None, drops: DropLog) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.drops = drops
        self.sessions: set[str] = set()  # sessions that may have snapshots or deltas stored
        self.broken: set[str] = set()  # sessions whose newest chain lost its head

    def load(self, conn: sqlite3.Connection) -> None:
        """Read the state from the file (at open, and after a failed transaction)."""
        self.broken = {str(r[0]) for r in conn.execute("SELECT session FROM broken")}
        self.sessions = set()
        for kind in ("snapshot", "frame"):
            # A skip scan over the (kind, session) index: one lookup per distinct session.
            row = conn.execute(
                "SELECT min(session) FROM outbox WHERE kind = ? AND session IS NOT NULL", (kind,)
            ).fetchone()
            while row[0] is not None:
                self.sessions.add(str(row[0]))
                row = conn.execute(
                    "SELECT min(session) FROM outbox WHERE kind = ? AND session > ?",
                    (kind, row[0]),
                ).fetchone()

    def admit(
        self, conn: sqlite3.Connection, rows: Sequence[NewRow], now: float
    ) -> tuple[list[NewRow], Tally]:
        """Split ``rows`` into those to insert and the deltas of broken chains, recorded."""
        kept: list[NewRow] = []
        lost: dict[str, list[NewRow]] = {}
        for r in rows:
            s = r.session
            if s is not None and r.kind == "frame" and s in self.broken:
                lost.setdefault(s, []).append(r)
                continue
            if s is not None and r.kind == "snapshot" and s in self.broken:
                self.broken.discard(s)
                conn.execute("DELETE FROM broken WHERE session = ?", (s,))
            if s is not None and r.kind in ("snapshot", "frame"):
                self.sessions.add(s)
            kept.append(r)
        total = Tally()
        for s, dropped in lost.items():
            tally = Tally(frames=len(dropped), bytes=sum(r.size for r in dropped))
            self.drops.record(
                conn, s, reason="chain", tally=tally, seqs=[r.seq for r in dropped], now=now
            )
            total.add(tally)
        return kept, total

    def enforce(self, conn: sqlite3.Connection, total: int, now: float) -> tuple[Tally, Tally]:
        """Drop what is over the age bound, then over the byte bound; return both tallies."""
        expired = Tally()
        if self.max_age is not None:
            cutoff = now - self.max_age
            # Rows are put in id order: if the first droppable row is young enough, all are.
            first = conn.execute(
                "SELECT created FROM outbox WHERE kind != 'birth' ORDER BY id LIMIT 1"
            ).fetchone()
            if first is not None and first[0] < cutoff:
                self._expire(conn, cutoff, now, expired)
        evicted = Tally()
        excess = total - expired.bytes - self.max_bytes
        if excess > 0:
            self._evict(conn, excess, now, evicted)
        return expired, evicted

    def _expire(self, conn: sqlite3.Connection, cutoff: float, now: float, tally: Tally) -> None:
        self._drop_singles(
            conn, _LEGACY_OLD, (cutoff,), excess=None, reason="age", now=now, tally=tally
        )
        for s in sorted(self.sessions):
            while (unit := self._oldest_unit(conn, s)) is not None and unit.created < cutoff:
                self._drop_unit(conn, unit, "age", now, tally)
        self._drop_singles(
            conn, _EVENTS_OLD, (cutoff,), excess=None, reason="age", now=now, tally=tally
        )

    def _evict(self, conn: sqlite3.Connection, excess: int, now: float, tally: Tally) -> None:
        self._drop_singles(conn, _LEGACY, (), excess=excess, reason="bytes", now=now, tally=tally)
        units = {s: u for s in sorted(self.sessions) if (u := self._oldest_unit(conn, s))}
        while tally.bytes < excess and units:
            unit = min(units.values(), key=lambda u: (not u.orphan, u.start))
            self._drop_unit(conn, unit, "bytes", now, tally)
            if (following := self._oldest_unit(conn, unit.session)) is None:
                del units[unit.session]
            else:
                units[unit.session] = following
        if tally.bytes < excess:
            left = excess - tally.bytes
            self._drop_singles(conn, _EVENTS, (), excess=left, reason="bytes", now=now, tally=tally)

    def _oldest_unit(self, conn: sqlite3.Connection, session: str) -> _Unit | None:
        first = "SELECT id, created FROM outbox WHERE kind = ? AND session = ? ORDER BY id LIMIT 1"
        snap = conn.execute(first, ("snapshot", session)).fetchone()
        delta = conn.execute(first, ("frame", session)).fetchone()
        if delta is not None and (snap is None or delta[0] < snap[0]):
            end = _END if snap is None else int(snap[0])
            return _Unit(session, True, int(delta[0]), end, float(delta[1]), snap is None)
        if snap is None:
            self.sessions.discard(session)  # nothing of it left to drop
            return None
        following = conn.execute(
            "SELECT id FROM outbox WHERE kind = 'snapshot' AND session = ? AND id > ?"
            " ORDER BY id LIMIT 1",
            (session, snap[0]),
        ).fetchone()
        end = _END if following is None else int(following[0])
        return _Unit(session, False, int(snap[0]), end, float(snap[1]), following is None)

    def _drop_unit(
        self, conn: sqlite3.Connection, unit: _Unit, reason: str, now: float, tally: Tally
    ) -> None:
        where = (unit.session, unit.start, unit.end)
        rows = conn.execute(_CHAIN_SELECT, where).fetchall()
        seqs = [r[0] for r in rows]
        dropped = Tally(frames=len(rows), bytes=sum(int(r[1]) for r in rows))
        conn.execute(_CHAIN_DELETE, where)
        self.drops.record(conn, unit.session, reason=reason, tally=dropped, seqs=seqs, now=now)
        tally.add(dropped)
        if unit.open and unit.session not in self.broken:
            self.broken.add(unit.session)
            conn.execute("INSERT INTO broken (session) VALUES (?)", (unit.session,))

    def _drop_singles(
        self,
        conn: sqlite3.Connection,
        where: str,
        params: tuple[object, ...],
        *,
        excess: int | None,
        reason: str,
        now: float,
        tally: Tally,
    ) -> None:
        """Drop rows matching ``where`` oldest first until ``excess`` bytes went (None: all)."""
        picked: list[tuple[int, int, str | None, int | None, str]] = []
        size = 0
        # The where clauses are this module's constants; values are always bound parameters.
        cursor = conn.execute(
            "SELECT id, size, session, seq, kind FROM outbox WHERE " + where + " ORDER BY id",  # noqa: S608
            params,
        )
        try:
            for row in cursor:
                picked.append(row)
                size += row[1]
                if excess is not None and size >= excess:
                    break
        finally:
            cursor.close()
        if not picked:
            return
        if excess is None:
            conn.execute("DELETE FROM outbox WHERE " + where, params)  # noqa: S608
        else:
            conn.execute(
                "DELETE FROM outbox WHERE " + where + " AND id <= ?",  # noqa: S608
                (*params, picked[-1][0]),
            )
        by_session: dict[str | None, list[tuple[int, int, str | None, int | None, str]]] = {}
        for row in picked:
            by_session.setdefault(row[2], []).append(row)
        for session, rows in by_session.items():
            events = sum(1 for r in rows if r[4] == "event")
            dropped = Tally(len(rows) - events, events, sum(r[1] for r in rows))
            seqs = [r[3] for r in rows]
            self.drops.record(conn, session, reason=reason, tally=dropped, seqs=seqs, now=now)
            tally.add(dropped)
