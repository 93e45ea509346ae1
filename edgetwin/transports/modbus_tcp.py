"""Modbus client links: one pymodbus client per bus, transactions serialised, errors mapped.

pymodbus does the framing and PDUs; a link owns the connection, runs one transaction at a
time (an RS-485 line, and most TCP gateways to one, take no more) and maps pymodbus'
failures onto edgetwin's error tree so callers branch on the class. The framer is wrapped
so that a frame failing its check (bad CRC, undecodable PDU) ends the transaction at once
as a ProtocolError and is counted in ``corrupt_frames``, instead of surfacing as a timeout.
This module holds the base and the Modbus TCP link; RTU links are in ``modbus_serial``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import termios
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerBase, FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ModbusPDU

from edgetwin.errors import (
    ConnectionLostError,
    DeviceExceptionError,
    DeviceTimeoutError,
    ProtocolError,
)

Table = Literal["coil", "discrete", "holding", "input"]

log = logging.getLogger(__name__)

_READ_FC: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
# Modbus gateway exceptions: the gateway answered, the unit behind it did not.
GATEWAY_EXCEPTIONS = frozenset({0x0A, 0x0B})


class CorruptFrame(ModbusPDU):
    """Stands in for an answer whose frame failed its check; never sent."""

    function_code = 0


class _Checked:
    """Framer mixin: a frame that fails its check becomes a CorruptFrame for the waiter."""

    on_corrupt: Callable[[], None]
    _bad_crc = False

    def decode(self, data: bytes) -> tuple[int, int, int, bytes]:
        used, dev_id, tid, frame = super().decode(data)  # type: ignore[misc]
        # FramerRTU consumes a frame whose CRC fails and returns no payload.
        self._bad_crc = bool(used and not frame)
        return int(used), int(dev_id), int(tid), bytes(frame)

    def handleFrame(  # noqa: N802 - pymodbus' name
        self, data: bytes, exp_devid: int, exp_tid: int
    ) -> tuple[int, ModbusPDU | None]:
        self._bad_crc = False
        try:
            used, pdu = super().handleFrame(data, exp_devid, exp_tid)  # type: ignore[misc]
        except ModbusIOException:  # a well-framed answer whose PDU does not decode
            used, pdu = len(data), None
            self._bad_crc = True
        if pdu is None and self._bad_crc:
            self.on_corrupt()
            return int(used), CorruptFrame(dev_id=exp_devid, transaction_id=exp_tid)
        return int(used), pdu


class _CheckedSocketFramer(_Checked, FramerSocket):
    pass


class _CheckedRtuFramer(_Checked, FramerRTU):
    pass


def checked_framer(rtu: bool, on_corrupt: Callable[[], None]) -> FramerBase:
    """A client-side framer (RTU or MBAP) that reports corrupt frames to ``on_corrupt``."""
    framer: FramerBase = (_CheckedRtuFramer if rtu else _CheckedSocketFramer)(DecodePDU(False))
    framer.on_corrupt = on_corrupt  # type: ignore[attr-defined]
    return framer


class ModbusLink:
    """One bus: a pymodbus client, one transaction at a time, errors mapped; subclass per kind.

    Counters: ``transactions`` (requests sent), ``corrupt_frames`` (answers dropped for a bad
    CRC or undecodable bytes), ``timeouts``.
    """

    #: after a timeout, drop the connection (MBAP) or keep it (RTU framing has no ids).
    close_on_timeout = True
    rtu = False
    #: quiet time the line needs between two frames, s (RTU serial: 3.5 characters)
    silence = 0.0
    #: quiet time after a failed transaction, s, so a late answer goes by unmistaken
    failure_guard = 0.0

    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout
        self._lock = asyncio.Lock()
        self._client: ModbusBaseClient | None = None
        self._rx = False  # bytes arrived during the current transaction
        self._idle_at = -math.inf  # loop time the last transaction ended
        self._last_failed = False
        self.transactions = 0
        self.corrupt_frames = 0
        self.timeouts = 0

    def _new_client(self) -> ModbusBaseClient:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        """Where the link goes, for messages."""
        raise NotImplementedError  # pragma: no cover

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending and data:
            self._rx = True
        return data

    def _count_corrupt(self) -> None:
        self.corrupt_frames += 1

    async def _ensure_connected(self) -> ModbusBaseClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.close()
        client = self._new_client()
        client.ctx.framer = checked_framer(self.rtu, self._count_corrupt)
        # Dropping the link after N silent answers is our caller's policy, not pymodbus'.
        client.set_max_no_responses(2**30)
        try:
            ok = await client.connect()
        except (OSError, ModbusException, termios.error) as exc:
            # termios.error: the port refused the line settings (a pty may take only 8N1).
            client.close()
            raise ConnectionLostError(f"cannot connect to {self.describe()}: {exc}") from exc
        if not ok:
            client.close()
            raise ConnectionLostError(f"cannot connect to {self.describe()}")
        self._client = client
        return client

    async def _quiet(self, pause: float) -> None:
        """Keep the line quiet for what it needs before the next frame, and ``pause`` s."""
        gap = max(self.silence, pause, self.failure_guard if self._last_failed else 0.0)
        wait = self._idle_at + gap - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def transact(
        self,
        unit: int,
        what: str,
        call: Callable[[ModbusBaseClient], Awaitable[ModbusPDU]],
        *,
        answer_within: float | None = None,
        pause: float = 0.0,
    ) -> ModbusPDU:
        """Run one request; return the answer or raise a mapped edgetwin error.

        ``answer_within`` shortens the link's timeout for this request; ``pause`` is how long
        the line must have been quiet before it is sent (a slow device's quirk).
        """
        wait = self.timeout if answer_within is None else min(answer_within, self.timeout)
        async with self._lock:
            client = self._client
            if client is None or not client.connected:
                client = await self._ensure_connected()
            if pause > 0 or self.silence > 0 or self._last_failed:
                await self._quiet(pause)
            self.transactions += 1
            self._rx = False
            failed = True
            try:
                async with asyncio.timeout(wait):
                    rr = await call(client)
                failed = isinstance(rr, CorruptFrame)
            except (ModbusIOException, TimeoutError) as exc:
                if self.close_on_timeout:
                    # A late answer may still arrive and be mistaken for the next one.
                    self.close()
                if self._rx:  # bytes came, but never a frame: noise on the line
                    self.corrupt_frames += 1
                    raise ProtocolError(f"unit {unit}: garbled answer to {what}") from exc
                self.timeouts += 1
                raise DeviceTimeoutError(
                    f"unit {unit} at {self.describe()} did not answer {what} within {wait:g} s"
                ) from exc
            except (ConnectionException, OSError) as exc:
                self.close()
                raise ConnectionLostError(f"link to {self.describe()} lost: {exc}") from exc
            except ModbusException as exc:
                self.close()
                raise ProtocolError(f"bad answer from unit {unit}: {exc}") from exc
            finally:
                self._idle_at = asyncio.get_running_loop().time()
                self._last_failed = failed
        if isinstance(rr, CorruptFrame):
            raise ProtocolError(f"unit {unit}: corrupt frame (bad CRC or PDU) answering {what}")
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0))
            raise DeviceExceptionError(f"unit {unit} refused {what}: exception {code:02d}", code)
        return rr

    async def read(
        self,
        table: Table,
        address: int,
        count: int,
        unit: int,
        *,
        answer_within: float | None = None,
        pause: float = 0.0,
    ) -> list[int]:
        """Read ``count`` registers or bits (as 0/1) starting at ``address`` from ``unit``."""
        what = f"{table} {address}+{count}"

        def call(client: ModbusBaseClient) -> Awaitable[ModbusPDU]:
            kw: dict[str, Any] = {"count": count, "device_id": unit}
            if table == "holding":
                return client.read_holding_registers(address, **kw)
            if table == "input":
                return client.read_input_registers(address, **kw)
            if table == "coil":
                return client.read_coils(address, **kw)
            return client.read_discrete_inputs(address, **kw)

        rr = await self.transact(unit, what, call, answer_within=answer_within, pause=pause)
        if rr.function_code != _READ_FC[table]:
            raise ProtocolError(f"unit {unit} answered {what} with function {rr.function_code}")
        if table in {"coil", "discrete"}:
            bits = list(rr.bits)
            if len(bits) < count:
                raise ProtocolError(f"unit {unit} returned {len(bits)} bits, expected {count}")
            return [int(b) for b in bits[:count]]
        regs = list(rr.registers)
        if len(regs) != count:
            raise ProtocolError(f"unit {unit} returned {len(regs)} registers, expected {count}")
        return regs

    async def write_registers(
        self,
        address: int,
        words: Sequence[int],
        unit: int,
        *,
        single: bool = False,
        answer_within: float | None = None,
        pause: float = 0.0,
    ) -> None:
        """Write holding registers: FC06 when ``single`` and one word, else FC16."""
        words = [int(w) for w in words]
        fc06 = single and len(words) == 1
        what = f"{'FC06' if fc06 else 'FC16'} holding {address}+{len(words)}"

        def call(client: ModbusBaseClient) -> Awaitable[ModbusPDU]:
            if fc06:
                return client.write_register(address, words[0], device_id=unit)
            return client.write_registers(address, words, device_id=unit)

        rr = await self.transact(unit, what, call, answer_within=answer_within, pause=pause)
        echoed = list(rr.registers) == words if fc06 else rr.count == len(words)
        if rr.function_code != (6 if fc06 else 16) or rr.address != address or not echoed:
            raise ProtocolError(f"unit {unit}: answer to {what} does not confirm it")

    async def write_coils(
        self,
        address: int,
        bits: Sequence[bool],
        unit: int,
        *,
        single: bool = False,
        answer_within: float | None = None,
        pause: float = 0.0,
    ) -> None:
        """Write coils: FC05 when ``single`` and one bit, else FC15."""
        bits = [bool(b) for b in bits]
        fc05 = single and len(bits) == 1
        what = f"{'FC05' if fc05 else 'FC15'} coil {address}+{len(bits)}"

        def call(client: ModbusBaseClient) -> Awaitable[ModbusPDU]:
            if fc05:
                return client.write_coil(address, bits[0], device_id=unit)
            return client.write_coils(address, bits, device_id=unit)

        rr = await self.transact(unit, what, call, answer_within=answer_within, pause=pause)
        echoed = list(rr.bits[:1]) == bits if fc05 else rr.count == len(bits)
        if rr.function_code != (5 if fc05 else 15) or rr.address != address or not echoed:
            raise ProtocolError(f"unit {unit}: answer to {what} does not confirm it")

    def close(self) -> None:
        """Drop the connection; the next transaction reconnects."""
        if self._client is not None:
            self._client.close()
            self._client = None


class ModbusTcpLink(ModbusLink):
    """A Modbus TCP endpoint; safe to share between the devices (unit ids) behind it."""

    def __init__(self, host: str, port: int, *, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.host = host
        self.port = port

    def describe(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    def _new_client(self) -> ModbusBaseClient:
        # reconnect_delay=0: reconnecting is the caller's policy (backoff per device).
        return AsyncModbusTcpClient(
            self.host,
            port=self.port,
            timeout=self.timeout,
            retries=0,
            reconnect_delay=0,
            trace_packet=self._trace_packet,
        )
