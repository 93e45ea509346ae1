"""I2C bus transport: an smbus2 handle driven from one worker thread, one call at a time.

smbus2 calls are blocking ioctls, so every call runs on the bus's own worker thread and the
event loop never waits on the bus. One thread per bus also means calls never overlap on the
handle: smbus2 selects the target with one ioctl and transfers with the next, so two threads
sharing a handle could talk to the wrong chip. An asyncio.Lock per bus queues callers in
order, so each call's timeout measures its own transfer, not the queue ahead of it.

The transport moves bytes; it knows no chip. OSError becomes edgetwin's error tree: a NACK
or a bus timeout is DeviceTimeoutError, a missing or closed adapter ConnectionLostError (the
handle is dropped and the next call reopens it), anything else ProtocolError.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import smbus2

from edgetwin.config.i2c import I2cBusConfig
from edgetwin.errors import ConnectionLostError, DeviceTimeoutError, ProtocolError

log = logging.getLogger(__name__)

T = TypeVar("T")

# Adapters report a NACK as EREMOTEIO (bcm2835, most), ENXIO (i801) or EIO (some bit-bangers).
_NO_ANSWER = frozenset(
    {errno.EREMOTEIO, errno.ENXIO, errno.EIO, errno.ETIMEDOUT, errno.EAGAIN, errno.EBUSY}
)
_ADAPTER_GONE = frozenset(
    {errno.ENODEV, errno.ENOENT, errno.EBADF, errno.ESHUTDOWN, errno.EACCES, errno.EPERM}
)


class SMBusLike(Protocol):
    """The part of smbus2.SMBus the transport uses (an emulator can stand in for it)."""

    def write_quick(self, i2c_addr: int, force: bool | None = None) -> None: ...
    def read_byte(self, i2c_addr: int, force: bool | None = None) -> int: ...
    def write_byte(self, i2c_addr: int, value: int, force: bool | None = None) -> None: ...
    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int: ...
    def write_byte_data(
        self, i2c_addr: int, register: int, value: int, force: bool | None = None
    ) -> None: ...
    def read_i2c_block_data(
        self, i2c_addr: int, register: int, length: int, force: bool | None = None
    ) -> list[int]: ...
    def write_i2c_block_data(
        self, i2c_addr: int, register: int, data: Sequence[int], force: bool | None = None
    ) -> None: ...
    def i2c_rdwr(self, *i2c_msgs: smbus2.i2c_msg) -> None: ...
    def close(self) -> None: ...


Opener = Callable[[int], SMBusLike]


def open_smbus(bus: int) -> SMBusLike:
    """Open /dev/i2c-``bus`` with smbus2 (the real hardware)."""
    handle: SMBusLike = smbus2.SMBus(bus)
    return handle


class I2cBus:
    """One I2C adapter, shared by every chip on it; nothing opens until the first call."""

    def __init__(self, bus: int, *, timeout: float = 1.0, opener: Opener = open_smbus) -> None:
        self.bus = bus
        self.timeout = timeout
        self.transactions = 0
        self._opener = opener
        self._lock = asyncio.Lock()
        self._worker: _Worker | None = None

    @classmethod
    def from_config(cls, cfg: I2cBusConfig, *, opener: Opener = open_smbus) -> I2cBus:
        """The transport of a configured bus."""
        return cls(cfg.bus, timeout=cfg.timeout, opener=opener)

    def __repr__(self) -> str:
        return f"I2cBus(/dev/i2c-{self.bus})"

    async def write_quick(self, address: int) -> None:
        """SMBus quick write: only the address byte, to see whether a chip acknowledges."""
        await self._run(address, "quick write", lambda h: h.write_quick(address))

    async def read_byte(self, address: int) -> int:
        """SMBus receive byte: one byte read without a register."""
        return await self._run(address, "read byte", lambda h: h.read_byte(address))

    async def write_byte(self, address: int, value: int) -> None:
        """SMBus send byte: one byte written without a register."""
        await self._run(address, "write byte", lambda h: h.write_byte(address, value))

    async def read_byte_data(self, address: int, register: int) -> int:
        """Read one byte from ``register``."""
        return await self._run(
            address,
            f"read register 0x{register:02X}",
            lambda h: h.read_byte_data(address, register),
        )

    async def write_byte_data(self, address: int, register: int, value: int) -> None:
        """Write one byte to ``register``."""
        await self._run(
            address,
            f"write register 0x{register:02X}",
            lambda h: h.write_byte_data(address, register, value),
        )

    async def read_block(self, address: int, register: int, length: int) -> bytes:
        """Write ``register``, then read ``length`` bytes (I2C block read, up to 32)."""

        def call(h: SMBusLike) -> bytes:
            data = bytes(h.read_i2c_block_data(address, register, length))
            if len(data) != length:
                raise ProtocolError(f"asked 0x{address:02X} for {length} bytes, got {len(data)}")
            return data

        return await self._run(address, f"read {length} bytes at 0x{register:02X}", call)

    async def write_block(self, address: int, register: int, data: bytes) -> None:
        """Write ``register`` followed by ``data`` in one transfer (I2C block write)."""
        await self._run(
            address,
            f"write {len(data)} bytes at 0x{register:02X}",
            lambda h: h.write_i2c_block_data(address, register, list(data)),
        )

    async def read(self, address: int, length: int) -> bytes:
        """A plain I2C read of ``length`` bytes (no register byte written first)."""

        def call(h: SMBusLike) -> bytes:
            msg = smbus2.i2c_msg.read(address, length)
            h.i2c_rdwr(msg)
            return bytes(list(msg))  # type: ignore[call-overload]  # stub types __iter__ as int

        return await self._run(address, f"read {length} bytes", call)

    async def write(self, address: int, data: bytes) -> None:
        """A plain I2C write of ``data`` (e.g. a 16-bit command)."""

        def call(h: SMBusLike) -> None:
            h.i2c_rdwr(smbus2.i2c_msg.write(address, data))

        await self._run(address, f"write {data.hex()}", call)

    def close(self) -> None:
        """Close the handle and let the worker thread end; a later call reopens both."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.pool.submit(worker.drop)
            worker.pool.shutdown(wait=False)

    async def _run(self, address: int, what: str, call: Callable[[SMBusLike], T]) -> T:
        async with self._lock:
            self.transactions += 1
            if self._worker is None:
                self._worker = _Worker(self.bus, self._opener)
            worker = self._worker
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(worker.pool, self._call, worker, address, what, call)
            try:
                return await asyncio.wait_for(future, self.timeout)
            except TimeoutError as exc:
                # The worker is still stuck in the ioctl; later calls queue behind it.
                raise DeviceTimeoutError(
                    f"{self}: {what} at 0x{address:02X} took longer than {self.timeout:g} s"
                ) from exc

    def _call(self, worker: _Worker, address: int, what: str, call: Callable[[SMBusLike], T]) -> T:
        opened = worker.handle is not None
        try:
            return call(worker.open())
        except OSError as exc:
            reason = f"[Errno {exc.errno}] {exc.strerror or exc}"
            if not opened and worker.handle is None:
                raise ConnectionLostError(f"{self}: cannot open the adapter: {reason}") from exc
            if exc.errno in _NO_ANSWER:
                text = f"{self}: 0x{address:02X} did not answer ({what}): {reason}"
                raise DeviceTimeoutError(text) from exc
            if exc.errno in _ADAPTER_GONE:
                worker.drop()
                raise ConnectionLostError(f"{self}: adapter lost ({what}): {reason}") from exc
            raise ProtocolError(f"{self}: {what} at 0x{address:02X} failed: {reason}") from exc


class _Worker:
    """The bus's thread and the handle only that thread touches."""

    def __init__(self, bus: int, opener: Opener) -> None:
        self.bus = bus
        self.opener = opener
        self.pool = ThreadPoolExecutor(1, thread_name_prefix=f"i2c-{bus}")
        self.handle: SMBusLike | None = None

    def open(self) -> SMBusLike:
        if self.handle is None:
            self.handle = self.opener(self.bus)
        return self.handle

    def drop(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            try:
                handle.close()
            except OSError as exc:
                log.debug("/dev/i2c-%d: closing the handle failed: %s", self.bus, exc)
