"""Modbus TCP client link: one connection per endpoint, transactions serialised.

pymodbus does the framing and PDUs; this module owns the connection, serialises
transactions (one in flight per endpoint, as most TCP gateways to RS-485 require) and maps
pymodbus' failures onto edgetwin's error tree so callers branch on the class.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from edgetwin.errors import (
    ConnectionLostError,
    DeviceExceptionError,
    DeviceTimeoutError,
    ProtocolError,
)

Table = Literal["coil", "discrete", "holding", "input"]

log = logging.getLogger(__name__)


class ModbusTcpLink:
    """A Modbus TCP endpoint; safe to share between the devices (unit ids) behind it."""

    def __init__(self, host: str, port: int, *, timeout: float) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | None = None
        self.transactions = 0

    def __repr__(self) -> str:
        return f"ModbusTcpLink({self.host}:{self.port})"

    async def _ensure_connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.close()
        # reconnect_delay=0: reconnecting is the caller's policy (backoff per device).
        client = AsyncModbusTcpClient(
            self.host, port=self.port, timeout=self.timeout, retries=0, reconnect_delay=0
        )
        try:
            ok = await client.connect()
        except (OSError, ModbusException) as exc:
            client.close()
            raise ConnectionLostError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        if not ok:
            client.close()
            raise ConnectionLostError(f"cannot connect to {self.host}:{self.port}")
        self._client = client
        return client

    async def read(self, table: Table, address: int, count: int, unit: int) -> list[int]:
        """Read ``count`` registers or bits (as 0/1) starting at ``address`` from ``unit``."""
        async with self._lock:
            client = await self._ensure_connected()
            self.transactions += 1
            try:
                if table == "holding":
                    rr = await client.read_holding_registers(address, count=count, device_id=unit)
                elif table == "input":
                    rr = await client.read_input_registers(address, count=count, device_id=unit)
                elif table == "coil":
                    rr = await client.read_coils(address, count=count, device_id=unit)
                else:
                    rr = await client.read_discrete_inputs(address, count=count, device_id=unit)
            except (ModbusIOException, TimeoutError) as exc:
                # A late answer may still arrive and be mistaken for the next one: start clean.
                self.close()
                raise DeviceTimeoutError(
                    f"unit {unit} at {self.host}:{self.port} did not answer "
                    f"{table} {address}+{count} within {self.timeout:g} s"
                ) from exc
            except (ConnectionException, OSError) as exc:
                self.close()
                raise ConnectionLostError(f"link to {self.host}:{self.port} lost: {exc}") from exc
            except ModbusException as exc:
                self.close()
                raise ProtocolError(f"bad answer from unit {unit}: {exc}") from exc
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0))
            raise DeviceExceptionError(
                f"unit {unit} refused {table} {address}+{count}: exception {code:02d}", code
            )
        if table in {"coil", "discrete"}:
            bits = list(rr.bits)
            if len(bits) < count:
                raise ProtocolError(f"unit {unit} returned {len(bits)} bits, expected {count}")
            return [int(b) for b in bits[:count]]
        regs = list(rr.registers)
        if len(regs) != count:
            raise ProtocolError(f"unit {unit} returned {len(regs)} registers, expected {count}")
        return regs

    def close(self) -> None:
        """Drop the connection; the next transaction reconnects."""
        if self._client is not None:
            self._client.close()
            self._client = None
