"""Typed, frozen configuration objects; field-level checks only (cross-references: loader)."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

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
from edgetwin.core.smoothing import effective_samples

__all__ = [
    "AssetConfig",
    "BusConfig",
    "Config",
    "DeviceConfig",
    "GatewayConfig",
    "MetricsConfig",
    "ModbusDeviceConfig",
    "ModbusPointConfig",
    "ModbusRtuBusConfig",
    "ModbusRtuTcpBusConfig",
    "ModbusTcpBusConfig",
    "MqttConfig",
    "Name",
    "OutboxConfig",
    "PointRef",
    "TwinConfig",
    "UplinkConfig",
]


class GatewayConfig(_Model):
    """Who this gateway is and where it keeps its state."""

    id: Name
    state_dir: Path = Path("/var/lib/edgetwin")


class MqttConfig(_Model):
    """The upstream broker: address, credentials, TLS and session."""

    url: str = "mqtt://127.0.0.1:1883"
    topic_prefix: str = "edgetwin/v1"
    client_id: str | None = Field(None, min_length=1, max_length=256)
    username: str | None = None
    password_file: Path | None = None
    keepalive: int = Field(30, ge=5, le=3600)
    protocol: Literal["5", "3.1.1"] = "5"
    reconnect_max: float = Field(30.0, gt=0, le=3600, description="backoff cap, seconds")
    tls_ca: Path | None = Field(None, description="CA certificates (PEM); default: system store")
    tls_cert: Path | None = Field(None, description="client certificate chain (PEM)")
    tls_key: Path | None = Field(None, description="private key of tls_cert (PEM, unencrypted)")
    tls_insecure: bool = Field(False, description="skip the broker host name check; tests only")
    clean_start: bool = Field(
        True, description="false: resume the broker's session (3.1.1: clean_session = false)"
    )
    session_expiry: int = Field(
        0, ge=0, le=0xFFFF_FFFF, description="MQTT 5: s the broker keeps a closed session"
    )
    inflight: int = Field(32, ge=1, le=1000, description="QoS 1 messages awaiting PUBACK")

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

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, v: str | None) -> str | None:
        if v is not None and any(not c.isprintable() or c.isspace() for c in v):
            raise ValueError("must not contain spaces or control characters")
        return v

    @field_validator("tls_ca", "tls_cert", "tls_key")
    @classmethod
    def _tls_file(cls, v: Path | None) -> Path | None:
        if v is None:
            return v
        if not v.is_absolute():
            raise ValueError("must be an absolute path")
        try:
            mode = v.stat().st_mode
        except FileNotFoundError:
            raise ValueError("file does not exist") from None
        except OSError as exc:
            raise ValueError(f"cannot access the file: {exc.strerror}") from None
        if not stat.S_ISREG(mode):  # opening a FIFO would block
            raise ValueError("is not a regular file")
        try:
            with v.open("rb"):
                pass
        except OSError as exc:
            raise ValueError(f"file is not readable: {exc.strerror}") from None
        return v

    @model_validator(mode="after")
    def _tls_and_session(self) -> MqttConfig:
        tls = self.tls
        named = ("tls_ca", "tls_cert", "tls_key", "tls_insecure")
        given = [k for k in named if getattr(self, k) not in (None, False)]
        if given and not tls:
            verb = "need" if len(given) > 1 else "needs"
            raise ValueError(f"{' and '.join(given)} {verb} an mqtts:// url")
        if self.tls_key is not None and self.tls_cert is None:
            raise ValueError("tls_key needs tls_cert, the client certificate it belongs to")
        if self.tls_cert is not None and self.tls_key is None:
            raise ValueError("tls_cert needs tls_key (a PEM file holding both: name it twice)")
        if tls and self.tls_ca is None and not self._system_ca_store():
            raise ValueError("mqtts:// without tls_ca needs the system CA store; none found")
        if self.protocol == "3.1.1" and self.session_expiry:
            raise ValueError("session_expiry is MQTT 5 only; a 3.1.1 broker decides it")
        if self.protocol == "5" and not self.clean_start and not self.session_expiry:
            raise ValueError(
                "clean_start = false needs session_expiry > 0 with MQTT 5 "
                "(a session with expiry 0 ends at the disconnect)"
            )
        return self

    @staticmethod
    def _system_ca_store() -> bool:
        paths = ssl.get_default_verify_paths()
        if paths.cafile and Path(paths.cafile).is_file():
            return True
        capath = Path(paths.capath) if paths.capath else None
        return capath is not None and capath.is_dir() and any(capath.glob("*.[0-9]"))

    @property
    def host(self) -> str:
        """Broker host name from the URL."""
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        """Broker port from the URL (1883, or 8883 for mqtts)."""
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        """Whether the URL asks for TLS (mqtts://)."""
        return urlsplit(self.url).scheme == "mqtts"


class OutboxConfig(_Model):
    """The SQLite store-and-forward outbox."""

    commit_interval: float = Field(0.25, gt=0, le=10, description="seconds between commits")
    max_bytes: int = Field(256 * 1024 * 1024, ge=4096)
    grace_period: float = Field(10.0, ge=0, le=300, description="shutdown flush budget, s")
    max_age: float | None = Field(
        None, gt=0, description="drop frames older than this, s (oldest chains first)"
    )


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
    frame_interval: float = Field(
        1.0, ge=0, le=60, description="collect rows this long per frame, s; 0: a frame a poll"
    )


class MetricsConfig(_Model):
    """The Prometheus endpoint (/metrics) and the status document (/status.json)."""

    enabled: bool = True
    host: str = Field("127.0.0.1", description="listen address; loopback keeps it local")
    port: int = Field(9877, ge=1, le=65535)


class TwinConfig(_Model):
    """Defaults for the twin estimator; the first samples of each point calibrate its noise."""

    commissioning: int = Field(30, ge=5, le=1_000_000, description="samples per point")
    threshold: float = Field(10.83, gt=0, description="NIS bound (chi2, 1 dof, 99.9 %)")
    cusum_k: float = Field(0.5, ge=0, description="CUSUM allowance, in sigmas")
    cusum_h: float = Field(8.0, gt=0, description="CUSUM decision level, in sigmas")
    alarm_on: int = Field(3, ge=1, le=10_000, description="consecutive samples to raise")
    alarm_off: int = Field(5, ge=1, le=10_000, description="consecutive samples to clear")
    horizon: int = Field(
        1000, ge=10, le=10_000_000, description="samples the online learning remembers (lag)"
    )
    major: float = Field(2.0, gt=1, description="alarm severity major from this score")
    critical: float = Field(5.0, gt=1, description="alarm severity critical from this score")
    persist_interval: float = Field(
        60.0, ge=1, le=86400, description="seconds between saves of the twin state"
    )

    @model_validator(mode="after")
    def _severities(self) -> TwinConfig:
        if self.critical <= self.major:
            raise ValueError("critical must be above major")
        return self


# A point of an asset: "point" (of the asset's device) or "device.point"; names hold no '.'.
PointRef = Annotated[
    str,
    Field(pattern=r"^([A-Za-z][A-Za-z0-9_-]{0,63}\.)?[A-Za-z][A-Za-z0-9_-]{0,63}$"),
]


class AssetConfig(_Model):
    """A multivariate twin over points of one or several devices: how they move together.

    A point is named ``"point"`` (a point of ``device``) or ``"device.point"``; names cannot
    hold a '.', so the split is unambiguous. ``device`` is needed only for bare names.
    """

    name: Name
    device: Name | None = Field(
        None, description="the device of bare point names; required unless every name is qualified"
    )
    points: list[PointRef] = Field(min_length=2, max_length=32)
    commissioning: int = Field(600, ge=5, le=1_000_000, description="complete polls")
    smoothing: float = Field(10.0, ge=0, le=1e6, description="time constant, samples; 0: off")
    threshold: float | None = Field(
        None, gt=0, description="score bound; default: Hotelling's 99 % prediction bound"
    )
    shrinkage: float = Field(0.2, gt=0, le=1, description="covariance pull to its diagonal")
    baseline_horizon: float = Field(
        1000.0, ge=0, description="samples the baseline follows slow change over; 0: frozen"
    )
    cov_horizon: float = Field(
        86400.0, ge=0, description="samples the covariance follows change over; 0: frozen"
    )
    recovery: float = Field(
        0.5, ge=0, lt=1, description="an alarm clears when this share of its signature is left"
    )
    settle: int = Field(120, ge=0, le=1_000_000, description="samples re-learnt after an alarm")
    alarm_on: int = Field(3, ge=1, le=10_000, description="scores over the bound to raise")
    alarm_off: int = Field(30, ge=1, le=10_000, description="scores under it to clear")
    fast_smoothing: float = Field(
        3.0, ge=0, le=1e6, description="time constant of the fast statistic, samples"
    )
    fast_threshold: float | None = Field(
        None, gt=0, description="fast score bound; default: Hotelling's 99.9 % prediction bound"
    )
    recovery_off: int = Field(
        5, ge=1, le=10_000, description="ticks with the signature faded before an alarm clears"
    )

    @field_validator("baseline_horizon", "cov_horizon")
    @classmethod
    def _horizon(cls, v: float) -> float:
        if 0 < v < 1:
            raise ValueError("must be 0 (frozen) or at least 1 sample")
        return v

    @model_validator(mode="after")
    def _members(self) -> AssetConfig:
        # The loader reports these per listed point, with hints; this is the model's own guard.
        seen: set[tuple[str, str]] = set()
        for ref in self.points:
            if "." not in ref and self.device is None:
                raise ValueError(f"point {ref!r} has no device: write 'device.{ref}' or set device")
            member = self._resolve(ref)
            if member in seen:
                raise ValueError(f"point {ref!r} is listed twice")
            seen.add(member)
        if self.device is not None and all(d != self.device for d, _ in seen):
            raise ValueError(f"device {self.device!r} holds none of the asset's points")
        return self

    @model_validator(mode="after")
    def _enough_samples(self) -> AssetConfig:
        k = len(self.points)
        n_eff = effective_samples(self.commissioning, self.smoothing)
        if self.threshold is None and not n_eff > k + 1:
            raise ValueError(
                f"commissioning of {self.commissioning} samples with smoothing "
                f"{self.smoothing:g} is worth {n_eff:.3g} independent samples, too few to "
                f"bound a score over {k} points: lengthen commissioning or give a threshold"
            )
        return self

    def _resolve(self, ref: str) -> tuple[str, str]:
        device, _, point = ref.rpartition(".")
        return (device or str(self.device), point)

    @property
    def members(self) -> list[tuple[str, str]]:
        """Each listed point as (device, point), in the listed order."""
        return [self._resolve(ref) for ref in self.points]

    @property
    def devices(self) -> list[str]:
        """The devices the asset reads: ``device`` (else the first point's) first, then in order."""
        first = [self.device] if self.device is not None else []
        return list(dict.fromkeys([*first, *(d for d, _ in self.members)]))

    @property
    def primary(self) -> str:
        """The device that names the asset where one device is expected (events, metrics)."""
        return self.devices[0]

    @property
    def point_names(self) -> list[str]:
        """The points' names in the twin: bare on one device, ``device.point`` across several."""
        if len(self.devices) == 1:
            return [p for _, p in self.members]
        return [f"{d}.{p}" for d, p in self.members]

    def params(self) -> dict[str, Any]:
        """The asset model's parameters (everything but what names the asset)."""
        return self.model_dump(exclude={"name", "device", "points"})


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
    metrics: MetricsConfig = MetricsConfig()
    buses: list[BusConfig] = Field(min_length=1)
    devices: list[DeviceConfig] = Field(min_length=1)
    assets: list[AssetConfig] = Field(default_factory=list)

    def bus(self, name: str) -> BusConfig:
        """Return the bus called ``name`` (the loader has checked every reference)."""
        return next(b for b in self.buses if b.name == name)
