"""Scenario files: TOML → validated, frozen objects (pydantic v2) with located errors; scaling.

A scenario names the gateway config to run, the simulated device (if any), the fault timeline
with what the gateway must report for each window, and how long the run lasts. Times are
seconds on the scenario's timeline (t = 0 when the first fault could start; see README.md).
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edgetwin.config import Config, load_config, load_config_text
from edgetwin.errors import ConfigError
from firmware_stubs.faults import COMM_FAULTS, parse_fault
from firmware_stubs.physics import pump as pump_physics

Name = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
#: The gateway's shortest poll period (edgetwin.config.common.Seconds).
MIN_INTERVAL = 0.05
#: Bus kinds a simulated pump can serve, and the stub flag that selects the framing.
STUB_FRAMING = {"modbus_tcp": [], "modbus_rtu_tcp": ["--rtu-tcp"]}


class ScenarioError(Exception):
    """A scenario that cannot run; ``problems`` are located, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Model):
    """Whose raises an entry concerns: a point's or an asset's alarm, or a device going offline."""

    kind: Literal["alarm", "offline"] = "alarm"
    device: Name | None = None
    point: Name | None = None
    asset: Name | None = None

    @model_validator(mode="after")
    def _target(self) -> Target:
        if self.kind == "alarm" and (self.point is None) == (self.asset is None):
            raise ValueError("an alarm entry names exactly one of 'point' and 'asset'")
        if self.kind == "offline" and (self.device is None or self.point or self.asset):
            raise ValueError("an offline entry names a 'device' and no point or asset")
        return self

    @property
    def label(self) -> str:
        """E.g. ``asset hydraulics alarm``, ``point pump1.flow alarm``, ``pump1 offline``."""
        dev = f"{self.device}." if self.device else ""
        if self.kind == "offline":
            return f"{self.device} offline"
        if self.asset is not None:
            return f"asset {self.asset} alarm"
        return f"point {dev}{self.point} alarm"


class Expect(Target):
    """What the gateway must report for a fault window, and how soon."""

    within: float = Field(gt=0, description="max detection delay after the window start, s")
    clears: bool = Field(True, description="the alarm (or offline state) must end after")


class FaultWindow(_Model):
    """One fault, active from ``start`` for ``duration`` seconds."""

    fault: str = Field(description="NAME[:ARG] as firmware_stubs takes it, e.g. late:2.5")
    start: float = Field(ge=0)
    duration: float = Field(gt=0)
    note: str = Field("", description="what the rig operator does, printed in --rig mode")
    only_expected: bool = Field(
        False,
        description="only the expectations' own raises are excused in this window; any other "
        "alarm raised in it counts as false (default: any alarm in the window is excused)",
    )
    expect: list[Expect] = Field(default_factory=list)
    tolerate: list[Target] = Field(
        default_factory=list,
        description="with only_expected: raises of these are excused in this window too, "
        "but not required (e.g. a level model flagging a step the fault makes)",
    )

    @model_validator(mode="after")
    def _tolerate(self) -> FaultWindow:
        if self.tolerate and not self.only_expected:
            raise ValueError("'tolerate' needs only_expected = true (else every raise is excused)")
        return self

    @field_validator("fault")
    @classmethod
    def _fault(cls, fault: str) -> str:
        parse_fault(fault)  # ValueError names the bad token
        if fault.partition(":")[0] not in COMM_FAULTS:
            pump_physics.check_fault(fault)
        return fault

    @property
    def end(self) -> float:
        """First instant the fault is no longer active."""
        return self.start + self.duration

    def spec(self, shift: float = 0.0) -> str:
        """The stub's ``--fault`` spec, on the device's clock (``shift`` s after its start)."""
        return f"{self.fault}@{self.start + shift:g}+{self.duration:g}"


