"""TI ADS1115 emulator: pointer register, config fields, single-shot and continuous timing.

The four inputs are voltages against GND (``ain0``..``ain3``). A conversion takes 1 / DR;
while it runs the config register reads OS = 0. Codes are rounded to the PGA's LSB and clip
at 7FFFh / 8000h. Register words are big-endian, as on the chip.
"""

from __future__ import annotations

import time
from typing import ClassVar

from edgetwin.protocols.i2c import ads1115 as proto
from firmware_stubs.i2c.bus import Chip, Clock, Cycle

#: MUX code -> (positive input, negative input or None for GND).
_INPUTS: dict[int, tuple[str, str | None]] = {
    code: (pair.split("-")[0], pair.split("-")[1] if "-" in pair else None)
    for pair, code in proto.MUX.items()
}


def code(volts: float, fsr: float) -> int:
    """The conversion register word for ``volts`` at full-scale range ``fsr``."""
    counts = max(-32768, min(32767, round(volts / proto.lsb(fsr))))
    return counts & 0xFFFF


class Ads1115Chip(Chip):
    """An ADS1115 at 0x48..0x4B."""

    defaults: ClassVar[dict[str, float]] = {"ain0": 0.0, "ain1": 0.0, "ain2": 0.0, "ain3": 0.0}

    def __init__(self, *, seed: int = 0, clock: Clock = time.monotonic) -> None:
        """Power up: config 8583h (single-shot, idle), thresholds 8000h / 7FFFh."""
        super().__init__(seed=seed, clock=clock)
        self.conversions = 0
        self.regs = {
            proto.REG_CONVERSION: 0,
            proto.REG_CONFIG: proto.CONFIG_RESET,
            proto.REG_LO_THRESH: proto.LO_THRESH_RESET,
            proto.REG_HI_THRESH: proto.HI_THRESH_RESET,
        }
        self.pointer = proto.REG_CONVERSION
        self._done_at: float | None = None  # single-shot conversion running until then
        self._cycle: Cycle | None = None  # continuous conversions

    def _config(self) -> proto.Config:
        return proto.Config.from_word(self.regs[proto.REG_CONFIG])

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
        if not self.faults.stuck:
            values = self.sample()
            positive, negative = _INPUTS[cfg.mux]
            volts = values[positive] - (values[negative] if negative else 0.0)
            self.regs[proto.REG_CONVERSION] = code(volts, cfg.fsr)

    def write(self, data: bytes) -> None:
        """Pointer byte, optionally followed by a register word (MSB first)."""
        if not data:
            return
        self._tick()
        self.pointer = data[0] & 0b11
        if len(data) < 3 or self.pointer == proto.REG_CONVERSION:
            return
        word = data[1] << 8 | data[2]
        if self.pointer != proto.REG_CONFIG:
            self.regs[self.pointer] = word
            return
        self.regs[proto.REG_CONFIG] = word & ~proto.OS
        cfg = proto.Config.from_word(word)
        now, period = self.clock(), proto.conversion_time(cfg.data_rate)
        if not cfg.single_shot:
            self._done_at, self._cycle = None, Cycle(now, period, period)
        else:
            self._cycle = None
            if cfg.os and self._done_at is None:
                self._done_at = now + period

    def read(self, length: int) -> bytes:
        """The word the pointer selects, MSB first (OS reads 1 while no conversion runs)."""
        self._tick()
        word = self.regs[self.pointer]
        if self.pointer == proto.REG_CONFIG and self._done_at is None and self._cycle is None:
            word |= proto.OS
        data = bytes([word >> 8, word & 0xFF])
        return (data * (length // 2 + 1))[:length]
