"""A serial port as a dumb byte pipe: open, read a chunk, write, close.

pyserial-asyncio-fast does the non-blocking I/O; this module owns the port's lifetime and
maps its failures (pyserial's SerialException is an OSError) onto edgetwin's error tree: a
port that cannot be opened or vanishes (USB unplugged, pty closed) is a ConnectionLostError,
no bytes within the timeout a DeviceTimeoutError. After a loss the port is closed; the
caller decides when to open it again. Framing is the caller's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import serial_asyncio_fast

from edgetwin.config.serial import SerialBusConfig
from edgetwin.errors import ConnectionLostError, DeviceTimeoutError

log = logging.getLogger(__name__)

_CHUNK = 4096


class SerialPort:
    """One serial port; not shared (a serial bus carries one sensor)."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        timeout: float = 1.0,
    ) -> None:
        self.port = port
        self.timeout = timeout
        self.baudrate = baudrate
        self.bytesize = bytesize
        self.parity = parity
        self.stopbits = stopbits
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.opens = 0
        self.losses = 0
        self.timeouts = 0
        self.bytes_in = 0
        self.bytes_out = 0

    @classmethod
    def from_config(cls, bus: SerialBusConfig) -> SerialPort:
        """The port a serial bus names, with its line settings."""
        return cls(
            bus.port,
            baudrate=bus.baudrate,
            bytesize=bus.bytesize,
            parity=bus.parity,
            stopbits=bus.stopbits,
            timeout=bus.timeout,
        )

    def __repr__(self) -> str:
        return f"SerialPort({self.port})"

    @property
    def is_open(self) -> bool:
        """Whether the port is open and has not been lost."""
        return self._writer is not None and not self._writer.transport.is_closing()

    async def open(self) -> None:
        """Open the port (no-op when open); discards input that arrived before."""
        if self.is_open:
            return
        if self._writer is not None:  # lost while nobody was reading
            self.losses += 1
        await self.close()
        try:
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=self.port,
                baudrate=self.baudrate,
                bytesize=self.bytesize,
                parity=self.parity,
                stopbits=self.stopbits,
            )
        except (OSError, ValueError) as exc:
            raise ConnectionLostError(f"cannot open {self.port}: {exc}") from exc
        self._reader, self._writer = reader, writer
        self.opens += 1
        port = writer.transport.get_extra_info("serial")
        if port is not None:
            with contextlib.suppress(OSError):
                port.reset_input_buffer()  # bytes from before we listened are stale

    async def read(self, within: float | None = None) -> bytes:
        """The next chunk of bytes within ``within`` seconds (default: the port's timeout)."""
        return await self._read(self.timeout if within is None else within)

    async def read_forever(self) -> bytes:
        """The next chunk of bytes, however long it takes."""
        return await self._read(None)

    async def _read(self, limit: float | None) -> bytes:
        reader = self._reader
        if reader is None or not self.is_open:
            raise ConnectionLostError(f"{self.port} is not open")
        try:
            async with asyncio.timeout(limit):
                data = await reader.read(_CHUNK)
        except TimeoutError:
            self.timeouts += 1
            raise DeviceTimeoutError(f"no data on {self.port} within {limit:g} s") from None
        except OSError as exc:
            await self._lost()
            raise ConnectionLostError(f"{self.port} lost: {exc}") from exc
        if not data:
            await self._lost()
            raise ConnectionLostError(f"{self.port} closed")
        self.bytes_in += len(data)
        return data

    async def write(self, data: bytes) -> None:
        """Send ``data``."""
        writer = self._writer
        if writer is None or not self.is_open:
            raise ConnectionLostError(f"{self.port} is not open")
        try:
            writer.write(data)
            await writer.drain()
        except OSError as exc:
            await self._lost()
            raise ConnectionLostError(f"{self.port} lost: {exc}") from exc
        if writer.transport.is_closing():
            await self._lost()
            raise ConnectionLostError(f"{self.port} lost while writing")
        self.bytes_out += len(data)

    async def read_pending(self) -> bytes:
        """The bytes received but not read yet, without waiting (empty if none)."""
        reader = self._reader
        data = bytearray()
        while reader is not None and self.is_open:
            try:
                # A zero timeout fires only if read() would wait: buffered bytes come back.
                async with asyncio.timeout(0):
                    chunk = await reader.read(_CHUNK)
            except TimeoutError:
                break
            except OSError as exc:
                await self._lost()
                raise ConnectionLostError(f"{self.port} lost: {exc}") from exc
            if not chunk:
                await self._lost()
                raise ConnectionLostError(f"{self.port} closed")
            data += chunk
        self.bytes_in += len(data)
        return bytes(data)

    async def close(self) -> None:
        """Close the port and wait until it is released; safe to call at any time."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        if not writer.transport.is_closing():
            # abort(): close() would first drain the output, which can block forever on a
            # line with hardware flow control and nobody listening.
            writer.transport.abort()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def _lost(self) -> None:
        self.losses += 1
        log.debug("%s lost", self.port)
        await self.close()
