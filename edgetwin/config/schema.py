"""Typed, frozen configuration objects; field-level checks only (cross-references: loader)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgetwin.protocols.modbus.codec import REGISTER_COUNT, ByteOrder, ValueType

Name = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewayConfig(_Model):
    """Who this gateway is and where it keeps its state."""

    id: Name
    state_dir: Path = Path("/var/lib/edgetwin")


class MqttConfig(_Model):
    """The upstream broker."""

    url: str = "mqtt://127.0.0.1:1883"
    topic_prefix: str = "edgetwin/v1"
    client_id: str | None = None
    username: str | None = None
    password_file: Path | None = None
    keepalive: int = Field(30, ge=5, le=3600)
    protocol: Literal["5", "3.1.1"] = "5"
    reconnect_max: float = Field(30.0, gt=0, le=3600, description="backoff cap, seconds")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in {"mqtt", "mqtts"}:
            raise ValueError("must start with mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("has no host")
        try:
            _ = parts.port
        except ValueError as exc:
            raise ValueError("has an invalid port") from exc
        return v

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or v.startswith("/") or v.endswith("/") or any(c in v for c in "#+\0"):
            raise ValueError("must be a non-empty topic without wildcards or outer slashes")
        return v

    @property
    def host(self) -> str:
        """Broker host name from the URL."""
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        """Broker port from the URL (1883, or 8883 for mqtts)."""
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)


class OutboxConfig(_Model):
    """The SQLite store-and-forward outbox."""

    commit_interval: float = Field(0.25, gt=0, le=10, description="seconds between commits")
    max_bytes: int = Field(256 * 1024 * 1024, ge=64 * 1024)
    grace_period: float = Field(10.0, ge=0, le=300, description="shutdown flush budget, s")


class TwinConfig(_Model):
    """Defaults for the twin estimator; the first samples of each point calibrate its noise."""

    commissioning: int = Field(30, ge=5, le=1_000_000, description="samples per point")
    threshold: float = Field(10.83, gt=0, description="NIS bound (chi2, 1 dof, 99.9 %)")
    cusum_k: float = Field(0.5, ge=0, description="CUSUM allowance, in sigmas")
    cusum_h: float = Field(8.0, gt=0, description="CUSUM decision level, in sigmas")
    alarm_on: int = Field(3, ge=1, le=10_000, description="consecutive samples to raise")
    alarm_off: int = Field(5, ge=1, le=10_000, description="consecutive samples to clear")


class ModbusTcpBusConfig(_Model):
    """A Modbus TCP endpoint (a device, or a gateway with several unit ids behind it)."""

    kind: Literal["modbus_tcp"]
    name: Name
    host: str
    port: int = Field(502, ge=1, le=65535)
    timeout: float = Field(1.0, gt=0, le=60)


BusConfig = Annotated[ModbusTcpBusConfig, Field(discriminator="kind")]

Table = Literal["coil", "discrete", "holding", "input"]


class ModbusPointConfig(_Model):
    """One value read from a Modbus device."""

    name: Name
    table: Table
    address: int = Field(ge=0, le=65535)
    type: ValueType = "uint16"
    order: ByteOrder = "ABCD"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    range: tuple[float, float] | None = None
    model: Literal["level", "none"] = "level"

    @model_validator(mode="after")
    def _fits(self) -> ModbusPointConfig:
        bit_table = self.table in {"coil", "discrete"}
        if bit_table != (self.type == "bool"):
            raise ValueError(
                f"type {self.type!r} does not fit table {self.table!r} "
                "(coils and discrete inputs are bool; registers are numeric)"
            )
        last = self.address + REGISTER_COUNT[self.type] - 1
        if last > 65535:
            raise ValueError(f"register out of range: {self.type} at {self.address} ends at {last}")
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError("range must be [low, high] with low < high")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self


class DeviceConfig(_Model):
    """A device on a bus and the points read from it."""

    name: Name
    bus: str
    unit: int = Field(1, ge=0, le=255)
    interval: float = Field(1.0, ge=0.05, le=86400, description="poll period, s")
    max_gap: int = Field(8, ge=0, le=124, description="unused registers read through")
    max_registers: int = Field(125, ge=1, le=125)
    points: list[ModbusPointConfig] = Field(min_length=1)


class Config(_Model):
    """The whole gateway configuration."""

    gateway: GatewayConfig
    mqtt: MqttConfig = MqttConfig()
    outbox: OutboxConfig = OutboxConfig()
    twin: TwinConfig = TwinConfig()
    buses: list[BusConfig] = Field(min_length=1)
    devices: list[DeviceConfig] = Field(min_length=1)

    def bus(self, name: str) -> ModbusTcpBusConfig:
        """Return the bus called ``name`` (the loader has checked every reference)."""
        return next(b for b in self.buses if b.name == name)
