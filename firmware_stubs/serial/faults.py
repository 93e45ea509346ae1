"""Faults of the serial stubs, in the shared ``NAME[:ARG]@START[+DURATION]`` grammar.

While a fault is active each emission (a free-running cycle, or the answer to a poll)
changes: ``garbage[:N]`` sends N noise bytes (default 24) first, ``partial`` a frame cut
short, ``bad_checksum`` a frame with a wrong checksum, ``bad_value`` a frame with a field
that does not parse, ``overlong`` a frame longer than the gateway's default ``max_frame``
(256 bytes); each is followed by the intact frame. ``silence`` sends nothing and ignores
polls; ``unplug`` closes the pty (the port vanishes) and opens a new one when it ends.
"""

from __future__ import annotations

from firmware_stubs.faults import SPEC_TIMING, Fault, ScheduledFault, spec_number

#: name -> what its argument is (None: takes no argument).
SERIAL_FAULTS: dict[str, str | None] = {
    "garbage": "bytes",
    "partial": None,
    "bad_checksum": None,
    "bad_value": None,
    "overlong": None,
    "silence": None,
    "unplug": None,
}
#: Faults a protocol cannot show (it has no checksum).
UNSUPPORTED: dict[str, frozenset[str]] = {"line": frozenset({"bad_checksum"})}


def parse_serial_fault(text: str, *, spec: str | None = None) -> Fault:
    """Parse ``NAME[:ARG]``, e.g. ``garbage:40``; ValueError names the bad token."""
    where = spec if spec is not None else text
    name, sep, arg = text.partition(":")
    if name not in SERIAL_FAULTS:
        known = ", ".join(SERIAL_FAULTS)
        raise ValueError(f"fault spec {where!r}: unknown serial fault {name!r} (known: {known})")
    if SERIAL_FAULTS[name] is None:
        if sep:
            raise ValueError(f"fault spec {where!r}: {name} takes no argument, got {arg!r}")
        return Fault(name)
    if not sep:
        return Fault(name)
    if not arg.isdigit() or not 1 <= int(arg) <= 4096:
        raise ValueError(f"fault spec {where!r}: {name} takes a byte count 1..4096, got {arg!r}")
    return Fault(name, str(int(arg)))


def parse_serial_spec(spec: str) -> ScheduledFault:
    """Parse ``NAME[:ARG]@START[+DURATION]``; ValueError names the bad token."""
    body, at, timing = spec.strip().partition("@")
    if not at:
        raise ValueError(f"fault spec {spec!r}: missing '@START' (e.g. garbage@5)")
    fault = parse_serial_fault(body, spec=spec)
    match = SPEC_TIMING.fullmatch(timing)
    assert match is not None  # the pattern matches any text
    start = spec_number(match["start"], "start time in seconds", spec)
    if start < 0.0:
        raise ValueError(f"fault spec {spec!r}: start {match['start']!r} must be >= 0")
    duration: float | None = None
    if match["duration"] is not None:
        duration = spec_number(match["duration"], "duration in seconds", spec)
        if duration <= 0.0:
            raise ValueError(f"fault spec {spec!r}: duration {match['duration']!r} must be > 0")
    return ScheduledFault(fault, start, duration)


def check_supported(protocol: str, fault: Fault) -> None:
    """Raise ValueError if ``protocol`` cannot show ``fault``."""
    if fault.name in UNSUPPORTED.get(protocol, frozenset()):
        raise ValueError(
            f"the {protocol} protocol has no checksum: {fault.name} does not apply "
            "(bad_value corrupts a field instead)"
        )
