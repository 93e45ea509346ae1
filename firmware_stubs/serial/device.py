"""A simulated serial sensor on a pty, run in an asyncio loop: free-running or polled.

Free-running, the sensor sends one emission every ``period`` seconds; polled, it answers
each occurrence of the poll bytes with one emission and sends nothing else. Faults (see
:mod:`firmware_stubs.serial.faults`) come from a time-based schedule or are injected by a
test. Every emission that went out whole is appended to :attr:`SerialStub.sent`, one
record per part (noise, cut frame, intact frame...), with the values a correct parser
decodes from that part.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from firmware_stubs.faults import Fault, FaultSchedule
from firmware_stubs.serial.faults import check_supported, parse_serial_fault
from firmware_stubs.serial.pty import Pty
from firmware_stubs.serial.sensors import Emission, Protocol, SensorModel, make_sensor

log = logging.getLogger(__name__)

Clock = Callable[[], float]
_DEFAULT_GARBAGE = 24
# Order of the extra parts of an emission; the intact frame always comes last.
_EXTRAS = ("garbage", "partial", "bad_checksum", "bad_value", "overlong")


@dataclass(frozen=True)
class SentRecord:
    """One part of an emission as sent: its kind ("frame" or a fault) and decodable values."""

    seq: int  # emission number
    kind: str
    values: dict[str, float] = field(default_factory=dict)
    data: bytes = field(default=b"", repr=False)
    t: float = 0.0  # unix time


class SerialStub:
    """One simulated sensor on its own pty."""

    def __init__(
        self,
        protocol: Protocol,
        *,
        seed: int = 0,
        period: float = 0.5,
        poll: bytes | None = None,
        schedule: FaultSchedule | None = None,
        link: Path | None = None,
        clock: Clock = time.monotonic,
        tick: float = 0.02,
        sent_maxlen: int = 10_000,
        sent_log: Path | None = None,
    ) -> None:
        """Configure; the pty exists only between :meth:`start` and :meth:`stop`."""
        if period <= 0:
            raise ValueError("period must be > 0")
        if poll is not None and not poll:
            raise ValueError("poll must not be empty (None: free-running)")
        self.protocol = protocol
        self.model: SensorModel = make_sensor(protocol, seed)
        self.period = period
        self.poll = poll
        self.schedule = schedule or FaultSchedule()
        for entry in self.schedule.entries:
            check_supported(protocol, entry.fault)
        self.pty = Pty(link)
        self.sent: deque[SentRecord] = deque(maxlen=sent_maxlen)
        self.sent_log = sent_log
        if sent_log is not None:
            sent_log.touch()
        self.requests = 0
        self.emissions = 0
        self._clock = clock
        self._tick = tick
        self._t0 = clock()
        self._t_model = 0.0
        self._next_emit = 0.0
        self._manual: dict[str, Fault] = {}
        self._rx = bytearray()
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading: int | None = None  # the master fd registered with the loop

    # -- lifetime -----------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The slave tty the gateway opens (changes after an unplug)."""
        return self.pty.path

    async def start(self) -> None:
        """Open the pty and start sending (free-running) or listening (polled)."""
        if self._ticker is not None:
            raise RuntimeError("SerialStub already started")
        self._loop = asyncio.get_running_loop()
        self._sync_link()  # stays unplugged (no path yet) if an unplug is active from 0 s
        self._ticker = asyncio.create_task(self._run(), name=f"serial-stub:{self.protocol}")

    async def stop(self) -> None:
        """Stop sending, close the pty and remove the link."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        self._unplug()
        self.pty.unlink()

    async def __aenter__(self) -> SerialStub:
        """Start on entry."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop on exit."""
        await self.stop()

    # -- faults -------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds since the stub was created, on its clock."""
        return self._clock() - self._t0

    def active_faults(self) -> dict[str, Fault]:
        """Scheduled and injected faults active now, by name (injected ones win)."""
        faults = {f.name: f for f in self.schedule.active(self.elapsed())}
        faults.update(self._manual)
        return faults

    def inject(self, fault: str | Fault) -> None:
        """Activate a fault now until cleared, e.g. ``inject("garbage:40")``."""
        parsed = parse_serial_fault(fault) if isinstance(fault, str) else fault
        check_supported(self.protocol, parsed)
        self._manual[parsed.name] = parsed
        self._sync_link()

    def clear(self, fault: str | None = None) -> None:
        """Clear an injected fault by name (all injected faults if None)."""
        if fault is None:
            self._manual.clear()
        else:
            self._manual.pop(fault.partition(":")[0], None)
        self._sync_link()

    def frames(self) -> list[SentRecord]:
        """The intact frames sent so far."""
        return [r for r in self.sent if r.kind == "frame"]

    # -- the pty ------------------------------------------------------------------------

    def _sync_link(self) -> None:
        unplugged = "unplug" in self.active_faults()
        if unplugged and self.pty.is_open:
            log.info("unplugging %s", self.pty.path)
            self._unplug()
        elif not unplugged and not self.pty.is_open and self._loop is not None:
            self.pty.open()
            self._rx.clear()
            self._reading = self.pty.master
            assert self._reading is not None
            self._loop.add_reader(self._reading, self._readable)
            log.info("plugged in at %s", self.pty.path)

    def _unplug(self) -> None:
        if self._reading is not None and self._loop is not None:
            self._loop.remove_reader(self._reading)
        self._reading = None
        self.pty.close()

    def _readable(self) -> None:
        data = self.pty.read()
        if self.poll is None or not data:
            return
        self._rx += data
        while (at := self._rx.find(self.poll)) >= 0:
            del self._rx[: at + len(self.poll)]
            self.requests += 1
            self._emit()
        del self._rx[: max(0, len(self._rx) - len(self.poll) + 1)]  # keep a possible prefix

    async def _run(self) -> None:
        while True:
            self._sync_link()
            if self.poll is None and self.elapsed() >= self._next_emit:
                self._emit()
                self._next_emit = max(self._next_emit + self.period, self.elapsed())
            await asyncio.sleep(self._tick)

    # -- sending ------------------------------------------------------------------------

    def _emit(self) -> None:
        faults = self.active_faults()
        if "silence" in faults or not self.pty.is_open:
            return
        now = self.elapsed()
        self.model.step(max(0.0, now - self._t_model))
        self._t_model = now
        parts: list[tuple[str, Emission]] = []
        for name in _EXTRAS:
            if name not in faults:
                continue
            if name == "garbage":
                arg = faults[name].arg
                parts.append((name, self.model.garbage(int(arg) if arg else _DEFAULT_GARBAGE)))
            else:
                parts.append((name, getattr(self.model, name)()))
        parts.append(("frame", self.model.frame()))
        if not self.pty.write(b"".join(e.data for _, e in parts)):
            return
        self.emissions += 1
        stamp = time.time()
        records = [SentRecord(self.emissions, k, e.values, e.data, stamp) for k, e in parts]
        self.sent.extend(records)
        if self.sent_log is not None:
            with self.sent_log.open("a", encoding="utf-8") as fh:
                for r in records:
                    row = {"t": r.t, "seq": r.seq, "kind": r.kind, "values": r.values}
                    fh.write(json.dumps({**row, "hex": r.data.hex()}) + "\n")
