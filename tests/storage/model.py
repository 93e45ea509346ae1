"""An obviously-correct, in-memory model of the outbox's overflow policy, for comparison tests.

It recomputes every unit from the full row list on every step (no indexes, no caching), the way
the policy is stated: split each session's frames at its snapshots; a group that starts with a
delta is an orphan run, one that starts with a snapshot is a chain, the last group is open.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    id: int
    kind: str
    session: str | None
    seq: int | None
    size: int
    created: float


@dataclass
class Put:
    kind: str
    session: str | None
    seq: int | None
    size: int


@dataclass
class Dropped:
    frames: int = 0
    events: int = 0
    bytes: int = 0
    seqs: list[int] = field(default_factory=list)


@dataclass
class Model:
    max_bytes: int
    max_age: float | None
    rows: list[Row] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)
    next_id: int = 1
    frames: int = 0
    events: int = 0
    bytes: int = 0
    records: dict[tuple[str | None, str], Dropped] = field(default_factory=dict)

    def commit(self, batch: list[Put], now: float) -> None:
        for p in batch:
            if p.session is not None and p.kind == "frame" and p.session in self.broken:
                self._count([Row(0, p.kind, p.session, p.seq, p.size, now)], "chain")
                continue
            if p.kind == "snapshot":
                self.broken.discard(p.session or "")
            self.rows.append(Row(self.next_id, p.kind, p.session, p.seq, p.size, now))
            self.next_id += 1
        self.enforce(now)

    def enforce(self, now: float) -> None:
        if self.max_age is not None:
            cutoff = now - self.max_age
            for unit, is_open in self.units():
                if unit[0].created < cutoff:
                    self._drop(unit, is_open, "age")
        while sum(r.size for r in self.rows) > self.max_bytes:
            units = self.units()
            if not units:
                break
            self._drop(*units[0], "bytes")

    def units(self) -> list[tuple[list[Row], bool]]:
        """Every droppable unit, in drop order (bytes), each with its open flag."""
        legacy = [[r] for r in self.rows if r.kind == "frame" and r.session is None]
        orphans: list[tuple[list[Row], bool]] = []
        chains: list[tuple[list[Row], bool]] = []
        for s in sorted({r.session for r in self.rows if r.session is not None}):
            mine = [r for r in self.rows if r.session == s and r.kind in ("snapshot", "frame")]
            groups: list[list[Row]] = []
            for r in mine:
                if r.kind == "snapshot" or not groups:
                    groups.append([r])
                else:
                    groups[-1].append(r)
            for i, g in enumerate(groups):
                (orphans if g[0].kind == "frame" else chains).append((g, i == len(groups) - 1))
        events = [[r] for r in self.rows if r.kind == "event"]
        return (
            [(u, False) for u in legacy]
            + sorted(orphans, key=lambda u: u[0][0].id)
            + sorted(chains, key=lambda u: u[0][0].id)
            + [(u, False) for u in events]
        )

    def _drop(self, unit: list[Row], is_open: bool, reason: str) -> None:
        ids = {r.id for r in unit}
        self.rows = [r for r in self.rows if r.id not in ids]
        self._count(unit, reason)
        if is_open and unit[0].session is not None:
            self.broken.add(unit[0].session)

    def _count(self, rows: list[Row], reason: str) -> None:
        for r in rows:
            rec = self.records.setdefault((r.session, reason), Dropped())
            if r.kind == "event":
                self.events += 1
                rec.events += 1
            else:
                self.frames += 1
                rec.frames += 1
            self.bytes += r.size
            rec.bytes += r.size
            if r.seq is not None:
                rec.seqs.append(r.seq)

    def ack(self, ids: set[int]) -> None:
        self.rows = [r for r in self.rows if r.id not in ids]
