"""TI INA219 emulator: config/reset, triggered and continuous conversions, the chip's math.

The physical side is a current through a shunt of ``shunt_ohms`` and a bus voltage at IN-.
At the end of a conversion the chip fills the shunt and bus registers and computes, in its
integer arithmetic, Current = Shunt * Cal / 4096 and Power = |Current| * Bus / 5000; OVF flags
a result that does not fit. CNVR clears on a power register read or a config write.
"""

from __future__ import annotations

import math
import time
from typing import ClassVar

from edgetwin.protocols.i2c import ina219 as proto
from firmware_stubs.i2c.bus import Chip, Clock, Cycle


def shunt_counts(amps: float, shunt_ohms: float, shunt_range: float) -> int:
    """Shunt voltage register value (signed counts of 10 uV), clipped at the PGA range."""
    limit = round(shunt_range / proto.SHUNT_LSB)
    return max(-limit, min(limit, round(amps * shunt_ohms / proto.SHUNT_LSB)))


def bus_counts(volts: float, bus_range: int) -> int:
    """Bus voltage in 4 mV counts, clipped at the 13-bit (32 V) or 12-bit (16 V) field."""
    top = 0x1FFF if bus_range == 32 else 0x0FFF
    return max(0, min(top, round(volts / proto.BUS_LSB)))


def registers(shunt: int, bus: int, cal: int) -> tuple[int, int, bool]:
    """(current, power, overflow) as the chip computes them from shunt and bus counts."""
    current = math.trunc(shunt * cal / 4096)
    power = math.trunc(abs(current) * bus / 5000)
    overflow = not -32768 <= current <= 32767 or power > 0xFFFF
    return current & 0xFFFF, power & 0xFFFF, overflow


class Ina219Chip(Chip):
    """An INA219 at 0x40..0x4F measuring the current through ``shunt_ohms``."""

    defaults: ClassVar[dict[str, float]] = {"current": 0.5, "bus_voltage": 12.0}

    def __init__(
        self, shunt_ohms: float = 0.1, *, seed: int = 0, clock: Clock = time.monotonic
    ) -> None:
        """Power up: config 399Fh (continuous), calibration 0."""
        super().__init__(seed=seed, clock=clock)
        self.shunt_ohms = shunt_ohms
        self.conversions = 0
        self._reset()

    def _reset(self) -> None:
        self.regs = dict.fromkeys(range(6), 0)
        self.regs[proto.REG_CONFIG] = proto.CONFIG_RESET
        self.pointer = proto.REG_CONFIG
        self._cnvr = False
        self._ovf = False
        self._done_at: float | None = None  # triggered conversion running until then
        self._cycle: Cycle | None = None  # continuous conversions
        self._schedule(self.regs[proto.REG_CONFIG])

    def _config(self) -> proto.Config:
        return proto.Config.from_word(self.regs[proto.REG_CONFIG])

    def _schedule(self, word: int) -> None:
        cfg = proto.Config.from_word(word)
        now = self.clock()
        self._done_at, self._cycle = None, None
        if cfg.mode & 0b011 == 0:
            return  # power-down or ADC off
        if cfg.mode & 0b100:
            self._cycle = Cycle(now, cfg.conversion_time, cfg.conversion_time)
        else:
            self._done_at = now + cfg.conversion_time

    def _tick(self) -> None:
        cfg = self._config()
        now = self.clock()
        if self.faults.not_ready:
            return
        if self._cycle is not None:
            if not self._cycle.fresh(now):
                return
        elif self._done_at is None or now < self._done_at:
            return
        else:
            self._done_at = None
        self.conversions += 1
        self._cnvr = True
        if self.faults.stuck:
            return
        values = self.sample()
        if cfg.mode & 0b001:
            shunt = shunt_counts(values["current"], self.shunt_ohms, cfg.shunt_range)
            self.regs[proto.REG_SHUNT] = shunt & 0xFFFF
        if cfg.mode & 0b010:
            self.regs[proto.REG_BUS] = bus_counts(values["bus_voltage"], cfg.bus_range)
        shunt_word = self.regs[proto.REG_SHUNT]
        signed = shunt_word - 0x10000 if shunt_word & 0x8000 else shunt_word
        current, power, self._ovf = registers(
            signed, self.regs[proto.REG_BUS], self.regs[proto.REG_CALIBRATION]
        )
        self.regs[proto.REG_CURRENT], self.regs[proto.REG_POWER] = current, power

    def write(self, data: bytes) -> None:
        """Pointer byte, optionally followed by a register word (MSB first)."""
        if not data:
            return
        self._tick()
        self.pointer = data[0]
        if len(data) < 3:
            return
        word = data[1] << 8 | data[2]
        if self.pointer == proto.REG_CALIBRATION:
            self.regs[proto.REG_CALIBRATION] = word & proto.CAL_MAX  # bit 0 is void
        elif self.pointer == proto.REG_CONFIG:
            if word & proto.RST:
                self._reset()
                return
            self.regs[proto.REG_CONFIG] = word
            self._cnvr = False
            self._schedule(word)
        # The measurement registers are read-only.

    def read(self, length: int) -> bytes:
        """The word the pointer selects, MSB first; reading power clears CNVR."""
        self._tick()
        if self.pointer > proto.REG_CALIBRATION:
            word = 0
        elif self.pointer == proto.REG_BUS:
            word = self.regs[proto.REG_BUS] << 3 | (proto.CNVR if self._cnvr else 0)
            word |= proto.OVF if self._ovf else 0
        else:
            word = self.regs[self.pointer]
        if self.pointer == proto.REG_POWER:
            self._cnvr = False
        data = bytes([word >> 8 & 0xFF, word & 0xFF])
        return (data * (length // 2 + 1))[:length]
