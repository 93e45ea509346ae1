"""`edgetwin check --probe`: read every configured point once, for commissioning."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgetwin.config import Config
from edgetwin.core.types import Quality
from edgetwin.runtime.devices import call_optional, make_device, open_link


@dataclass(frozen=True)
class ProbeRow:
    """One point as read once."""

    device: str
    point: str
    value: float
    unit: str
    quality: Quality
    error: str


async def probe(cfg: Config) -> list[ProbeRow]:
    """Poll every device once (all points), in config order; never raises for a device."""
    rows: list[ProbeRow] = []
    links = {bus.name: open_link(bus) for bus in cfg.buses}
    try:
        for dev in cfg.devices:
            device = make_device(dev, links[dev.bus])
            try:
                await call_optional(device, "start")
                result = await device.poll()
            except Exception as exc:  # noqa: BLE001 - a probe reports, it does not stop
                rows += [
                    ProbeRow(dev.name, p.name, math.nan, p.unit, Quality.COMM_FAIL, str(exc))
                    for p in dev.points
                ]
                continue
            finally:
                await call_optional(device, "close")
            error = str(result.errors[0]) if result.errors else ""
            rows += [
                ProbeRow(
                    dev.name,
                    p.name,
                    float(result.values[i]),
                    p.unit,
                    Quality(int(result.quality[i])),
                    error if result.quality[i] else "",
                )
                for i, p in enumerate(dev.points)
            ]
    finally:
        for link in links.values():
            await call_optional(link, "close")
    return rows
