"""Modbus device driver: coalesced reads, typed decoding, per-request partial results, writes.

String points carry no number: their slot in a PollResult is NaN with quality GOOD once
read, and the text is in :attr:`ModbusDevice.texts` (docs/modbus-points.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from edgetwin.config.modbus import BIT_TABLES, ModbusDeviceConfig, ModbusPointConfig, Table
from edgetwin.core.types import Quality
from edgetwin.drivers.base import PollResult, scaled
from edgetwin.errors import (
    DeviceExceptionError,
    EdgetwinError,
    ProtocolError,
    TransientError,
)
from edgetwin.protocols.modbus.codec import (
    ValueType,
    WordDecoder,
    decode_string,
    encode,
    encode_string,
    set_bit,
)
from edgetwin.protocols.modbus.plan import ReadRequest, Span, plan_reads
from edgetwin.transports.modbus_tcp import ModbusLink

log = logging.getLogger(__name__)

_TABLES: tuple[Table, ...] = ("coil", "discrete", "holding", "input")


class WriteRejectedError(EdgetwinError, ValueError):
    """A write refused before it reached the bus: read-only point, value out of range or type."""


_GOOD, _STALE, _COMM_FAIL = int(Quality.GOOD), int(Quality.STALE), int(Quality.COMM_FAIL)
_NO_ARRAY, _NO_QUALITY = np.empty(0), np.empty(0, np.uint16)  # placeholders, never written
_DEVICE_ERROR, _DECODE_ERROR = int(Quality.DEVICE_ERROR), int(Quality.DECODE_ERROR)


class _PointReader:
    """One point's words → (value, quality), everything that does not change resolved once."""

    __slots__ = ("bit", "count", "decoder", "key", "point", "text")

    def __init__(self, key: int, point: ModbusPointConfig) -> None:
        self.key = key
        self.point = point
        self.count = point.count
        self.text = point.type == "string"
        self.bit = -1 if point.table in BIT_TABLES else point.bit  # None: a number
        numeric = not self.text and point.table not in BIT_TABLES and point.type != "bool"
        self.decoder = WordDecoder(cast(ValueType, point.type), point.order) if numeric else None

    def read(self, words: list[int], texts: dict[int, str]) -> tuple[float, int]:
        """The point's value and quality from its ``words``; a string goes to ``texts``."""
        p = self.point
        try:
            if self.decoder is not None:
                raw = self.decoder(words)
            elif self.text:
                texts[self.key] = decode_string(words, p.order)
                return math.nan, _GOOD
            elif self.bit == -1:
                raw = float(words[0])
            else:
                raw = float(words[0] >> cast(int, self.bit) & 1)
        except ValueError:
            return math.nan, _DECODE_ERROR
        value, quality = scaled(raw, p.scale, p.offset, p.range)
        return value, int(quality)


@dataclass(frozen=True, slots=True)
class _PollPlan:
    """The requests of one set of points, each with the readers of the spans it serves."""

    requests: list[tuple[Table, ReadRequest, tuple[tuple[int, _PointReader], ...]]]
    quality: list[int]  # before any answer: COMM_FAIL where a request will read, else STALE


