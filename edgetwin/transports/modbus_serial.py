"""Modbus RTU links: a serial line (RS-485/RS-232), and RTU frames tunnelled over TCP.

Both frame with unit id and CRC and carry no transaction id, so a timeout keeps the
connection (there is nothing to resynchronise) and a guard pause lets a late answer go by
before the next request; pymodbus drops whatever is buffered when it sends. On a serial
line the link itself keeps the 3.5-character silence between frames that RTU needs to
find frame boundaries (pymodbus' async serial transport does not): a fixed 1.75 ms above
19200 baud, as the Modbus serial line specification allows.
"""

from __future__ import annotations

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.framer import FramerType

from edgetwin.transports.modbus_tcp import ModbusLink

# After a failed transaction, wait this long (at least) so a late answer is not mistaken
# for the next one.
_GUARD = 0.02


def char_time(baudrate: int, bytesize: int = 8, parity: str = "E", stopbits: int = 1) -> float:
    """Seconds one character takes on the line: start bit, data, parity, stop bits."""
    bits = 1 + bytesize + (parity != "N") + stopbits
    return bits / baudrate


def frame_silence(baudrate: int, bytesize: int = 8, parity: str = "E", stopbits: int = 1) -> float:
    """The inter-frame silence RTU needs: 3.5 characters, or 1.75 ms above 19200 baud."""
    if baudrate > 19200:
        return 0.00175
    return 3.5 * char_time(baudrate, bytesize, parity, stopbits)


class _RtuLink(ModbusLink):
    close_on_timeout = False
    rtu = True
    failure_guard = _GUARD


class ModbusRtuLink(_RtuLink):
    """A serial port with Modbus RTU units on it; safe to share between those units."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "E",
        stopbits: int = 1,
        timeout: float,
    ) -> None:
        super().__init__(timeout=timeout)
        self.port = port
        self.baudrate = baudrate
        self.bytesize = bytesize
        self.parity = parity
        self.stopbits = stopbits
        self.silence = frame_silence(baudrate, bytesize, parity, stopbits)

    def describe(self) -> str:
        """``port@baud``."""
        return f"{self.port}@{self.baudrate}"

    def _new_client(self) -> ModbusBaseClient:
        return AsyncModbusSerialClient(
            self.port,
            framer=FramerType.RTU,
            baudrate=self.baudrate,
            bytesize=self.bytesize,
            parity=self.parity,
            stopbits=self.stopbits,
            timeout=self.timeout,
            retries=0,
            reconnect_delay=0,
            trace_packet=self._trace_packet,
        )


class ModbusRtuTcpLink(_RtuLink):
    """A serial gateway that forwards raw RTU frames over TCP (no MBAP header)."""

    def __init__(self, host: str, port: int, *, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.host = host
        self.port = port

    def describe(self) -> str:
        """``rtu+tcp host:port``."""
        return f"rtu+tcp {self.host}:{self.port}"

    def _new_client(self) -> ModbusBaseClient:
        return AsyncModbusTcpClient(
            self.host,
            port=self.port,
            framer=FramerType.RTU,
            timeout=self.timeout,
            retries=0,
            reconnect_delay=0,
            trace_packet=self._trace_packet,
        )
