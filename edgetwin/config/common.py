"""Pieces every config fragment shares: names, the strict base model, points and devices."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Name = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
Seconds = Annotated[float, Field(ge=0.05, le=86400)]


class Model(BaseModel):
    """Strict and frozen: unknown keys are errors, loaded objects never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PointBase(Model):
    """What every point has, whatever the bus: a name, a unit, a twin model, a poll period."""

    name: Name
    unit: str = ""
    range: tuple[float, float] | None = None
    model: Literal["level", "trend", "lag", "none"] = Field(
        "level",
        description=(
            "level: random walk + noise; trend: level + rate (drift, wear); "
            "lag: first-order response to the point named by input; none: no twin"
        ),
    )
    input: Name | None = Field(None, description="model = lag: the point that drives this one")
    interval: Seconds | None = Field(None, description="poll period, s; default: the device's")
    resolution: float | None = Field(
        None, gt=0, description="quantisation step on the wire; None: exact float64"
    )
    deadband: float | None = Field(
        None, ge=0, description="report when the value moved more than this since last sent"
    )
    report: Literal["default", "deadband", "model", "full"] = Field(
        "default", description="report-by-exception mode; default: uplink.report"
    )

    @property
    def quantum(self) -> float | None:
        """The smallest step the value can take (its resolution), if known."""
        return self.resolution

    @model_validator(mode="after")
    def _range_ordered(self) -> PointBase:
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError("range must be [low, high] with low < high")
        if self.model == "lag" and self.input is None:
            raise ValueError("model = 'lag' needs input, the point that drives this one")
        if self.model != "lag" and self.input is not None:
            raise ValueError(f"input is only for model = 'lag', not {self.model!r}")
        if self.input == self.name:
            raise ValueError("input must name another point, not the point itself")
        return self


class DeviceBase(Model):
    """What every device has: a name, the bus it sits on, a default poll period."""

    name: Name
    bus: str
    interval: Seconds = Field(1.0, description="poll period, s")
    timeout: float | None = Field(None, gt=0, le=60, description="default: the bus timeout")
    breaker_failures: int = Field(2, ge=1, le=100, description="failed polls before probing")
    probe_max: float = Field(30.0, ge=0.1, le=3600, description="longest wait between probes, s")