class ModbusDevice:
    """Reads and writes one device's points through a shared link in the fewest requests."""

    def __init__(self, cfg: ModbusDeviceConfig, link: ModbusLink) -> None:
        self.cfg = cfg
        self.link = link
        self.texts: dict[int, str] = {}  # point index -> last text read (string points)
        self._forbidden = {
            table: [(cfg.wire_address(table, a), cfg.wire_address(table, b)) for a, b in ranges]
            for table, ranges in cfg.forbidden.items()
        }
        self._readers = [_PointReader(i, p) for i, p in enumerate(cfg.points)]
        self.plan = self._plan(range(len(cfg.points)))
        self._all = self._compile(self.plan)
        self._plans: dict[tuple[int, ...], _PollPlan] = {}

    def _plan(self, keys: Sequence[int]) -> list[tuple[Table, ReadRequest]]:
        """Coalesced requests for the points ``keys``, table by table."""
        cfg = self.cfg
        plan: list[tuple[Table, ReadRequest]] = []
        for table in _TABLES:
            spans = [
                Span(i, cfg.wire_address(table, p.address), p.count)
                for i in keys
                if (p := cfg.points[i]).table == table
            ]
            bits = table in BIT_TABLES
            limit = cfg.max_bits if bits else cfg.max_registers
            # The gap costs the same bytes in either table: 16 bits per register.
            gap = -1 if cfg.one_point_per_request else cfg.max_gap * (16 if bits else 1)
            forbidden = self._forbidden.get(table, ())
            requests = plan_reads(spans, max_count=limit, max_gap=gap, forbidden=forbidden)
            plan += [(table, r) for r in requests]
        return plan

    def _compile(self, plan: list[tuple[Table, ReadRequest]]) -> _PollPlan:
        quality = [_STALE] * len(self.cfg.points)
        requests = []
        for table, req in plan:
            spans = []
            for span in req.spans:
                quality[span.key] = _COMM_FAIL
                spans.append((span.address - req.address, self._readers[span.key]))
            requests.append((table, req, tuple(spans)))
        return _PollPlan(requests, quality)

    @property
    def name(self) -> str:
        """The device's configured name."""
        return self.cfg.name

    async def _read(self, table: Table, address: int, count: int) -> list[int]:
        return await self.link.read(
            table,
            address,
            count,
            self.cfg.unit,
            answer_within=self.cfg.timeout,
            pause=self.cfg.request_pause,
        )

    async def poll(self, points: Sequence[int] | None = None) -> PollResult:
        """Read ``points`` (all when None); a failed request marks only its own points bad."""
        if points is None:
            plan = self._all
        else:
            key = tuple(sorted(points))
            plan = self._plans.get(key) or self._plans.setdefault(
                key, self._compile(self._plan(key))
            )
        # Plain lists while decoding (a handful of points: numpy per element costs more).
        values = [math.nan] * len(self.cfg.points)
        quality = plan.quality.copy()
        result = PollResult(_NO_ARRAY, _NO_QUALITY, requests=len(plan.requests))  # set below
        texts = self.texts
        for table, req, spans in plan.requests:
            try:
                words = await self._read(table, req.address, req.count)
            except DeviceExceptionError as exc:
                result.fail(exc)
                for _, r in spans:
                    quality[r.key] = _DEVICE_ERROR
                continue
            except ProtocolError as exc:
                result.fail(exc)
                for _, r in spans:
                    quality[r.key] = _DECODE_ERROR
                continue
            except TransientError as exc:
                # The link is down or the unit is silent: the rest of this cycle would only
                # stack up timeouts on a shared bus, so its points stay COMM_FAIL.
                result.fail(exc, result.requests - result.failed - result.ok)
                break
            for off, r in spans:
                values[r.key], quality[r.key] = r.read(words[off : off + r.count], texts)
            result.ok += 1
        # Every quality without a number (NO_VALUE) came with NaN above.
        result.values = np.array(values, dtype=np.float64)
        result.quality = np.array(quality, dtype=np.uint16)
        return result

    # -- writes ---------------------------------------------------------------------------

    def _writable(self, point: int) -> ModbusPointConfig:
        if not 0 <= point < len(self.cfg.points):
            raise WriteRejectedError(f"device {self.name!r} has no point {point}")
        p = self.cfg.points[point]
        if p.table not in {"coil", "holding"}:
            raise WriteRejectedError(f"point {p.name!r} is in the read-only {p.table} table")
        return p

    async def write(self, point: int, value: float) -> None:
        """Write ``value`` (engineering units) to point ``point``; EdgetwinError if not done.

        Coils take FC05, one-register values FC06, longer values FC16 (FC15/FC16 always with
        ``write_multiple``). A bool in a register is read, changed and written back.
        """
        p = self._writable(point)
        if p.type == "string":
            raise WriteRejectedError(f"point {p.name!r} is a string: use write_text()")
        if not math.isfinite(value):
            raise WriteRejectedError(f"point {p.name!r}: cannot write {value}")
        if p.range is not None and not p.range[0] <= value <= p.range[1]:
            raise WriteRejectedError(f"point {p.name!r}: {value:g} is outside its range {p.range}")
        address = self.cfg.wire_address(p.table, p.address)
        single = not self.cfg.write_multiple
        if p.table == "coil":
            await self._send_coils(address, [value != 0], single)
        elif p.type == "bool":
            assert p.bit is not None  # the config requires it
            (word,) = await self._read("holding", address, 1)
            await self._send_registers(address, [set_bit(word, p.bit, value != 0)], single)
        else:
            try:
                words = encode((value - p.offset) / p.scale, cast(ValueType, p.type), p.order)
            except ValueError as exc:
                raise WriteRejectedError(f"point {p.name!r}: {exc}") from exc
            await self._send_registers(address, words, single)

    async def write_text(self, point: int, text: str) -> None:
        """Write ``text`` to string point ``point`` (FC16, NUL-padded to its length)."""
        p = self._writable(point)
        if p.type != "string" or p.length is None:
            raise WriteRejectedError(f"point {p.name!r} is not a string")
        try:
            words = encode_string(text, p.length, p.order)
        except ValueError as exc:
            raise WriteRejectedError(f"point {p.name!r}: {exc}") from exc
        await self._send_registers(self.cfg.wire_address(p.table, p.address), words, False)

    async def _send_registers(self, address: int, words: list[int], single: bool) -> None:
        await self.link.write_registers(
            address,
            words,
            self.cfg.unit,
            single=single,
            answer_within=self.cfg.timeout,
            pause=self.cfg.request_pause,
        )

    async def _send_coils(self, address: int, bits: list[bool], single: bool) -> None:
        await self.link.write_coils(
            address,
            bits,
            self.cfg.unit,
            single=single,
            answer_within=self.cfg.timeout,
            pause=self.cfg.request_pause,
        )