class Simulated(_Model):
    """The device side when no rig is attached: which stub to start and which bus reaches it."""

    stub: Literal["pump"] = "pump"
    bus: Name = Field(description="the gateway config's bus that the runner points at the stub")
    seed: int = 0


class GatewaySection(_Model):
    """The gateway config: a path (relative to the scenario file) or an inline table."""

    config: str | dict[str, Any]


class Scenario(_Model):
    """A whole scenario file."""

    name: Name
    description: str
    duration: float = Field(gt=0, description="length of the timeline, s")
    clear_grace: float = Field(
        15.0, ge=0, description="after a window ends, s during which its alarms may still clear"
    )
    false_alarms_allowed: int = Field(0, ge=0)
    gateway: GatewaySection
    device: Simulated | None = None
    faults: list[FaultWindow] = Field(min_length=1)

    @model_validator(mode="after")
    def _timeline(self) -> Scenario:
        for i, w in enumerate(self.faults):
            if w.end > self.duration:
                raise ValueError(
                    f"faults[{i}] ends at {w.end:g} s, after the scenario's duration "
                    f"{self.duration:g} s"
                )
            if any(e.clears for e in w.expect) and w.end + self.clear_grace > self.duration:
                raise ValueError(
                    f"faults[{i}] expects a clear until {w.end:g} + clear_grace "
                    f"{self.clear_grace:g} = {w.end + self.clear_grace:g} s, after the "
                    f"scenario's duration {self.duration:g} s"
                )
        return self

    def scaled(self, f: float) -> Scenario:
        """Every time of the timeline multiplied by ``f`` (and ``late:`` delays)."""
        data = self.model_dump()
        data["duration"] *= f
        data["clear_grace"] *= f
        for w in data["faults"]:
            w["start"] *= f
            w["duration"] *= f
            name, _, arg = w["fault"].partition(":")
            if name == "late":
                w["fault"] = f"late:{float(arg) * f:g}"
            for e in w["expect"]:
                e["within"] *= f
        return Scenario.model_validate(data)


@dataclass(frozen=True)
class Loaded:
    """A validated scenario and the gateway config table it runs (before the runner fills it)."""

    path: Path
    scenario: Scenario
    config: dict[str, Any]

    def gateway_config(
        self, *, broker: str, state_dir: Path, stub_port: int | None, scale: float = 1.0
    ) -> tuple[str, Config]:
        """The config to run as TOML text, and validated; ScenarioError if it cannot run."""
        data = fill_config(
            self.config,
            broker=broker,
            state_dir=state_dir,
            bus=self.scenario.device.bus if self.scenario.device and stub_port else None,
            stub_port=stub_port,
            scale=scale,
        )
        text = tomli_w.dumps(data)
        try:
            cfg = load_config_text(text, filename=str(self.path))
        except ConfigError as exc:
            raise ScenarioError(
                [f"{self.path}: [gateway.config.{p.path}] {p.message}" for p in exc.problems]
            ) from exc
        return text, cfg


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _scale_floor(data: dict[str, Any]) -> float:
    intervals = [float(d.get("interval", 1.0)) for d in data.get("devices", [])]
    intervals += [
        float(p["interval"])
        for d in data.get("devices", [])
        for p in d.get("points", [])
        if "interval" in p
    ]
    return MIN_INTERVAL / min(intervals) if intervals else 0.0


