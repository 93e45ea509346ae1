"""Sensirion SHT3x emulator: 16-bit commands, single-shot timing, status register, CRC.

Without clock stretching the sensor NACKs a read header until its measurement is done and
when it has nothing to send; with stretching (0x2Cxx) the read waits for the result. Data is
sent once: a second read NACKs. ``faults.crc_error`` sends every word with a wrong CRC.
"""

from __future__ import annotations

import time
from typing import ClassVar

from edgetwin.protocols.i2c import sht3x as proto
from firmware_stubs.i2c.bus import Chip, Clock, nack

_MEASURE = {cmd: rep for rep, cmd in proto.CMD_MEASURE.items()}
_MEASURE_STRETCH = {cmd: rep for rep, cmd in proto.CMD_MEASURE_STRETCH.items()}
_CLEARABLE = (
    proto.STATUS_ALERT_PENDING
    | proto.STATUS_RH_ALERT
    | proto.STATUS_T_ALERT
    | proto.STATUS_RESET_DETECTED
)


def raw_temperature(celsius: float) -> int:
    """The temperature word nearest ``celsius`` (inverse of T = -45 + 175 * S / 65535)."""
    return max(0, min(0xFFFF, round((celsius + 45.0) * 65535.0 / 175.0)))


def raw_humidity(percent: float) -> int:
    """The humidity word nearest ``percent`` (inverse of RH = 100 * S / 65535)."""
    return max(0, min(0xFFFF, round(percent * 65535.0 / 100.0)))


class Sht3xChip(Chip):
    """An SHT30/31/35 at 0x44 or 0x45."""

    defaults: ClassVar[dict[str, float]] = {"temperature": 22.0, "humidity": 40.0}

    def __init__(self, *, seed: int = 0, clock: Clock = time.monotonic) -> None:
        """Power up: idle, status 0x8010."""
        super().__init__(seed=seed, clock=clock)
        self.measurements = 0
        self.commands: list[int] = []  # every command received, in order
        self._reset()
        self._busy_until = 0.0  # powered up long ago
        self._words = (
            raw_temperature(self.true["temperature"]),
            raw_humidity(self.true["humidity"]),
        )

    def _reset(self) -> None:
        self.status = proto.STATUS_AFTER_RESET
        self._answer: bytes | None = None
        self._ready_at: float | None = None  # a measurement is running until then
        self._stretch = False
        self._busy_until = self.clock() + proto.SOFT_RESET_TIME

    def _busy(self) -> bool:
        now = self.clock()
        if now < self._busy_until:
            return True
        if self._ready_at is None:
            return False
        if self.faults.not_ready or now < self._ready_at:
            return True
        self._finish()
        return False

    def _finish(self) -> None:
        self._ready_at = None
        self.measurements += 1
        if not self.faults.stuck:
            values = self.sample()
            self._words = (raw_temperature(values["temperature"]), raw_humidity(values["humidity"]))
        self._answer = self._encode(*self._words)

    def _encode(self, *words: int) -> bytes:
        answer = b"".join(proto.word_with_crc(w) for w in words)
        if self.faults.crc_error:
            answer = bytes(b ^ 0xFF if i % 3 == 2 else b for i, b in enumerate(answer))
        return answer

    def write(self, data: bytes) -> None:
        """A 16-bit command, MSB first (NACKed while the sensor is busy)."""
        if self._busy():
            raise nack()
        if len(data) < 2:
            self.status |= proto.STATUS_COMMAND_FAILED
            return
        cmd = data[0] << 8 | data[1]
        self.commands.append(cmd)
        self._answer = None
        if cmd != proto.CMD_READ_STATUS:  # reading the status must not change it
            self.status &= ~proto.STATUS_COMMAND_FAILED
        if cmd in _MEASURE or cmd in _MEASURE_STRETCH:
            repeatability = _MEASURE.get(cmd) or _MEASURE_STRETCH[cmd]
            self._ready_at = self.clock() + proto.DURATION_TYP[repeatability]
            self._stretch = cmd in _MEASURE_STRETCH
        elif cmd == proto.CMD_READ_STATUS:
            self._answer = self._encode(self.status)
        elif cmd == proto.CMD_CLEAR_STATUS:
            self.status &= ~_CLEARABLE
        elif cmd == proto.CMD_SOFT_RESET:
            heater_off = self.status & ~proto.STATUS_HEATER
            self._reset()
            self.status = heater_off | proto.STATUS_AFTER_RESET
        elif cmd == proto.CMD_HEATER_ON:
            self.status |= proto.STATUS_HEATER
        elif cmd == proto.CMD_HEATER_OFF:
            self.status &= ~proto.STATUS_HEATER
        elif cmd != proto.CMD_BREAK:
            self.status |= proto.STATUS_COMMAND_FAILED

    def read(self, length: int) -> bytes:
        """The pending answer (measurement or status); NACK when there is none yet."""
        if self._stretch and self._ready_at is not None and not self.faults.not_ready:
            time.sleep(max(0.0, self._ready_at - self.clock()))  # the sensor holds SCL low
        if self._busy() or self._answer is None:
            raise nack()
        answer, self._answer = self._answer, None
        return (answer + b"\xff" * length)[:length]

    def quick(self) -> None:
        """The address alone is acknowledged unless the sensor is busy."""
        if self._busy():
            raise nack()
