"""Modbus lines for the tests: a real pymodbus peer on one end, an edgetwin link on the other.

Three kinds: ``tcp`` (Modbus TCP on loopback), ``rtu`` (Modbus RTU on a pseudo-terminal pair;
8N1, the only setting every kernel's pty accepts) and ``rtu_tcp`` (RTU frames over loopback
TCP, as a transparent serial gateway sends them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import cast

from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edgetwin.transports.modbus_serial import ModbusRtuLink, ModbusRtuTcpLink
from edgetwin.transports.modbus_tcp import ModbusLink, ModbusTcpLink
from firmware_stubs.modbus.pump import NullModem, PumpDevice, PumpSerialServer, PumpServer

KINDS = ("tcp", "rtu", "rtu_tcp")


def text_words(text: str, registers: int, *, swap_bytes: bool = False) -> list[int]:
    """Registers holding ``text``, first character in the high byte (low with swap_bytes)."""
    raw = text.encode().ljust(2 * registers, b"\0")
    pairs = [(raw[i], raw[i + 1]) for i in range(0, len(raw), 2)]
    return [(lo << 8 | hi) if swap_bytes else (hi << 8 | lo) for hi, lo in pairs]


def rtu_link(path: str, timeout: float = 0.5) -> ModbusRtuLink:
    """An edgetwin RTU link on a pty end (8N1)."""
    return ModbusRtuLink(path, baudrate=19200, parity="N", timeout=timeout)


@contextlib.asynccontextmanager
async def pump_line(
    kind: str, devices: Sequence[PumpDevice], link_timeout: float = 0.5
) -> AsyncIterator[tuple[PumpServer | PumpSerialServer, ModbusLink]]:
    """The simulated pumps served on a line of ``kind``, and a link to it."""
    server: PumpServer | PumpSerialServer
    link: ModbusLink
    if kind == "rtu":
        server = PumpSerialServer(devices)
        await server.start()
        link = rtu_link(server.path, link_timeout)
    else:
        server = PumpServer(devices, framer="rtu" if kind == "rtu_tcp" else "socket")
        await server.start()
        if kind == "rtu_tcp":
            link = ModbusRtuTcpLink(server.host, server.port, timeout=link_timeout)
        else:
            link = ModbusTcpLink(server.host, server.port, timeout=link_timeout)
    try:
        yield server, link
    finally:
        link.close()
        await server.stop()


class MapServer:
    """One unit serving fixed tables on a line of ``kind``; counts the requests it decodes."""

    def __init__(
        self,
        kind: str,
        *,
        unit: int = 1,
        holding: Sequence[int] = (),
        inputs: Sequence[int] = (),
        coils: Sequence[bool] = (),
        discrete: Sequence[bool] = (),
    ) -> None:
        def table(values: Sequence[int] | Sequence[bool], bits: bool) -> list[SimData]:
            if not values:  # pymodbus wants every table; one unused address will do
                values = [False] if bits else [0]
            kind_ = DataType.BITS if bits else DataType.REGISTERS
            return [SimData(0, values=list(values), datatype=kind_)]

        self.kind = kind
        self.device = SimDevice(
            id=unit,
            simdata=(
                table(coils, True),
                table(discrete, True),
                table(holding, False),
                table(inputs, False),
            ),
        )
        self.requests = 0
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._modem: NullModem | None = None
        self.link: ModbusLink | None = None

    def _count(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            self.requests += 1
        return pdu

    async def __aenter__(self) -> ModbusLink:
        """Start serving and return a link to the line."""
        if self.kind == "rtu":
            self._modem = NullModem()
            self._modem.start()
            self._server = ModbusSerialServer(
                self.device,
                framer=FramerType.RTU,
                port=self._modem.paths[1],
                ignore_missing_devices=True,
                trace_pdu=self._count,
            )
            await self._server.serve_forever(background=True)
            self.link = rtu_link(self._modem.paths[0])
            return self.link
        framer = FramerType.RTU if self.kind == "rtu_tcp" else FramerType.SOCKET
        self._server = ModbusTcpServer(
            self.device, framer=framer, address=("127.0.0.1", 0), trace_pdu=self._count
        )
        await self._server.serve_forever(background=True)
        port = int(cast(asyncio.Server, self._server.transport).sockets[0].getsockname()[1])
        if self.kind == "rtu_tcp":
            self.link = ModbusRtuTcpLink("127.0.0.1", port, timeout=0.5)
        else:
            self.link = ModbusTcpLink("127.0.0.1", port, timeout=0.5)
        return self.link

    async def __aexit__(self, *exc: object) -> None:
        """Close the link, the server and the line."""
        if self.link is not None:
            self.link.close()
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
        await asyncio.sleep(0)
        if self._modem is not None:
            self._modem.close()
