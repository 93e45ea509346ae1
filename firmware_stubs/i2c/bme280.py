"""Bosch BME280 emulator: register file, forced/normal mode timing, soft reset, NVM words.

Raw ADC values come from inverting the datasheet compensation (edgetwin.protocols.i2c.bme280)
by bisection over the ADC codes the oversampling setting can produce, so compensating them
gives back the true values within the formulas' resolution. Default calibration: the words of
the BMP280 datasheet's worked example (temperature, pressure) and humidity words typical of
real BME280 parts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from edgetwin.protocols.i2c import bme280 as proto
from firmware_stubs.i2c.bus import Chip, Clock, Cycle

DATASHEET_CALIBRATION = proto.Calibration(
    t1=27504, t2=26435, t3=-1000,
    p1=36477, p2=-10685, p3=3024, p4=2855, p5=140, p6=-7, p7=15500, p8=-14600, p9=6000,
    h1=75, h2=362, h3=0, h4=313, h5=50, h6=30,
)  # fmt: skip


#: Normal mode: t_standby of config[7:5], seconds (datasheet table 27).
_STANDBY = (0.0005, 0.0625, 0.125, 0.25, 0.5, 1.0, 0.01, 0.02)


def _nearest(f: Callable[[int], float], target: float, bits: int, width: int) -> int:
    """The ``width``-bit code, with only its top ``bits`` bits used, whose f is nearest target.

    f must be monotonic over the codes.
    """
    step, count = 1 << (width - bits), 1 << bits
    lo, hi = 0, count - 1
    rising = f(hi * step) >= f(lo * step)
    while lo < hi:
        mid = (lo + hi) // 2
        if (f(mid * step) < target) == rising:
            lo = mid + 1
        else:
            hi = mid
    nearby = [k for k in (lo - 1, lo, lo + 1) if 0 <= k < count]
    return step * min(nearby, key=lambda k: abs(f(k * step) - target))


def _bits(osrs: int) -> int:
    # Without the IIR filter the resolution is 16 + (oversampling code - 1) bits.
    return 16 + proto.OSRS_CODE[osrs] - 1


def raw_temperature(celsius: float, cal: proto.Calibration, osrs: int = 16) -> int:
    """adc_T whose t_fine / 5120 is nearest ``celsius``."""
    return _nearest(lambda a: proto.t_fine(a, cal) / 5120.0, celsius, _bits(osrs), 20)


def raw_pressure(pascal: float, fine: int, cal: proto.Calibration, osrs: int = 16) -> int:
    """adc_P whose compensated pressure (at t_fine ``fine``) is nearest ``pascal``."""

    def f(adc: int) -> float:
        q = proto.pressure_int(adc, fine, cal)
        return (q - (1 << 32) if q >= 1 << 31 else q) / 256.0  # undo the uint32 cast

    return _nearest(f, pascal, _bits(osrs), 20)


def raw_humidity(percent: float, fine: int, cal: proto.Calibration) -> int:
    """adc_H whose compensated humidity (at t_fine ``fine``) is nearest ``percent``."""
    return _nearest(lambda a: proto.humidity_int(a, fine, cal) / 1024.0, percent, 16, 16)


class Bme280Chip(Chip):
    """A BME280 (or, with ``chip_id=0x58``, a BMP280-like part) at one address."""

    defaults: ClassVar[dict[str, float]] = {
        "temperature": 21.5,
        "pressure": 101325.0,
        "humidity": 45.0,
    }

    def __init__(
        self,
        calibration: proto.Calibration = DATASHEET_CALIBRATION,
        *,
        chip_id: int = proto.CHIP_ID,
        seed: int = 0,
        clock: Clock = time.monotonic,
    ) -> None:
        """Power up with the given NVM calibration words."""
        super().__init__(seed=seed, clock=clock)
        calibration.check()
        self.calibration = calibration
        self.chip_id = chip_id
        self.measurements = 0
        self._power_on()

    def _power_on(self) -> None:
        self.regs = bytearray(256)
        block_a, block_b = self.calibration.to_bytes()
        self.regs[proto.REG_CALIB_A : proto.REG_CALIB_A + len(block_a)] = block_a
        self.regs[proto.REG_CALIB_B : proto.REG_CALIB_B + len(block_b)] = block_b
        self.regs[proto.REG_ID] = self.chip_id
        self._set_data(proto.SKIPPED_20BIT, proto.SKIPPED_20BIT, proto.SKIPPED_16BIT)
        self.pointer = 0
        self._osrs_h = 0  # ctrl_hum takes effect at the next ctrl_meas write
        self._measure_until: float | None = None  # forced mode
        self._cycle: Cycle | None = None  # normal mode
        self._nvm_until = self.clock() + proto.STARTUP_TIME

    def _set_data(self, adc_p: int, adc_t: int, adc_h: int) -> None:
        self.regs[proto.REG_DATA : proto.REG_DATA + proto.DATA_LEN] = proto.encode_data(
            adc_p, adc_t, adc_h
        )

    def _oversampling(self) -> tuple[int, int, int]:
        meas = self.regs[proto.REG_CTRL_MEAS]
        return proto.oversampling(meas >> 5), proto.oversampling(meas >> 2 & 7), self._osrs_h

    def _tick(self) -> None:
        now = self.clock()
        if self.faults.not_ready:
            return
        if self._cycle is not None:
            if not self._cycle.fresh(now):
                return
        elif self._measure_until is None or now < self._measure_until:
            return
        else:
            self._measure_until = None
            self.regs[proto.REG_CTRL_MEAS] &= 0xFC  # a forced measurement ends in sleep mode
        self.measurements += 1
        if not self.faults.stuck:
            self._set_data(*self.raw(*self._oversampling()))

    def _measuring(self, now: float) -> bool:
        if self._cycle is not None:
            return self.faults.not_ready or self._cycle.converting(now)
        return self._measure_until is not None

    def raw(self, osrs_t: int, osrs_p: int, osrs_h: int) -> tuple[int, int, int]:
        """(adc_P, adc_T, adc_H) of a measurement now; skipped ones read 0x80000/0x8000."""
        values = self.sample()
        cal = self.calibration
        if not osrs_t:
            return proto.SKIPPED_20BIT, proto.SKIPPED_20BIT, proto.SKIPPED_16BIT
        adc_t = raw_temperature(values["temperature"], cal, osrs_t)
        fine = proto.t_fine(adc_t, cal)
        adc_p = (
            raw_pressure(values["pressure"], fine, cal, osrs_p) if osrs_p else proto.SKIPPED_20BIT
        )
        adc_h = raw_humidity(values["humidity"], fine, cal) if osrs_h else proto.SKIPPED_16BIT
        return adc_p, adc_t, adc_h

    def write(self, data: bytes) -> None:
        """Register address, then (address, value) pairs; a lone address sets the pointer."""
        if not data:
            return
        self._tick()
        self.pointer = data[-1] if len(data) % 2 else data[-2]
        for reg, value in zip(data[0::2], data[1::2], strict=False):
            self._write_register(reg, value)

    def _write_register(self, reg: int, value: int) -> None:
        if reg == proto.REG_RESET:
            if value == proto.RESET_WORD:
                self._power_on()
        elif reg == proto.REG_CTRL_HUM:
            self.regs[reg] = value & 0x07
        elif reg == proto.REG_CONFIG:
            self.regs[reg] = value & 0xFD
        elif reg == proto.REG_CTRL_MEAS:
            self.regs[reg] = value
            self._osrs_h = proto.oversampling(self.regs[proto.REG_CTRL_HUM])
            now = self.clock()
            busy = proto.measurement_time(*self._oversampling(), maximum=False)
            self._measure_until, self._cycle = None, None
            if value & 0b11 in (proto.MODE_FORCED, 0b10):
                self._measure_until = now + busy
            elif value & 0b11 == proto.MODE_NORMAL:
                standby = _STANDBY[self.regs[proto.REG_CONFIG] >> 5]
                self._cycle = Cycle(now, busy + standby, busy)
        # Every other register is read-only.

    def read(self, length: int) -> bytes:
        """Read from the pointer on, auto-incrementing."""
        self._tick()
        now = self.clock()
        status = (proto.STATUS_MEASURING if self._measuring(now) else 0) | (
            proto.STATUS_IM_UPDATE if now < self._nvm_until else 0
        )
        self.regs[proto.REG_STATUS] = status
        out = bytes(self.regs[(self.pointer + i) & 0xFF] for i in range(length))
        self.pointer = (self.pointer + length) & 0xFF
        return out
