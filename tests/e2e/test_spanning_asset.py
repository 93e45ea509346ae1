"""An asset over two devices, through the real gateway: two simulated pump units polled over
Modbus TCP, the twin on its own thread, /status.json and /metrics over HTTP, and the asset's
state saved on stop and resumed by the next start."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgetwin.config.schema import Config
from edgetwin.runtime.gateway import Gateway
from firmware_stubs.modbus.pump import PumpDevice, PumpServer
from tests.metrics.support import http_get, samples, scrape
from tests.support.mosquitto import Mosquitto

POINTS = [
    {"name": "speed", "table": "input", "address": 0, "type": "float32", "model": "none"},
    {"name": "flow", "table": "input", "address": 2, "type": "float32", "model": "none"},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(tmp: Path, pump_port: int, broker: str, metrics_port: int) -> Config:
    devices = [
        {"name": name, "bus": "plant", "unit": unit, "interval": interval, "points": POINTS}
        for name, unit, interval in [("drive", 1, 0.1), ("motor", 2, 0.3)]
    ]
    return Config.model_validate(
        {
            "gateway": {"id": "edge-01", "state_dir": str(tmp / "state")},
            "mqtt": {"url": broker},
            "metrics": {"port": metrics_port},
            "buses": [
                {"kind": "modbus_tcp", "name": "plant", "host": "127.0.0.1", "port": pump_port}
            ],
            "devices": devices,
            "assets": [
                {
                    "name": "drivetrain",
                    "points": ["drive.speed", "drive.flow", "motor.speed"],
                    "commissioning": 20,
                    "smoothing": 0.0,
                    "threshold": 1e6,
                    "settle": 0,
                }
            ],
        }
    )


async def until(cond: Callable[[], Any], limit: float = 30.0) -> Any:
    async with asyncio.timeout(limit):
        while not (value := await cond()):
            await asyncio.sleep(0.1)
        return value


async def test_an_asset_over_two_devices_commissions_reports_and_resumes(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgetwin")
    server = PumpServer([PumpDevice(1, seed=1), PumpDevice(2, seed=2)], "127.0.0.1", 0)
    await server.start()
    port = free_port()
    cfg = config(tmp_path, server.port, mosquitto.url, port)
    base = f"http://127.0.0.1:{port}"

    async def calibrated_asset() -> dict[str, Any] | None:
        try:
            code, _, body = await http_get(base + "/status.json")
        except OSError:
            return None
        if code != 200:
            return None
        assets = json.loads(body)["assets"]
        return assets[0] if assets and not assets[0]["learning"] else None

    try:
        # First start: the asset commissions from readings of both devices.
        stop = asyncio.Event()
        gw = Gateway(cfg, session="first")
        run = asyncio.create_task(gw.run(stop))
        asset = await until(calibrated_asset)
        families = await scrape(base)
        stop.set()
        await asyncio.wait_for(run, 30)

        assert asset["name"] == "drivetrain"
        assert asset["device"] == "drive"
        assert asset["devices"] == ["drive", "motor"]
        member = samples(families["edgetwin_asset_device_info"])
        assert set(member) == {
            (("asset", "drivetrain"), ("device", "drive")),
            (("asset", "drivetrain"), ("device", "motor")),
        }
        learning = samples(families["edgetwin_asset_learning"])
        assert list(learning.values()) == [0.0]

        # Second start on the same state directory: the asset resumes, calibrated at once.
        caplog.clear()
        stop = asyncio.Event()
        gw2 = Gateway(cfg, session="second")
        run = asyncio.create_task(gw2.run(stop))
        await until(lambda: asyncio.sleep(0, result=gw2.stats.readings > 0))
        resumed = not gw2.twin.spanning[0].learning
        stop.set()
        await asyncio.wait_for(run, 30)
    finally:
        await server.stop()
    assert resumed
    assert any("asset:drivetrain (3 points)" in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]
