"""Configuration: TOML → validated, frozen config objects, with located problems."""

from __future__ import annotations

from edgetwin.config.loader import load_config, load_config_text, render_path
from edgetwin.config.schema import (
    BusConfig,
    Config,
    DeviceConfig,
    GatewayConfig,
    ModbusPointConfig,
    ModbusTcpBusConfig,
    MqttConfig,
    OutboxConfig,
    TwinConfig,
)

__all__ = [
    "BusConfig",
    "Config",
    "DeviceConfig",
    "GatewayConfig",
    "ModbusPointConfig",
    "ModbusTcpBusConfig",
    "MqttConfig",
    "OutboxConfig",
    "TwinConfig",
    "load_config",
    "load_config_text",
    "render_path",
]
