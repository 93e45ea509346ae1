"""Serial sensor driver: line, NMEA or binary frames, polled by request or free-running.

Request/response (``poll`` set): each poll writes the request, then reads until every
requested point's field has arrived in a valid frame or the timeout expires. Bytes that
arrived before the request are parsed (to keep the parser in step) but their frames are
not the answer.

Free-running (no ``poll``): a reader task, started by :meth:`SerialSensor.start`, parses
everything the device sends and keeps each point's latest value. A poll returns the points
refreshed since they were last polled (GOOD, or DECODE_ERROR for an unparseable field) and
STALE for the others; when none was refreshed it waits up to the timeout for a frame, then
reports COMM_FAIL. The reader reopens a lost port after a capped, jittered backoff.

Malformed input never raises: the parser resynchronises and counts each kind of error
(see :meth:`SerialSensor.stats`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence

import numpy as np

from edgetwin.config.serial import (
    BinaryProtocolConfig,
    LineProtocolConfig,
    SerialBusConfig,
    SerialDeviceConfig,
    SerialPointConfig,
)
from edgetwin.core.backoff import Backoff
from edgetwin.core.types import Quality
from edgetwin.drivers.base import NO_VALUE, PollResult, scaled
from edgetwin.errors import (
    ConnectionLostError,
    DeviceTimeoutError,
    EdgetwinError,
    ProtocolError,
)
from edgetwin.protocols.serial.binary import BinaryParser
from edgetwin.protocols.serial.frame import Frame, FrameParser
from edgetwin.protocols.serial.line import LineParser
from edgetwin.protocols.serial.nmea import NmeaParser
from edgetwin.transports.serial_port import SerialPort

log = logging.getLogger(__name__)

_NO_VALUE = NO_VALUE
_REOPEN_BASE = 0.1  # s, first wait before reopening a lost port


def make_parser(cfg: SerialDeviceConfig) -> FrameParser:
    """The incremental parser for a device's protocol."""
    proto = cfg.protocol
    if isinstance(proto, LineProtocolConfig):
        return LineParser(
            proto.format,
            terminator=proto.terminator.encode(proto.encoding),
            encoding=proto.encoding,
            max_frame=cfg.max_frame,
        )
    if isinstance(proto, BinaryProtocolConfig):
        return BinaryParser(proto.layout, max_frame=cfg.max_frame)
    return NmeaParser(
        sentences=proto.sentences,
        talkers=proto.talkers,
        require_checksum=proto.require_checksum,
        max_frame=cfg.max_frame,
    )


def _scaled(point: SerialPointConfig, raw: float) -> tuple[float, Quality]:
    return scaled(raw, point.scale, point.offset, point.range)


