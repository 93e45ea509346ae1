"""Scoring: which expected reports the gateway made, how soon, and which alarms nobody expected.

Pure: takes the scenario and the recorded events (decoded event objects with their arrival
time on the scenario's timeline), no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from hil.scenario import Expect, FaultWindow, Scenario, Target

ALARM = 2


@dataclass(frozen=True)
class Event:
    """One decoded event and when it arrived, in seconds on the scenario's timeline."""

    t: float
    body: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The report's form of the event."""
        return {"t": round(self.t, 3), "event": self.body}


def is_raise(body: dict[str, Any]) -> bool:
    """An alarm event entering ALARM, or a device going offline."""
    if body.get("type") == "alarm":
        return body.get("alarm") == ALARM and body.get("previous") != ALARM
    return body.get("type") == "device" and body.get("state") == "offline"


def is_clear(body: dict[str, Any]) -> bool:
    """An alarm event leaving ALARM, or a device coming (back) online."""
    if body.get("type") == "alarm":
        return body.get("previous") == ALARM and body.get("alarm") != ALARM
    return body.get("type") == "device" and body.get("state") == "online"


def targets(expect: Target, body: dict[str, Any]) -> bool:
    """Whether the event concerns what ``expect`` watches (raise or clear alike)."""
    if expect.device is not None and body.get("device") != expect.device:
        return False
    if expect.kind == "offline":
        return body.get("type") == "device"
    if body.get("type") != "alarm":
        return False
    if expect.asset is not None:
        return body.get("asset") == expect.asset
    return body.get("point") == expect.point and "asset" not in body


Status = Literal["detected", "late", "missed"]


@dataclass(frozen=True)
class WindowResult:
    """One expectation of one fault window."""

    window: FaultWindow
    expect: Expect
    status: Status
    detected_at: float | None
    cleared_at: float | None

    @property
    def delay(self) -> float | None:
        """Seconds from the window start to the first matching report."""
        return None if self.detected_at is None else self.detected_at - self.window.start

    @property
    def cleared(self) -> bool:
        """Whether it was out of ALARM (or back online) by the end of the clear grace."""
        return self.cleared_at is not None

    @property
    def ok(self) -> bool:
        """Detected in time and, if the scenario asks for it, cleared."""
        return self.status == "detected" and (self.cleared or not self.expect.clears)

    def to_json(self) -> dict[str, Any]:
        """The report's form of the result."""
        w = self.window
        return {
            "fault": w.fault,
            "start": w.start,
            "end": w.end,
            "expect": self.expect.label,
            "within": self.expect.within,
            "must_clear": self.expect.clears,
            "status": self.status,
            "detected_at": self.detected_at,
            "delay": self.delay,
            "cleared": self.cleared,
            "cleared_at": self.cleared_at,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class Score:
    """Every window's results and the false alarms."""

    windows: list[WindowResult]
    false_alarms: list[Event]
    false_alarms_allowed: int
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every expectation met, false alarms within the allowance."""
        return all(r.ok for r in self.windows) and (
            len(self.false_alarms) <= self.false_alarms_allowed
        )


def score_window(
    window: FaultWindow, expect: Expect, events: list[Event], clear_grace: float
) -> WindowResult:
    """Detection and clearing of one expectation from the events in time order."""
    horizon = window.end + clear_grace
    mine = [e for e in events if targets(expect, e.body) and e.t <= horizon]
    raised = next((e for e in mine if e.t >= window.start and is_raise(e.body)), None)
    if raised is None:
        return WindowResult(window, expect, "missed", None, None)
    status: Status = "detected" if raised.t - window.start <= expect.within else "late"
    # The state at the end of the grace: the last raise or clear after the detection wins.
    cleared_at: float | None = None
    for e in mine:
        if e.t < raised.t:
            continue
        if is_clear(e.body):
            cleared_at = e.t
        elif is_raise(e.body):
            cleared_at = None
    return WindowResult(window, expect, status, raised.t, cleared_at)


def score(scenario: Scenario, events: list[Event]) -> Score:
    """Score ``events`` against every window of ``scenario``."""
    ordered = sorted(events, key=lambda e: e.t)
    results = [
        score_window(w, x, ordered, scenario.clear_grace) for w in scenario.faults for x in w.expect
    ]
    false = [e for e in ordered if is_raise(e.body) and not excused(scenario, e)]
    return Score(results, false, scenario.false_alarms_allowed)


def excused(scenario: Scenario, event: Event) -> bool:
    """Whether a raise lies in a window (start … end + clear grace) that accounts for it.

    A window accounts for every raise in it, or with ``only_expected`` for the raises of its
    expectations and of the targets it tolerates.
    """
    for w in scenario.faults:
        if not w.start <= event.t <= w.end + scenario.clear_grace:
            continue
        if not w.only_expected or any(targets(x, event.body) for x in (*w.expect, *w.tolerate)):
            return True
    return False
