"""Fault names, the ``NAME[:ARG]@START[+DURATION]`` spec grammar and a time-based schedule.

Communication faults change how the device answers; process faults change the physics.
Times are seconds since the device started; without ``+DURATION`` a fault stays active.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pymodbus.constants import ExcCodes

FaultKind = Literal["comm", "process"]

#: name -> what its argument is (None: takes no argument).
COMM_FAULTS: dict[str, str | None] = {
    "no_answer": None,
    "late": "seconds",
    "exception": "code",
    "garbage": None,
    "stuck": None,
    "disconnect": None,
}
PROCESS_FAULTS: dict[str, str | None] = {
    "cavitation": None,
    "bearing_wear": None,
    "sensor_stuck": "point",
    "drift": "point",
    "throttle": "fraction",
}
_KNOWN = {**COMM_FAULTS, **PROCESS_FAULTS}
_POINT = re.compile(r"[a-z_][a-z0-9_]*")
# START[+DURATION]; a '+' inside an exponent (1e+06) belongs to the number.
SPEC_TIMING = re.compile(r"(?P<start>[^+]*?(?:[eE]\+\d+)?)(?:\+(?P<duration>.*))?")


def spec_number(token: str, what: str, spec: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise ValueError(f"fault spec {spec!r}: {token!r} is not a number ({what})") from None
    if not math.isfinite(value):
        raise ValueError(f"fault spec {spec!r}: {token!r} is not finite ({what})")
    return value


@dataclass(frozen=True)
class Fault:
    """One fault, e.g. ``Fault("late", "2.5")`` or ``Fault("cavitation")``."""

    name: str
    arg: str | None = None

    @property
    def kind(self) -> FaultKind:
        """Whether the fault acts on communication or on the physics."""
        return "comm" if self.name in COMM_FAULTS else "process"

    @property
    def key(self) -> str:
        """The ``NAME[:ARG]`` text of the fault."""
        return self.name if self.arg is None else f"{self.name}:{self.arg}"

    @property
    def slot(self) -> str:
        """Faults with the same slot replace each other (one delay, one exception code)."""
        return self.name if self.kind == "comm" else self.key

    @property
    def seconds(self) -> float:
        """Delay of a ``late`` fault."""
        return float(self.arg or 0.0)

    @property
    def code(self) -> ExcCodes:
        """Exception code of an ``exception`` fault."""
        return ExcCodes(int(self.arg or 0))

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class ScheduledFault:
    """A fault active from ``start`` for ``duration`` seconds (None: until the end)."""

    fault: Fault
    start: float
    duration: float | None = None

    @property
    def end(self) -> float:
        """First instant at which the fault is no longer active."""
        return math.inf if self.duration is None else self.start + self.duration

    def active_at(self, t: float) -> bool:
        """Whether the fault is active at elapsed time t."""
        return self.start <= t < self.end

    def __str__(self) -> str:
        tail = "" if self.duration is None else f"+{self.duration:g}"
        return f"{self.fault}@{self.start:g}{tail}"


def parse_fault(text: str, *, spec: str | None = None) -> Fault:
    """Parse ``NAME[:ARG]`` (no timing), e.g. ``late:2.5``; ValueError names the bad token."""
    where = spec if spec is not None else text
    name, sep, arg = text.partition(":")
    if name not in _KNOWN:
        known = ", ".join(sorted(_KNOWN))
        raise ValueError(f"fault spec {where!r}: unknown fault {name!r} (known: {known})")
    kind = _KNOWN[name]
    if kind is None:
        if sep:
            raise ValueError(f"fault spec {where!r}: {name} takes no argument, got {arg!r}")
        return Fault(name)
    if not arg:
        raise ValueError(f"fault spec {where!r}: {name} needs an argument ({name}:<{kind}>)")
    if kind == "seconds":
        if spec_number(arg, "delay in seconds", where) <= 0.0:
            raise ValueError(f"fault spec {where!r}: delay {arg!r} must be > 0")
    elif kind == "fraction":
        fraction = spec_number(arg, "closed fraction of the valve", where)
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fault spec {where!r}: {name} fraction {arg!r} must lie in (0, 1)")
    elif kind == "code":
        codes = sorted(int(c) for c in ExcCodes)
        if not arg.isdigit() or int(arg) not in codes:
            raise ValueError(
                f"fault spec {where!r}: {arg!r} is not a Modbus exception code (one of {codes})"
            )
        arg = str(int(arg))
    elif not _POINT.fullmatch(arg):
        raise ValueError(f"fault spec {where!r}: {arg!r} is not a point name")
    return Fault(name, arg)


def parse_spec(spec: str) -> ScheduledFault:
    """Parse ``NAME[:ARG]@START[+DURATION]``; ValueError names the bad token."""
    body, at, timing = spec.strip().partition("@")
    if not at:
        raise ValueError(f"fault spec {spec!r}: missing '@START' (e.g. cavitation@20)")
    fault = parse_fault(body, spec=spec)
    match = SPEC_TIMING.fullmatch(timing)
    assert match is not None  # the pattern matches any text
    start_text, duration_text = match["start"], match["duration"]
    start = spec_number(start_text, "start time in seconds", spec)
    if start < 0.0:
        raise ValueError(f"fault spec {spec!r}: start {start_text!r} must be >= 0")
    duration: float | None = None
    if duration_text is not None:
        duration = spec_number(duration_text, "duration in seconds", spec)
        if duration <= 0.0:
            raise ValueError(f"fault spec {spec!r}: duration {duration_text!r} must be > 0")
    return ScheduledFault(fault, start, duration)


class FaultSchedule:
    """Which faults are active at elapsed time t."""

    def __init__(self, entries: Iterable[ScheduledFault] = ()) -> None:
        """Hold the entries sorted by start time."""
        self.entries: tuple[ScheduledFault, ...] = tuple(sorted(entries, key=lambda e: e.start))

    @classmethod
    def parse(cls, specs: Iterable[str]) -> FaultSchedule:
        """Build a schedule from spec strings."""
        return cls(parse_spec(spec) for spec in specs)

    def active(self, t: float) -> list[Fault]:
        """Faults active at t, one per slot (the latest-started entry wins)."""
        slots: dict[str, Fault] = {}
        for entry in self.entries:
            if entry.active_at(t):
                slots[entry.fault.slot] = entry.fault
        return list(slots.values())

    def transitions(self, t0: float, t1: float) -> list[float]:
        """Sorted times strictly between t0 and t1 at which some entry starts or ends."""
        edges = {e.start for e in self.entries} | {e.end for e in self.entries}
        return sorted(t for t in edges if t0 < t < t1)

    def __len__(self) -> int:
        return len(self.entries)