class SerialSensor:
    """One sensor on its own serial port (the Device protocol, plus start/close/stats)."""

    def __init__(self, cfg: SerialDeviceConfig, bus: SerialBusConfig) -> None:
        self.cfg = cfg
        self.bus = bus
        self.port = SerialPort.from_config(bus)
        self.timeout = cfg.timeout if cfg.timeout is not None else bus.timeout
        self.request = cfg.poll_bytes
        self.parser = make_parser(cfg)
        n = len(cfg.points)
        self._values = np.full(n, np.nan)
        self._quality = np.full(n, int(Quality.STALE), dtype=np.uint16)
        self._fresh = np.zeros(n, dtype=bool)
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self._down: ConnectionLostError | None = None  # the reader's port is lost
        self._errors_at_poll = 0
        self.polls = 0
        self.failed_polls = 0

    @property
    def name(self) -> str:
        """The device's configured name."""
        return self.cfg.name

    @property
    def free_running(self) -> bool:
        """True when the device sends on its own (no poll request configured)."""
        return self.request is None

    def __repr__(self) -> str:
        mode = "free-running" if self.free_running else "request/response"
        return f"SerialSensor({self.name!r}, {self.cfg.protocol.kind}, {mode}, {self.port.port})"

    # -- lifetime -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the reader of a free-running device (the port opens in the background)."""
        if self.free_running and self._reader is None:
            self._reader = asyncio.create_task(self._read_loop(), name=f"serial:{self.name}")

    async def close(self) -> None:
        """Stop the reader and release the port; the sensor can be started again."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            async with self._changed:
                self._changed.notify_all()  # a poll waiting for frames ends now
        async with self._lock:
            await self.port.close()

    async def __aenter__(self) -> SerialSensor:
        """Start on entry."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close on exit."""
        await self.close()

    def stats(self) -> dict[str, int]:
        """Frames, parser errors by kind, port events and polls, as counters."""
        port = self.port
        return {
            **self.parser.counts.as_dict(),
            "polls": self.polls,
            "failed_polls": self.failed_polls,
            "opens": port.opens,
            "losses": port.losses,
            "timeouts": port.timeouts,
            "bytes_in": port.bytes_in,
            "bytes_out": port.bytes_out,
        }

    # -- polling ------------------------------------------------------------------------

    async def poll(self, points: Sequence[int] | None = None) -> PollResult:
        """Read ``points`` (indexes into the config's points; all when None)."""
        idx = np.arange(len(self.cfg.points)) if points is None else np.asarray(points, int)
        n = len(self.cfg.points)
        result = PollResult(
            np.full(n, np.nan), np.full(n, int(Quality.STALE), dtype=np.uint16), requests=1
        )
        result.quality[idx] = Quality.COMM_FAIL
        if self.free_running:
            await self._poll_latest(idx, result)
        else:
            await self._poll_request(idx, result)
        self.polls += 1
        if not result.answered:
            self.failed_polls += 1
        result.values[(result.quality & _NO_VALUE) != 0] = np.nan
        return result

    async def _poll_request(self, idx: np.ndarray, result: PollResult) -> None:
        assert self.request is not None
        need = {self.cfg.points[i].field for i in idx}
        got: dict[str, float | None] = {}  # field -> raw value, None: unparseable
        frames = 0
        async with self._lock:
            try:
                await self.port.open()
                stale = await self.port.read_pending()
                if stale:
                    self.parser.feed(stale)  # what came before the request is not the answer
                errors = self.parser.counts.errors
                await self.port.write(self.request)
                deadline = asyncio.get_running_loop().time() + self.timeout
                while not need <= got.keys():
                    left = deadline - asyncio.get_running_loop().time()
                    if left <= 0:
                        break
                    try:
                        chunk = await self.port.read(left)
                    except DeviceTimeoutError:
                        break
                    for frame in self.parser.feed(chunk):
                        # The answer is the first frames that cover the request, however
                        # the bytes were chunked; frames after them are not part of it.
                        if need <= got.keys():
                            break
                        frames += 1
                        got.update(frame.values)
                        got.update(dict.fromkeys(frame.bad))
            except ConnectionLostError as exc:
                self.parser.reset()
                result.fail(exc)
                return
            errors = self.parser.counts.errors - errors
        for i in idx:
            field = self.cfg.points[i].field
            if field in got:
                self._store(i, got[field], result.values, result.quality)
        if frames:
            result.ok = 1
            if not need <= got.keys():
                missing = ", ".join(sorted(need - got.keys()))
                result.errors.append(
                    DeviceTimeoutError(f"{self.name}: no value for {missing} in the answer")
                )
            return
        if errors:
            result.quality[idx] = Quality.DECODE_ERROR
            result.fail(ProtocolError(self._no_frame_reason(errors)))
        else:
            result.fail(DeviceTimeoutError(f"{self.name} did not answer within {self.timeout:g} s"))

    async def _poll_latest(self, idx: np.ndarray, result: PollResult) -> None:
        reader = self._reader
        if reader is None:
            raise RuntimeError(f"serial device {self.name!r} is free-running: call start() first")

        def ready() -> bool:
            return bool(self._fresh[idx].any()) or self._down is not None or reader.done()

        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await self._changed.wait_for(ready)
        if reader.cancelled() or self._reader is not reader:
            result.fail(ConnectionLostError(f"serial device {self.name!r} was closed"))
            return
        if reader.done():
            reader.result()  # the reader only ends by a bug: surface it
            raise RuntimeError(f"serial device {self.name!r}: reader stopped")
        fresh = idx[self._fresh[idx]]
        errors = self.parser.counts.errors - self._errors_at_poll
        self._errors_at_poll = self.parser.counts.errors
        if len(fresh):
            result.values[fresh] = self._values[fresh]
            result.quality[idx] = Quality.STALE
            result.quality[fresh] = self._quality[fresh]
            self._fresh[fresh] = False
            result.ok = 1
            return
        exc: EdgetwinError
        if self._down is not None:
            exc = self._down
        elif errors:
            result.quality[idx] = Quality.DECODE_ERROR
            exc = ProtocolError(self._no_frame_reason(errors))
        else:
            exc = DeviceTimeoutError(f"no frame from {self.name} within {self.timeout:g} s")
        result.fail(exc)

    def _no_frame_reason(self, errors: int) -> str:
        kinds = {k: v for k, v in self.parser.counts.as_dict().items() if v and k != "frames"}
        detail = ", ".join(f"{k}={v}" for k, v in kinds.items())
        return f"{self.name}: {errors} framing errors and no valid frame (totals: {detail})"

    def _store(self, i: int, raw: float | None, values: np.ndarray, quality: np.ndarray) -> None:
        if raw is None:
            values[i], quality[i] = math.nan, Quality.DECODE_ERROR
        else:
            values[i], quality[i] = _scaled(self.cfg.points[i], raw)

    # -- free-running reader ------------------------------------------------------------

    async def _read_loop(self) -> None:
        backoff = Backoff(_REOPEN_BASE, max(_REOPEN_BASE, self.cfg.probe_max))
        by_field: dict[str, list[int]] = {}
        for i, point in enumerate(self.cfg.points):
            by_field.setdefault(point.field, []).append(i)
        while True:
            try:
                if not self.port.is_open:
                    await self.port.open()
                    if self._down is not None:
                        log.info("%s: %s reopened", self.name, self.port.port)
                    self._down = None
                chunk = await self.port.read_forever()
            except ConnectionLostError as exc:
                if self._down is None:
                    log.warning("%s: %s", self.name, exc)
                self.parser.reset()
                self._down = exc
                async with self._changed:
                    self._changed.notify_all()
                await asyncio.sleep(backoff.next())
                continue
            frames = self.parser.feed(chunk)
            if frames:
                backoff.reset()
                for frame in frames:
                    self._apply(frame, by_field)
                async with self._changed:
                    self._changed.notify_all()

    def _apply(self, frame: Frame, by_field: dict[str, list[int]]) -> None:
        for field, raw in [*frame.values.items(), *dict.fromkeys(frame.bad).items()]:
            for i in by_field.get(field, ()):
                self._store(i, raw, self._values, self._quality)
                self._fresh[i] = True
