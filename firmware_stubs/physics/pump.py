"""Deterministic physics of the PD-100: a VFD-driven centrifugal pump on a fixed system curve.

Units follow the register map: rpm, m3/h, bar (gauge), A, degC, mm/s RMS, kW, s.
``truth()`` is the noise-free state; ``measure()`` adds seeded Gaussian sensor noise and the
sensor faults. ``step()`` draws no random numbers, so how time is sliced does not change the
noise sequence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

NOMINAL_SPEED = 2900.0
MAX_SPEED = 3600.0

#: Every input-register point, in register-map order.
POINTS: tuple[str, ...] = (
    "speed",
    "flow",
    "discharge_pressure",
    "suction_pressure",
    "motor_current",
    "motor_temperature",
    "vibration",
    "power",
    "run_seconds",
    "fluid_temperature",
    "status",
)

#: Points with a physical sensor: these carry noise and accept sensor_stuck / drift.
SENSOR_POINTS: tuple[str, ...] = (
    "speed",
    "flow",
    "discharge_pressure",
    "suction_pressure",
    "motor_current",
    "motor_temperature",
    "vibration",
    "power",
    "fluid_temperature",
)

#: Process faults the model understands; sensor faults take ``:<point>``.
PROCESS_FAULTS: tuple[str, ...] = (
    "cavitation",
    "bearing_wear",
    "sensor_stuck",
    "drift",
    "throttle",
)

STATUS_RUNNING = 0x1
STATUS_FAULT = 0x2
STATUS_REMOTE = 0x4

# One-sigma measurement noise of a healthy installation.
_SIGMA: dict[str, float] = {
    "speed": 1.0,
    "flow": 0.3,
    "discharge_pressure": 0.01,
    "suction_pressure": 0.005,
    "motor_current": 0.1,
    "motor_temperature": 0.2,
    "vibration": 0.05,
    "power": 0.05,
    "fluid_temperature": 0.05,
}
# Extra sigma at full cavitation: the flow and pressures fluctuate, the casing rattles.
_SIGMA_CAVITATION: dict[str, float] = {
    "flow": 1.5,
    "discharge_pressure": 0.12,
    "suction_pressure": 0.03,
    "vibration": 0.75,
}
# Additive sensor drift per second of a "drift:<point>" fault (about 0.2 % of nominal).
_DRIFT_RATE: dict[str, float] = {
    "speed": 6.0,
    "flow": 0.12,
    "discharge_pressure": 0.01,
    "suction_pressure": 0.002,
    "motor_current": 0.05,
    "motor_temperature": 0.15,
    "vibration": 0.005,
    "power": 0.025,
    "fluid_temperature": 0.05,
}
_NON_NEGATIVE = frozenset({"speed", "flow", "motor_current", "vibration", "power"})

# Hydraulics at nominal speed; heads are differential pressures in bar, flows in m3/h.
_SHUTOFF_HEAD = 4.8
_PUMP_K = 1.1 / 3600.0
_STATIC_HEAD = 0.5
_SYSTEM_K = 3.2 / 3600.0
_TANK_PRESSURE = 0.9
_SUCTION_K = 0.1 / 3600.0
_Q_BEP = 65.0
_ETA_BEP = 0.62
# Motor and drive.
_ETA_MOTOR = 0.92
_CORE_LOSS_KW = 0.15
_VOLTAGE = 400.0
_POWER_FACTOR = 0.72
_RAMP_RPM_PER_S = 290.0
_RUNNING_RPM = 10.0
# Thermal: steady state = ambient + rise * (I / I_rated)^2, reached with a first-order lag.
_AMBIENT = 25.0
_TEMP_RISE = 40.0
_RATED_CURRENT = 22.0
_TAU_MOTOR = 20.0
# Faults.
_TAU_CAVITATION = 1.5
_CAV_SUCTION = 0.2
_CAV_FLOW_LOSS = 0.2
_CAV_HEAD_LOSS = 0.12
_CAV_VIBRATION = 6.0
_WEAR_RATE = 0.1
_WEAR_MAX = 20.0
_WEAR_HEAT = 1.5
_TAU_WEAR_CLEAR = 2.0
# The discharge valve's loss coefficient when fully open (part of _SYSTEM_K). A valve's loss
# goes as 1/opening^2, so "throttle:f" (opening 1 - f) adds _VALVE_K ((1 - f)^-2 - 1).
_VALVE_K = 0.8 / 3600.0
# Protection thresholds behind the status fault bit (ISO 10816 zone D, insulation class B).
_TRIP_VIBRATION = 7.1
_TRIP_TEMPERATURE = 100.0
_MAX_SUBSTEP = 0.1


def throttle_fraction(arg: str) -> float:
    """The closed fraction of ``throttle:ARG``: a finite number in (0, 1), else ValueError."""
    try:
        fraction = float(arg)
    except ValueError:
        raise ValueError(f"throttle needs a fraction in (0, 1), got {arg!r}") from None
    if not (math.isfinite(fraction) and 0.0 < fraction < 1.0):
        raise ValueError(f"throttle needs a fraction in (0, 1), got {arg!r}")
    return fraction


def check_fault(fault: str) -> None:
    """Raise ValueError unless ``fault`` is a process fault this model understands."""
    name, _, point = fault.partition(":")
    if name not in PROCESS_FAULTS:
        raise ValueError(f"unknown process fault {name!r} (known: {', '.join(PROCESS_FAULTS)})")
    if name == "throttle":
        throttle_fraction(point)
    elif name in {"sensor_stuck", "drift"}:
        if point not in SENSOR_POINTS:
            raise ValueError(
                f"{name} needs a sensor point, got {point!r} (one of {', '.join(SENSOR_POINTS)})"
            )
    elif point:
        raise ValueError(f"{name} takes no argument, got {point!r}")


def _lag(current: float, target: float, dt: float, tau: float) -> float:
    """Advance a first-order lag exactly over dt (stable for any dt)."""
    return target + (current - target) * math.exp(-dt / tau)


class PumpModel:
    """Seeded, deterministic physics of one pump; advance with step(), observe with measure()."""

    def __init__(
        self,
        seed: int = 0,
        *,
        speed_setpoint: float = NOMINAL_SPEED,
        run: bool = True,
        flow_alarm_limit: float = 80.0,
    ) -> None:
        """Start in steady state at the given setpoint (running by default)."""
        self._rng = np.random.default_rng(seed)
        self._setpoint = 0.0
        self.speed_setpoint = speed_setpoint
        self.run = run
        self.flow_alarm_limit = flow_alarm_limit
        self.time = 0.0
        self.run_seconds = 0.0
        self._speed = self._setpoint if run else 0.0
        self._cavitation = 0.0
        self._wear = 0.0
        self._faults: set[str] = set()
        self._throttle = 0.0  # closed fraction of the discharge valve
        self._drift: dict[str, float] = {}
        self._stuck: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._motor_temp = self._motor_temp_target(self._hydraulics()["motor_current"])

    @property
    def speed_setpoint(self) -> float:
        """Commanded speed in rpm (0..3600)."""
        return self._setpoint

    @speed_setpoint.setter
    def speed_setpoint(self, rpm: float) -> None:
        if not 0.0 <= rpm <= MAX_SPEED:
            raise ValueError(f"speed setpoint {rpm} rpm outside 0..{MAX_SPEED:.0f}")
        self._setpoint = float(rpm)

    @property
    def faults(self) -> frozenset[str]:
        """Active process faults, e.g. {"cavitation", "drift:flow"}."""
        return frozenset(self._faults)

    def set_faults(self, faults: Iterable[str]) -> None:
        """Make exactly ``faults`` active; faults not listed are cleared."""
        wanted = set(faults)
        for fault in wanted:
            check_fault(fault)
        for fault in wanted - self._faults:
            name, _, point = fault.partition(":")
            if name == "sensor_stuck":
                self._stuck[point] = self._last.get(point, self._truth_sensor(point))
            elif name == "drift":
                self._drift[point] = 0.0
        for fault in self._faults - wanted:
            name, _, point = fault.partition(":")
            if name == "sensor_stuck":
                self._stuck.pop(point, None)
            elif name == "drift":
                self._drift.pop(point, None)
        self._faults = wanted
        self._throttle = max(
            (throttle_fraction(f[len("throttle:") :]) for f in wanted if f.startswith("throttle:")),
            default=0.0,
        )

    def add_fault(self, fault: str) -> None:
        """Activate one process fault."""
        self.set_faults(self._faults | {fault})

    def clear_fault(self, fault: str) -> None:
        """Clear one process fault (no-op if it is not active)."""
        self.set_faults(self._faults - {fault})

    def step(self, dt: float) -> None:
        """Advance the physics by dt seconds."""
        if dt < 0.0 or not math.isfinite(dt):
            raise ValueError(f"dt must be finite and >= 0, got {dt}")
        remaining = dt
        while remaining > 0.0:
            h = min(_MAX_SUBSTEP, remaining)
            self._substep(h)
            remaining -= h

    def _substep(self, h: float) -> None:
        target = self._setpoint if self.run else 0.0
        ramp = _RAMP_RPM_PER_S * h
        self._speed += max(-ramp, min(ramp, target - self._speed))
        running = self._speed > _RUNNING_RPM
        cavitating = "cavitation" in self._faults and self._speed > 0.3 * NOMINAL_SPEED
        self._cavitation = _lag(self._cavitation, float(cavitating), h, _TAU_CAVITATION)
        if "bearing_wear" in self._faults:
            if running:
                self._wear = min(_WEAR_MAX, self._wear + _WEAR_RATE * h)
        else:
            self._wear = _lag(self._wear, 0.0, h, _TAU_WEAR_CLEAR)
        current = self._hydraulics()["motor_current"]
        self._motor_temp = _lag(self._motor_temp, self._motor_temp_target(current), h, _TAU_MOTOR)
        if running:
            self.run_seconds += h
        for point in self._drift:
            self._drift[point] += _DRIFT_RATE[point] * h
        self.time += h

    def _motor_temp_target(self, current: float) -> float:
        return _AMBIENT + _TEMP_RISE * (current / _RATED_CURRENT) ** 2 + _WEAR_HEAT * self._wear

    def _hydraulics(self) -> dict[str, float]:
        """Operating point where the speed-scaled pump curve meets the system curve."""
        s = self._speed / NOMINAL_SPEED
        if s <= 0.0:
            zero = dict.fromkeys(("flow", "head", "power", "motor_current"), 0.0)
            return {**zero, "suction_pressure": _TANK_PRESSURE}
        # Affinity: pump head H(Q, s) = H0 s^2 - k Q^2; system head = static + r Q^2.
        lift = _SHUTOFF_HEAD * s * s - _STATIC_HEAD
        flow = math.sqrt(lift / (_PUMP_K + self._system_k())) if lift > 0.0 else 0.0
        head = _SHUTOFF_HEAD * s * s - _PUMP_K * flow * flow
        suction = _TANK_PRESSURE - _SUCTION_K * flow * flow
        c = self._cavitation
        flow *= 1.0 - _CAV_FLOW_LOSS * c
        head *= 1.0 - _CAV_HEAD_LOSS * c
        suction += (_CAV_SUCTION - suction) * c
        # Shaft power = Q dp / eta with eta = eta_bep * x (2 - x), x = (Q/s) / Q_bep; written
        # so that Q cancels and shut-off power stays finite.
        x = min(flow / s / _Q_BEP, 1.8)
        shaft_w = s * head * 1e5 * (_Q_BEP / 3600.0) / (_ETA_BEP * (2.0 - x))
        power_kw = shaft_w / 1000.0 / _ETA_MOTOR + _CORE_LOSS_KW * s
        current = power_kw * 1000.0 / (math.sqrt(3.0) * _VOLTAGE * _POWER_FACTOR)
        return {
            "flow": flow,
            "head": head,
            "suction_pressure": suction,
            "power": power_kw,
            "motor_current": current,
        }

    def _system_k(self) -> float:
        """The system curve's quadratic coefficient; the most closed throttle fault wins."""
        opening = 1.0 - self._throttle
        return _SYSTEM_K + _VALVE_K * (1.0 / (opening * opening) - 1.0)

    def _vibration(self) -> float:
        s = self._speed / NOMINAL_SPEED
        base = 0.05 + 1.95 * s * s
        return base + (_CAV_VIBRATION - base) * self._cavitation + self._wear

    def _fluid_temperature(self) -> float:
        t = self.time
        return 20.0 + 1.0 * math.sin(2.0 * math.pi * t / 900.0) + 0.3 * math.sin(t / 137.0)

    def _status(self, flow: float, vibration: float) -> int:
        status = STATUS_REMOTE
        if self._speed > _RUNNING_RPM:
            status |= STATUS_RUNNING
        if (
            vibration > _TRIP_VIBRATION
            or self._motor_temp > _TRIP_TEMPERATURE
            or flow > self.flow_alarm_limit
        ):
            status |= STATUS_FAULT
        return status

    def truth(self) -> dict[str, float]:
        """Noise-free values of every input-register point."""
        hyd = self._hydraulics()
        vibration = self._vibration()
        return {
            "speed": self._speed,
            "flow": hyd["flow"],
            "discharge_pressure": hyd["suction_pressure"] + hyd["head"],
            "suction_pressure": hyd["suction_pressure"],
            "motor_current": hyd["motor_current"],
            "motor_temperature": self._motor_temp,
            "vibration": vibration,
            "power": hyd["power"],
            "run_seconds": self.run_seconds,
            "fluid_temperature": self._fluid_temperature(),
            "status": float(self._status(hyd["flow"], vibration)),
        }

    def _truth_sensor(self, point: str) -> float:
        return self.truth()[point]

    def noise_sigma(self, point: str) -> float:
        """Current one-sigma measurement noise of a sensor point."""
        return _SIGMA[point] + _SIGMA_CAVITATION.get(point, 0.0) * self._cavitation

    def measure(self) -> dict[str, float]:
        """Noisy measured values of every input-register point (one fresh draw per call)."""
        values = self.truth()
        noise = self._rng.standard_normal(len(SENSOR_POINTS))
        for point, z in zip(SENSOR_POINTS, noise, strict=True):
            value = values[point] + self._drift.get(point, 0.0) + float(z) * self.noise_sigma(point)
            if point in _NON_NEGATIVE:
                value = max(0.0, value)
            values[point] = self._stuck.get(point, value)
        self._last = values
        return dict(values)
