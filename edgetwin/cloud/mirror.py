"""Rebuild every gateway's twin from (topic, payload) messages of the uplink topic tree; no I/O."""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from edgetwin.core.types import Alarm, Quality, TwinBatch, point_id
from edgetwin.errors import PayloadError
from edgetwin.uplink.codec import (
    DEFAULT_MAX_DECOMPRESSED,
    Birth,
    Status,
    WireFrame,
    decode_birth,
    decode_event,
    decode_status,
    unpack_frame,
)
from edgetwin.uplink.framer import FrameDecoder
from edgetwin.uplink.topics import DEFAULT_PREFIX, parse_topic, subscriptions, validate_prefix

_ASKED_PER_GATEWAY = 64


@dataclass(frozen=True, slots=True)
class PointUpdate:
    """One point of one accepted frame, named through the session's birth."""

    gateway: str
    session: str
    seq: int
    device: str
    point: str
    index: int
    ts: float
    value: float
    estimate: float
    score: float
    alarm: Alarm
    quality: Quality
    unit: str
    replay: bool

    @property
    def id(self) -> str:
        """Return the gateway-wide point id ``device/point``."""
        return point_id(self.device, self.point)


@dataclass(frozen=True, slots=True)
class MirrorStats:
    """Counters since the mirror was created; ``errors`` counts dropped messages by kind.

    ``undecodable`` counts frames whose deltas refer to state lost to a gap: they wait for
    the snapshot that follows a rebirth.
    """

    frames: int
    duplicates: int
    gaps: int
    unknown_session: int
    stale: int
    undecodable: int
    births: int
    statuses: int
    events: int
    errors: dict[str, int]


class Seen(enum.Enum):
    """What a sequence number is to a :class:`SeqWindow`."""

    NEW = "new"
    GAP = "gap"  # new, and beyond highest + 1: frames before it are missing (so far)
    DUPLICATE = "duplicate"
    STALE = "stale"  # behind the window: seen long ago, or a hole that was given up on


class SeqWindow:
    """Seqs seen in one session: all up to ``floor``, plus at most ``window`` seqs above it."""

    __slots__ = ("_above", "_complete", "floor", "highest", "window")

    def __init__(self, window: int = 1024) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self.floor = -1  # every seq <= floor is seen or given up
        self.highest = -1
        self._complete = -1  # every seq <= _complete was actually seen
        self._above: set[int] = set()

    def add(self, seq: int) -> Seen:
        """Record ``seq`` and say whether it is new."""
        if seq in self._above or seq <= self._complete:
            return Seen.DUPLICATE
        if seq <= self.floor:
            return Seen.STALE
        gap = seq > self.highest + 1
        self.highest = max(self.highest, seq)
        self._above.add(seq)
        if self.highest - self.floor > self.window:  # give up on the oldest holes
            new_floor = self.highest - self.window
            if new_floor - self.floor > len(self._above):
                self._above = {s for s in self._above if s > new_floor}
            else:
                for s in range(self.floor + 1, new_floor + 1):
                    self._above.discard(s)
            self.floor = new_floor
        complete = self.floor == self._complete
        while self.floor + 1 in self._above:
            self.floor += 1
            self._above.remove(self.floor)
        if complete:
            self._complete = self.floor
        return Seen.GAP if gap else Seen.NEW

    def __len__(self) -> int:
        return len(self._above)


class _Gateway:
    __slots__ = (
        "asked",
        "births",
        "current",
        "current_ids",
        "decoders",
        "state",
        "status",
        "windows",
    )

    def __init__(self) -> None:
        self.births: OrderedDict[str, Birth] = OrderedDict()  # by arrival, oldest first
        self.windows: dict[str, SeqWindow] = {}
        self.decoders: dict[str, FrameDecoder] = {}
        self.current: Birth | None = None  # the newest birth (by its ts)
        self.current_ids: frozenset[str] = frozenset()
        self.state: dict[str, PointUpdate] = {}
        self.status: Status | None = None
        self.asked: OrderedDict[str, None] = OrderedDict()  # sessions a rebirth was asked for


