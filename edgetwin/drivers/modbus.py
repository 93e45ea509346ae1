"""Modbus device driver: coalesced reads, typed decoding, per-request partial results."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from edgetwin.config.modbus import ModbusDeviceConfig, ModbusPointConfig
from edgetwin.core.types import Quality
from edgetwin.drivers.base import PollResult
from edgetwin.errors import DeviceExceptionError, ProtocolError, TransientError
from edgetwin.protocols.modbus.codec import REGISTER_COUNT, decode
from edgetwin.protocols.modbus.plan import MAX_BITS, ReadRequest, Span, plan_reads
from edgetwin.transports.modbus_tcp import ModbusTcpLink, Table

log = logging.getLogger(__name__)

# Qualities that leave no usable number; OUT_OF_RANGE keeps its value for the record.
_NO_VALUE = Quality.COMM_FAIL | Quality.DEVICE_ERROR | Quality.DECODE_ERROR | Quality.NOT_FINITE


def _scaled(point: ModbusPointConfig, raw: float) -> tuple[float, Quality]:
    value = raw * point.scale + point.offset
    if not math.isfinite(value):
        return math.nan, Quality.NOT_FINITE
    if point.range is not None and not point.range[0] <= value <= point.range[1]:
        return value, Quality.OUT_OF_RANGE
    return value, Quality.GOOD


class ModbusDevice:
    """Reads one device's points through a shared link in the fewest requests."""

    def __init__(self, cfg: ModbusDeviceConfig, link: ModbusTcpLink) -> None:
        self.cfg = cfg
        self.link = link
        self.plan = self._plan(range(len(cfg.points)))
        self._plans: dict[tuple[int, ...], list[tuple[Table, ReadRequest]]] = {}

    def _plan(self, keys: Sequence[int]) -> list[tuple[Table, ReadRequest]]:
        """Coalesced requests for the points ``keys``, table by table."""
        plan: list[tuple[Table, ReadRequest]] = []
        for table in ("coil", "discrete", "holding", "input"):
            spans = [
                Span(i, p.address, REGISTER_COUNT[p.type])
                for i in keys
                if (p := self.cfg.points[i]).table == table
            ]
            limit = MAX_BITS if table in {"coil", "discrete"} else self.cfg.max_registers
            gap = self.cfg.max_gap * (16 if table in {"coil", "discrete"} else 1)
            plan += [(table, r) for r in plan_reads(spans, max_count=limit, max_gap=gap)]
        return plan

    @property
    def name(self) -> str:
        """The device's configured name."""
        return self.cfg.name

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
                words = await self.link.read(table, req.address, req.count, self.cfg.unit)
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
                point = self.cfg.points[span.key]
                off = span.address - req.address
                try:
                    if point.type == "bool":
                        raw = float(words[off])
                    else:
                        raw = decode(words[off : off + span.count], point.type, point.order)
                except ValueError:
                    quality[span.key] = Quality.DECODE_ERROR
                    continue
                values[span.key], q = _scaled(point, raw)
                quality[span.key] = q
            result.ok += 1
        values[(quality & _NO_VALUE) != 0] = np.nan
        return result
