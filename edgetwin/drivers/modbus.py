"""Modbus device driver: coalesced reads, typed decoding, per-request partial results, writes.

String points carry no number: their slot in a PollResult is NaN with quality GOOD once
read, and the text is in :attr:`ModbusDevice.texts` (docs/modbus-points.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import cast

import numpy as np

from edgetwin.config.modbus import BIT_TABLES, ModbusDeviceConfig, ModbusPointConfig, Table
from edgetwin.core.types import Quality
from edgetwin.drivers.base import NO_VALUE, PollResult, scaled
from edgetwin.errors import (
    DeviceExceptionError,
    EdgetwinError,
    ProtocolError,
    TransientError,
)
from edgetwin.protocols.modbus.codec import (
    ValueType,
    decode,
    decode_string,
    encode,
    encode_string,
    get_bit,
    set_bit,
)
from edgetwin.protocols.modbus.plan import ReadRequest, Span, plan_reads
from edgetwin.transports.modbus_tcp import ModbusLink

log = logging.getLogger(__name__)

_NO_VALUE = NO_VALUE
_TABLES: tuple[Table, ...] = ("coil", "discrete", "holding", "input")


class WriteRejectedError(EdgetwinError, ValueError):
    """A write refused before it reached the bus: read-only point, value out of range or type."""


def _scaled(point: ModbusPointConfig, raw: float) -> tuple[float, Quality]:
    return scaled(raw, point.scale, point.offset, point.range)


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
        self.plan = self._plan(range(len(cfg.points)))
        self._plans: dict[tuple[int, ...], list[tuple[Table, ReadRequest]]] = {}

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
        n = len(self.cfg.points)
        if points is None:
            plan = self.plan
        else:
            key = tuple(sorted(points))
            plan = self._plans.get(key) or self._plans.setdefault(key, self._plan(key))
        values = np.full(n, np.nan)
        quality = np.full(n, int(Quality.STALE), dtype=np.uint16)
        for _, req in plan:
            for span in req.spans:
                quality[span.key] = Quality.COMM_FAIL
        result = PollResult(values, quality, requests=len(plan))
        for table, req in plan:
            try:
                words = await self._read(table, req.address, req.count)
            except DeviceExceptionError as exc:
                result.fail(exc)
                for span in req.spans:
                    quality[span.key] = Quality.DEVICE_ERROR
                continue
            except ProtocolError as exc:
                result.fail(exc)
                for span in req.spans:
                    quality[span.key] = Quality.DECODE_ERROR
                continue
            except TransientError as exc:
                # The link is down or the unit is silent: the rest of this cycle would only
                # stack up timeouts on a shared bus, so its points stay COMM_FAIL.
                result.fail(exc, result.requests - result.failed - result.ok)
                break
            for span in req.spans:
                off = span.address - req.address
                values[span.key], quality[span.key] = self._decode(
                    span.key, words[off : off + span.count]
                )
            result.ok += 1
        values[(quality & _NO_VALUE) != 0] = np.nan
        return result

    def _decode(self, key: int, words: list[int]) -> tuple[float, Quality]:
        point = self.cfg.points[key]
        try:
            if point.type == "string":
                self.texts[key] = decode_string(words, point.order)
                return math.nan, Quality.GOOD
            if point.table in BIT_TABLES:
                raw = float(words[0])
            elif point.type == "bool":
                assert point.bit is not None  # the config requires it
                raw = float(get_bit(words[0], point.bit))
            else:
                raw = decode(words, cast(ValueType, point.type), point.order)
        except ValueError:
            return math.nan, Quality.DECODE_ERROR
        return _scaled(point, raw)

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
