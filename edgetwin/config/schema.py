"""Typed, frozen configuration objects; field-level checks only (cross-references: loader)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Discriminator, Field, Tag, field_validator

from edgetwin.config.common import Model as _Model
from edgetwin.config.common import Name
from edgetwin.config.i2c import I2cBusConfig, I2cDeviceConfig
from edgetwin.config.modbus import (
    ModbusDeviceConfig,
    ModbusPointConfig,
    ModbusRtuBusConfig,
    ModbusRtuTcpBusConfig,
    ModbusTcpBusConfig,
)
from edgetwin.config.serial import SerialBusConfig, SerialDeviceConfig

__all__ = [
    "BusConfig",
    "Config",
    "DeviceConfig",
    "GatewayConfig",
    "ModbusDeviceConfig",
    "ModbusPointConfig",
    "ModbusRtuBusConfig",
    "ModbusRtuTcpBusConfig",
    "ModbusTcpBusConfig",
    "MqttConfig",
    "Name",
    "OutboxConfig",
    "TwinConfig",
    "UplinkConfig",
]


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


class UplinkConfig(_Model):
    """What goes on the wire: report-by-exception and snapshots."""

    report: Literal["deadband", "model", "full"] = Field(
        "deadband",
        description=(
            "deadband: a point is sent when it moved more than its deadband (or resolution); "
            "model: when the twin's prediction error exceeds model_sigmas; full: every sample"
        ),
    )
    model_sigmas: float = Field(3.0, gt=0, description="bound for report = model, in sigmas")
    heartbeat: float = Field(60.0, ge=0.1, le=86400, description="max age of a point upstream, s")
    snapshot_every: float = Field(300.0, ge=1, le=86400, description="full snapshot period, s")


class TwinConfig(_Model):
    """Defaults for the twin estimator; the first samples of each point calibrate its noise."""

    commissioning: int = Field(30, ge=5, le=1_000_000, description="samples per point")
    threshold: float = Field(10.83, gt=0, description="NIS bound (chi2, 1 dof, 99.9 %)")
    cusum_k: float = Field(0.5, ge=0, description="CUSUM allowance, in sigmas")
    cusum_h: float = Field(8.0, gt=0, description="CUSUM decision level, in sigmas")
    alarm_on: int = Field(3, ge=1, le=10_000, description="consecutive samples to raise")
    alarm_off: int = Field(5, ge=1, le=10_000, description="consecutive samples to clear")


def _driver(device: Any) -> str:
    """Which device schema applies: ``driver`` names it; Modbus when absent."""
    if isinstance(device, dict):
        return str(device.get("driver", "modbus"))
    return str(getattr(device, "driver", "modbus"))


BusConfig = Annotated[
    ModbusTcpBusConfig
    | ModbusRtuBusConfig
    | ModbusRtuTcpBusConfig
    | SerialBusConfig
    | I2cBusConfig,
    Field(discriminator="kind"),
]
DeviceConfig = Annotated[
    Annotated[ModbusDeviceConfig, Tag("modbus")]
    | Annotated[SerialDeviceConfig, Tag("serial")]
    | Annotated[I2cDeviceConfig, Tag("i2c")],
    Discriminator(_driver),
]


class Config(_Model):
    """The whole gateway configuration."""

    gateway: GatewayConfig
    mqtt: MqttConfig = MqttConfig()
    outbox: OutboxConfig = OutboxConfig()
    twin: TwinConfig = TwinConfig()
    uplink: UplinkConfig = UplinkConfig()
    buses: list[BusConfig] = Field(min_length=1)
    devices: list[DeviceConfig] = Field(min_length=1)

    def bus(self, name: str) -> BusConfig:
        """Return the bus called ``name`` (the loader has checked every reference)."""
        return next(b for b in self.buses if b.name == name)
