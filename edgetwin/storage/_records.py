"""Plain records that cross between the outbox's worker thread and the event loop."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One committed outbox row, as handed to the uplink."""

    id: int
    topic: str
    payload: bytes
    retain: bool
    kind: str
    created: float
    session: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class NewRow:
    """A row put by a producer and not committed yet."""

    topic: str
    payload: bytes
    retain: bool
    kind: str
    created: float
    size: int
    session: str | None
    seq: int | None


@dataclass(frozen=True, slots=True)
class DropRecord:
    """Rows of one session the outbox dropped for one reason, to be announced upstream."""

    id: int
    session: str | None  # None: events or frames put without a session
    first_seq: int | None  # lowest and highest seq among the dropped frames, if they had one
    last_seq: int | None
    frames: int  # snapshots and deltas
    events: int
    bytes: int  # topic + payload bytes of every row counted here
    reason: str  # "bytes" (over max_bytes), "age" (over max_age), "chain" (chain head dropped)
    first_at: float  # unix time of the first and the last drop merged into this record
    last_at: float