def fill_config(
    config: dict[str, Any],
    *,
    broker: str,
    state_dir: Path,
    bus: str | None,
    stub_port: int | None,
    scale: float = 1.0,
) -> dict[str, Any]:
    """``config`` pointed at the broker, state dir and stub, with its pacing scaled by ``scale``.

    Scaling multiplies every poll interval, bus and device timeout and ``probe_max`` by
    ``scale``, so counts of polls (commissioning, alarm_on, settle...) keep their meaning in
    samples while lasting ``scale`` times as long. Metrics are off unless the config sets them.
    """
    data = copy.deepcopy(config)
    data.setdefault("gateway", {})["state_dir"] = str(state_dir)
    data.setdefault("mqtt", {})["url"] = broker
    data.setdefault("metrics", {"enabled": False})
    if bus is not None:
        for b in data.get("buses", []):
            if b.get("name") == bus:
                b["host"], b["port"] = "127.0.0.1", stub_port
    if scale != 1.0:
        floor = _scale_floor(data)
        if scale < floor - 1e-9:
            raise ScenarioError(
                [
                    f"--scale {scale:g}: a device would poll faster than the gateway's "
                    f"{MIN_INTERVAL:g} s minimum; the smallest scale for this scenario is "
                    f"{floor:.3g}"
                ]
            )
        for b in data.get("buses", []):
            b["timeout"] = float(b.get("timeout", 1.0)) * scale
        for d in data.get("devices", []):
            d["interval"] = max(MIN_INTERVAL, float(d.get("interval", 1.0)) * scale)
            if "timeout" in d:
                d["timeout"] = float(d["timeout"]) * scale
            d["probe_max"] = max(0.1, float(d.get("probe_max", 30.0)) * scale)
            for p in d.get("points", []):
                if "interval" in p:
                    p["interval"] = max(MIN_INTERVAL, float(p["interval"]) * scale)
    return data


def _check_references(scenario: Scenario, cfg: Config, where: str) -> list[str]:
    devices = {d.name: {p.name for p in d.points} for d in cfg.devices}
    assets = {a.name for a in cfg.assets}
    problems: list[str] = []
    if scenario.device is not None:
        bus = next((b for b in cfg.buses if b.name == scenario.device.bus), None)
        if bus is None:
            problems.append(f"{where} [device.bus] no bus {scenario.device.bus!r} in the config")
        elif bus.kind not in STUB_FRAMING:
            problems.append(
                f"{where} [device.bus] bus {bus.name!r} is {bus.kind}; the pump stub serves "
                f"{' or '.join(STUB_FRAMING)}"
            )
    entries = [
        (f"faults[{i}].{field}[{j}]", e)
        for i, w in enumerate(scenario.faults)
        for field, listed in (("expect", w.expect), ("tolerate", w.tolerate))
        for j, e in enumerate(listed)
    ]
    for name, e in entries:
        key = f"{where} [{name}]"
        if e.device is not None and e.device not in devices:
            problems.append(f"{key} no device {e.device!r} in the gateway config")
        elif e.asset is not None and e.asset not in assets:
            problems.append(f"{key} no asset {e.asset!r} in the gateway config")
        elif e.point is not None and not any(
            e.point in pts for d, pts in devices.items() if e.device in (None, d)
        ):
            problems.append(f"{key} no point {e.point!r} in the gateway config")
    return problems


def load_scenario(path: Path | str) -> Loaded:
    """Read and validate a scenario file and its gateway config; ScenarioError on any problem."""
    path = Path(path)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError([f"{where}: cannot read the file: {exc.strerror or exc}"]) from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError([f"{where}: not valid TOML: {exc}"]) from exc
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{where}: [{_loc(err['loc'])}] {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors(include_url=False)
        ]
        raise ScenarioError(problems) from exc
    source = scenario.gateway.config
    if isinstance(source, str):
        cfg_path = (path.parent / source).resolve()
        try:
            load_config(cfg_path)  # located problems: the config file's own lines
            config = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except ConfigError as exc:
            raise ScenarioError([f"{where} [gateway.config]: {p}" for p in exc.problems]) from exc
    else:
        config = source
    loaded = Loaded(path, scenario, config)
    port = 1 if scenario.device is not None else None
    _, cfg = loaded.gateway_config(
        broker="mqtt://127.0.0.1:1883", state_dir=Path("/tmp/hil-check"), stub_port=port
    )
    problems = _check_references(scenario, cfg, where)
    if problems:
        raise ScenarioError(problems)
    return loaded
