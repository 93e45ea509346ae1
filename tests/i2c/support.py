"""Helpers shared by the I2C tests."""

from __future__ import annotations

from typing import Any

from edgetwin.config.i2c import I2cDeviceConfig


def device_cfg(
    chip: str, address: int, *points: str | dict[str, Any], **settings: Any
) -> I2cDeviceConfig:
    """A validated device config; a point given as a string is ``{"name": it}``."""
    return I2cDeviceConfig.model_validate(
        {
            "name": f"{chip}-{address:02x}",
            "bus": "i2c1",
            "driver": "i2c",
            "chip": chip,
            "address": address,
            "points": [{"name": p} if isinstance(p, str) else p for p in points],
            **settings,
        }
    )
