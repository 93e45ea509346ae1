"""An smbus2.SMBus stand-in that carries each transfer to emulated chips by address.

Chips are I2C targets: they see what the wire carries, a write of some bytes, a read of n
bytes or a bare address, and answer or NACK. The SMBus methods become those transfers the way
an adapter puts them on the bus (``read_byte_data`` = write [register], repeated start, read
1 byte), so a driver cannot tell the emulator from smbus2 on /dev/i2c-N. An address nobody
answers, or a chip with the ``nack`` fault, raises OSError(EREMOTEIO) as Linux does.
"""

from __future__ import annotations

import ctypes
import errno
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from smbus2.smbus2 import I2C_M_RD

Clock = Callable[[], float]
T = TypeVar("T")


def nack() -> OSError:
    """The error Linux raises when the target does not acknowledge."""
    return OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))


@dataclass
class Faults:
    """Faults a chip can be told to show; all off by default."""

    nack: bool = False  # acknowledges nothing, as if absent
    stuck: bool = False  # conversions complete but the data registers keep their old value
    crc_error: bool = False  # (SHT3x) every word is sent with a wrong CRC
    not_ready: bool = False  # a started conversion never completes
    delay: float = 0.0  # every transfer blocks the calling thread this long (clock stretching)


@dataclass
class Cycle:
    """Back-to-back conversions from ``since``: each ``period`` long, busy for ``busy`` of it."""

    since: float
    period: float
    busy: float
    done: int = 0  # conversions already published

    def fresh(self, now: float) -> bool:
        """True once per newly completed conversion (then counted as published)."""
        completed = (
            0
            if now < self.since + self.busy
            else int((now - self.since - self.busy) // self.period) + 1
        )
        if completed > self.done:
            self.done = completed
            return True
        return False

    def converting(self, now: float) -> bool:
        """Whether a conversion is running at ``now``."""
        return (now - self.since) % self.period < self.busy


class Chip:
    """An emulated I2C target with physical quantities: settable truth, seeded noise, drift."""

    defaults: ClassVar[dict[str, float]] = {}

    def __init__(self, *, seed: int = 0, clock: Clock = time.monotonic) -> None:
        self.faults = Faults()
        self.true: dict[str, float] = dict(self.defaults)
        self.noise: dict[str, float] = {}  # one-sigma Gaussian noise per quantity
        self.drift: dict[str, float] = {}  # change per second since the last set()
        self.measured: dict[str, float] = {}  # what the latest conversion encoded
        self.clock = clock
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self._since = clock()

    def set(self, **values: float) -> None:
        """Set true values (unknown names are an error); drift restarts from them."""
        unknown = set(values) - set(self.true)
        if unknown:
            raise KeyError(f"{type(self).__name__} has no quantity {sorted(unknown)}")
        with self.lock:
            self.true.update(values)
            self._since = self.clock()

    def sample(self) -> dict[str, float]:
        """The values a conversion sees now: truth + drift + noise; kept in ``measured``."""
        elapsed = self.clock() - self._since
        out = {}
        for name, true in self.true.items():
            sigma = self.noise.get(name, 0.0)
            noise = self._rng.gauss(0.0, sigma) if sigma else 0.0
            out[name] = true + self.drift.get(name, 0.0) * elapsed + noise
        self.measured = out
        return out

    def quick(self) -> None:
        """A transfer with the address only: acknowledged by default."""

    def write(self, data: bytes) -> None:
        """A write transfer of ``data``."""
        raise NotImplementedError

    def read(self, length: int) -> bytes:
        """A read transfer of ``length`` bytes."""
        raise NotImplementedError


class FakeSMBus:
    """Several chips at their addresses behind the smbus2.SMBus method interface."""

    def __init__(self, chips: Mapping[int, Chip] | None = None) -> None:
        self.chips: dict[int, Chip] = dict(chips or {})
        self.error: int | None = None  # errno every transfer fails with (e.g. ENODEV)
        self.opens = 0
        self.closed = False
        self.transfers = 0
        self.max_active = 0  # most transfers in progress at once (1 unless misused)
        self._active = 0
        self._count = threading.Lock()

    def opener(self, bus: int) -> FakeSMBus:
        """A stand-in for ``smbus2.SMBus(bus)``: this same bus, opened again."""
        if self.error is not None:
            raise OSError(self.error, os.strerror(self.error))
        self.opens += 1
        self.closed = False
        return self

    def close(self) -> None:
        """Like SMBus.close()."""
        self.closed = True

    def _transfer(self, address: int, action: Callable[[Chip], T]) -> T:
        with self._count:
            self._active += 1
            self.transfers += 1
            self.max_active = max(self.max_active, self._active)
        try:
            if self.closed:
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))
            if self.error is not None:
                raise OSError(self.error, os.strerror(self.error))
            chip = self.chips.get(address)
            if chip is None or chip.faults.nack:
                raise nack()
            if chip.faults.delay:
                time.sleep(chip.faults.delay)
            with chip.lock:
                return action(chip)
        finally:
            with self._count:
                self._active -= 1

    def write_quick(self, i2c_addr: int, force: bool | None = None) -> None:
        """SMBus quick command (write)."""
        self._transfer(i2c_addr, lambda c: c.quick())

    def read_byte(self, i2c_addr: int, force: bool | None = None) -> int:
        """SMBus receive byte."""
        return self._transfer(i2c_addr, lambda c: c.read(1)[0])

    def write_byte(self, i2c_addr: int, value: int, force: bool | None = None) -> None:
        """SMBus send byte."""
        self._transfer(i2c_addr, lambda c: c.write(bytes([value])))

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        """SMBus read byte data: write the register, repeated start, read one byte."""
        return self._transfer(i2c_addr, lambda c: _write_read(c, bytes([register]), 1)[0])

    def write_byte_data(
        self, i2c_addr: int, register: int, value: int, force: bool | None = None
    ) -> None:
        """SMBus write byte data."""
        self._transfer(i2c_addr, lambda c: c.write(bytes([register, value])))

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        """SMBus read word data (little-endian, as SMBus defines it)."""
        data = self._transfer(i2c_addr, lambda c: _write_read(c, bytes([register]), 2))
        return data[0] | data[1] << 8

    def write_word_data(
        self, i2c_addr: int, register: int, value: int, force: bool | None = None
    ) -> None:
        """SMBus write word data (little-endian)."""
        payload = bytes([register, value & 0xFF, value >> 8 & 0xFF])
        self._transfer(i2c_addr, lambda c: c.write(payload))

    def read_i2c_block_data(
        self, i2c_addr: int, register: int, length: int, force: bool | None = None
    ) -> list[int]:
        """I2C block read: write the register, repeated start, read ``length`` bytes."""
        if not 0 < length <= 32:
            raise ValueError("Desired block length over 32 bytes")
        return list(self._transfer(i2c_addr, lambda c: _write_read(c, bytes([register]), length)))

    def write_i2c_block_data(
        self, i2c_addr: int, register: int, data: Sequence[int], force: bool | None = None
    ) -> None:
        """I2C block write: the register then ``data`` in one write transfer."""
        if len(data) > 32:
            raise ValueError("Data length cannot exceed 32 bytes")
        payload = bytes([register, *data])
        self._transfer(i2c_addr, lambda c: c.write(payload))

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        """Combined transfers of smbus2.i2c_msg messages; read messages are filled in."""
        for msg in i2c_msgs:
            if msg.flags & I2C_M_RD:
                data = self._transfer(msg.addr, lambda c, n=msg.len: c.read(n))
                ctypes.memmove(msg.buf, data, msg.len)
            else:
                payload = ctypes.string_at(msg.buf, msg.len)
                self._transfer(msg.addr, lambda c, p=payload: c.write(p))


def _write_read(chip: Chip, data: bytes, length: int) -> bytes:
    chip.write(data)
    return chip.read(length)