class Mirror:
    """Every gateway's current twin state, rebuilt from births, status and frames."""

    def __init__(
        self,
        prefix: str = DEFAULT_PREFIX,
        on_rebirth_needed: Callable[[str], None] | None = None,
        *,
        sessions_per_gateway: int = 16,
        dedup_window: int = 1024,
        max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
    ) -> None:
        if sessions_per_gateway < 1 or dedup_window < 1:
            raise ValueError("sessions_per_gateway and dedup_window must be >= 1")
        self.prefix = validate_prefix(prefix)
        self._on_rebirth = on_rebirth_needed
        self._max_sessions = sessions_per_gateway
        self._window = dedup_window
        self._max_decompressed = max_decompressed
        self._gateways: dict[str, _Gateway] = {}
        self._counts = dict.fromkeys(
            (
                "frames",
                "duplicates",
                "gaps",
                "unknown_session",
                "stale",
                "undecodable",
                "births",
                "statuses",
                "events",
            ),
            0,
        )
        self._errors: dict[str, int] = {}

    def subscriptions(self) -> list[str]:
        """Return the topic filters to subscribe to, in order."""
        return subscriptions(self.prefix)

    def feed(self, topic: str, payload: bytes) -> list[PointUpdate]:
        """Take one message; return the updates of an accepted frame. Never raises on bad input."""
        parsed = parse_topic(self.prefix, topic)
        if parsed is None:
            self._error("topic")
            return []
        gateway, kind = parsed
        if kind == "frames":
            updates, rebirth = self._frame(gateway, payload)
            if rebirth and self._on_rebirth is not None:
                self._on_rebirth(gateway)
            return updates
        if kind in ("birth", "status") and not payload:
            return []  # an empty retained message clears the topic
        if kind == "birth":
            self._birth(gateway, payload)
        elif kind == "status":
            self._status(gateway, payload)
        elif kind == "events":
            self._event(gateway, payload)
        return []  # commands are for gateways

    def state(self, gateway: str) -> dict[str, PointUpdate]:
        """Return the latest update of each point of ``gateway``, keyed ``device/point``."""
        gw = self._gateways.get(gateway)
        return dict(gw.state) if gw else {}

    def status(self, gateway: str) -> Status | None:
        """Return the latest status of ``gateway``."""
        gw = self._gateways.get(gateway)
        return gw.status if gw else None

    def birth(self, gateway: str, session: str | None = None) -> Birth | None:
        """Return the kept birth of ``session``, or the gateway's newest birth."""
        gw = self._gateways.get(gateway)
        if gw is None:
            return None
        return gw.current if session is None else gw.births.get(session)

    def gateways(self) -> list[str]:
        """Return the gateways seen so far, sorted."""
        return sorted(self._gateways)

    def stats(self) -> MirrorStats:
        """Return a snapshot of the counters."""
        return MirrorStats(**self._counts, errors=dict(self._errors))

    # ------------------------------------------------------------ per kind

    def _frame(self, gateway: str, payload: bytes) -> tuple[list[PointUpdate], bool]:
        """Return the frame's updates and whether a rebirth should be asked for now."""
        try:
            frame = unpack_frame(payload, max_decompressed=self._max_decompressed)
        except PayloadError:
            self._error("frame")
            return [], False
        if frame.gateway != gateway:
            self._error("mismatch")
            return [], False
        gw = self._gateway(gateway)
        birth = gw.births.get(frame.session)
        if birth is None:
            self._counts["unknown_session"] += 1
            return [], self._ask(gw, frame.session)
        if frame.index.size and frame.index.max() >= len(birth.points):
            self._error("index")
            return [], self._ask(gw, frame.session)
        window = gw.windows.setdefault(frame.session, SeqWindow(self._window))
        seen = window.add(frame.seq)
        if seen is Seen.DUPLICATE or seen is Seen.STALE:
            self._counts["duplicates" if seen is Seen.DUPLICATE else "stale"] += 1
            return [], False
        if seen is Seen.GAP:
            self._counts["gaps"] += 1
        decoder = gw.decoders.get(frame.session)
        if decoder is None:
            decoder = gw.decoders[frame.session] = FrameDecoder(birth.points)
        synced = decoder.synced
        try:
            batch = decoder.decode(frame)
        except PayloadError:
            self._error("frame")
            return [], synced and not decoder.synced
        lost = synced and not decoder.synced  # ask once per loss of sync
        if batch is None:
            self._counts["undecodable"] += 1
            return [], lost
        self._counts["frames"] += 1
        updates = _updates(birth, frame, batch)
        for u in updates:
            key = u.id
            old = gw.state.get(key)
            if key in gw.current_ids and (old is None or u.ts >= old.ts):
                gw.state[key] = u
        return updates, lost

    def _birth(self, gateway: str, payload: bytes) -> None:
        try:
            birth = decode_birth(payload)
        except PayloadError:
            self._error("birth")
            return
        if birth.gateway != gateway:
            self._error("mismatch")
            return
        gw = self._gateway(gateway)
        self._counts["births"] += 1
        old_birth = gw.births.get(birth.session)
        if old_birth is not None and old_birth.points != birth.points:
            gw.decoders.pop(birth.session, None)  # a new table: old references mean nothing
        gw.births[birth.session] = birth
        gw.births.move_to_end(birth.session)
        gw.asked.pop(birth.session, None)
        cur = gw.current
        if cur is None or cur.session == birth.session or birth.ts >= cur.ts:
            gw.current = birth
            gw.current_ids = frozenset(p.id for p in birth.points)
            gw.state = {k: u for k, u in gw.state.items() if k in gw.current_ids}
        keep = gw.current.session if gw.current else None
        while len(gw.births) > self._max_sessions:
            oldest = next(s for s in gw.births if s != keep)
            del gw.births[oldest]
            gw.windows.pop(oldest, None)
            gw.decoders.pop(oldest, None)

    def _status(self, gateway: str, payload: bytes) -> None:
        try:
            status = decode_status(payload)
        except PayloadError:
            self._error("status")
            return
        gw = self._gateway(gateway)
        self._counts["statuses"] += 1
        old = gw.status
        # A will of an older session can arrive after the new session's "online".
        if old is None or old.session == status.session or status.ts >= old.ts:
            gw.status = status

    def _event(self, gateway: str, payload: bytes) -> None:
        try:
            event = decode_event(payload)
        except PayloadError:
            self._error("event")
            return
        if event["gateway"] != gateway:
            self._error("mismatch")
            return
        self._counts["events"] += 1

    # ------------------------------------------------------------ helpers

    def _gateway(self, gateway: str) -> _Gateway:
        gw = self._gateways.get(gateway)
        if gw is None:
            gw = self._gateways[gateway] = _Gateway()
        return gw

    def _ask(self, gw: _Gateway, session: str) -> bool:
        """Return True the first time a rebirth is needed for ``session``."""
        if session in gw.asked:
            return False
        gw.asked[session] = None
        if len(gw.asked) > _ASKED_PER_GATEWAY:
            gw.asked.popitem(last=False)
        return True

    def _error(self, kind: str) -> None:
        self._errors[kind] = self._errors.get(kind, 0) + 1


def _updates(birth: Birth, frame: WireFrame, b: TwinBatch) -> list[PointUpdate]:
    columns = zip(
        b.index.tolist(),
        b.ts.tolist(),
        b.value.tolist(),
        b.estimate.tolist(),
        b.score.tolist(),
        b.alarm.tolist(),
        b.quality.tolist(),
        strict=True,
    )
    return [
        PointUpdate(
            gateway=frame.gateway,
            session=frame.session,
            seq=frame.seq,
            device=birth.points[i].device,
            point=birth.points[i].point,
            index=i,
            ts=ts,
            value=value,
            estimate=estimate,
            score=score,
            alarm=Alarm(alarm),
            quality=Quality(quality),
            unit=birth.points[i].unit,
            replay=frame.replay,
        )
        for i, ts, value, estimate, score, alarm, quality in columns
    ]
