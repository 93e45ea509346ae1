"""The metrics over the real parts: bus schedulers polling simulated pumps, the twin stage,
an outbox on disk and an (unconnected) MQTT uplink, wired as the gateway wires them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgetwin.acquisition.scheduler import BusScheduler, DeviceSpec
from edgetwin.config.schema import Config
from edgetwin.core.types import DeviceReading, Quality
from edgetwin.runtime.devices import make_device, open_link
from edgetwin.runtime.metrics import (
    ERROR_KINDS,
    GatewayMetrics,
    scheduler_devices,
    twin_points,
    uplink_state,
)
from edgetwin.runtime.twin_stage import TwinStage
from edgetwin.storage.outbox import Outbox
from edgetwin.uplink.session import MqttUplink
from firmware_stubs.faults import FaultSchedule
from firmware_stubs.modbus.pump import PumpDevice, PumpServer
from tests.metrics.support import samples, scrape

POINTS = [
    {"name": "speed", "table": "input", "address": 0, "type": "float32", "unit": "rpm",
     "model": "none"},
    # The pump delivers tens of m3/h: this range makes every reading OUT_OF_RANGE.
    {"name": "flow", "table": "input", "address": 2, "type": "float32", "unit": "m3/h",
     "range": [0.0, 1.0], "model": "none"},
]  # fmt: skip


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(tmp: Path, good_port: int, silent_port: int) -> Config:
    buses = [
        {"kind": "modbus_tcp", "name": "plant", "host": "127.0.0.1", "port": good_port},
        {"kind": "modbus_tcp", "name": "line2", "host": "127.0.0.1", "port": closed_port()},
        {"kind": "modbus_tcp", "name": "line3", "host": "127.0.0.1", "port": silent_port,
         "timeout": 0.3},
    ]  # fmt: skip
    devices = [
        {"name": name, "bus": bus, "unit": unit, "interval": 0.1, "points": POINTS}
        for name, bus, unit in [("pump1", "plant", 1), ("pump2", "line2", 1), ("pump3", "line3", 3)]
    ]
    return Config.model_validate(
        {"gateway": {"id": "edge-01", "state_dir": str(tmp)}, "buses": buses, "devices": devices}
    )


async def until(cond: Callable[[], bool], limit: float = 20.0) -> None:
    async with asyncio.timeout(limit):
        while not cond():
            await asyncio.sleep(0.05)


async def test_real_polls_feed_every_device_metric(tmp_path: Path) -> None:
    good = PumpServer(PumpDevice(1, seed=1), "127.0.0.1", 0)
    silent = PumpServer(
        PumpDevice(3, seed=3, schedule=FaultSchedule.parse(["no_answer@0"])), "127.0.0.1", 0
    )
    await good.start()
    await silent.start()
    cfg = config(tmp_path, good.port, silent.port)
    links = {bus.name: open_link(bus) for bus in cfg.buses}
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    metrics = GatewayMetrics(cfg.gateway.id, "s1")
    readings: list[DeviceReading] = []
    inner = {dev.name: make_device(dev, links[dev.bus]) for dev in cfg.devices}
    schedulers = [
        BusScheduler(
            bus.name,
            [
                DeviceSpec(
                    metrics.instrument(bus.name, inner[dev.name]),
                    [dev.interval] * len(dev.points),
                    breaker_failures=1,
                    probe_max=0.2,
                )
                for dev in cfg.devices
                if dev.bus == bus.name
            ],
            readings.append,
        )
        for bus in cfg.buses
    ]
    twin = TwinStage(cfg)
    uplink = MqttUplink(
        cfg.mqtt,
        outbox,
        client_id="test",
        status_topic="t/status",
        command_topics=[],
        online_payload=b"on",
        offline_payload=b"off",
        on_command=lambda topic, payload: None,
    )
    metrics.bind(
        devices=scheduler_devices(schedulers),
        points=twin_points(cfg, twin),
        outbox=outbox.stats,
        uplink=uplink_state(uplink),
    )
    health = {name: d.health for s in schedulers for name, d in s.devices.items()}
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop), name=f"bus:{s.name}") for s in schedulers]
    server = await metrics.start_server("127.0.0.1", 0)
    try:
        await until(
            lambda: (
                health["pump1"].polls >= 3
                and health["pump2"].online is False
                and health["pump3"].online is False
            )
        )
        stop.set()
        await asyncio.gather(*tasks)
        for r in readings:
            twin.step(r)
        fams = await scrape("http://{}:{}".format(*server.address))
        status = metrics.status()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.close()
        for link in links.values():
            link.close()
        await outbox.close()
        await silent.stop()
        await good.stop()

    # Every poll was timed exactly once, under its bus.
    counts = samples(fams["edgetwin_bus_transaction_seconds"], "_count")
    for s in schedulers:
        timed = sum(counts.get((("bus", s.name), ("outcome", o)), 0) for o in ("ok", "error"))
        assert timed == sum(d.health.polls for d in s.devices.values()), s.name
    # pump1 always answered, pump2 never could: their buses' outcomes say so.
    assert counts[(("bus", "plant"), ("outcome", "error"))] == 0
    assert counts[(("bus", "line2"), ("outcome", "ok"))] == 0
    errors = samples(fams["edgetwin_device_errors"], "_total")
    assert {k for k in errors if ("device", "pump1") in k} == {
        (("bus", "plant"), ("device", "pump1"), ("kind", kind)) for kind in ERROR_KINDS
    }  # every kind is there from the start, at zero
    assert errors[(("bus", "line2"), ("device", "pump2"), ("kind", "connection"))] >= 1
    assert errors[(("bus", "line3"), ("device", "pump3"), ("kind", "timeout"))] >= 1
    assert errors[(("bus", "plant"), ("device", "pump1"), ("kind", "timeout"))] == 0

    devices = {d.name: d for d in status.devices}
    assert devices["pump1"].online is True
    assert not devices["pump1"].breaker_open
    assert devices["pump2"].online is False
    assert devices["pump2"].breaker_open
    assert "cannot connect" in devices["pump2"].reason
    assert "did not answer" in devices["pump3"].reason
    assert devices["pump3"].errors["timeout"] >= 1
    speed, flow = devices["pump1"].points
    assert (speed.name, speed.unit, speed.quality) == ("speed", "rpm", ())
    assert speed.value is not None
    assert 2000 < speed.value < 3600
    assert flow.quality == ("OUT_OF_RANGE",)
    assert flow.value is not None
    assert flow.value > 1
    assert all(p.value is None and p.quality == ("COMM_FAIL",) for p in devices["pump2"].points)
    bad = samples(fams["edgetwin_device_bad_quality_points"])
    assert bad[(("device", "pump1"),)] == 1
    assert bad[(("device", "pump2"),)] == 2
    assert status.uplink.broker == "127.0.0.1:1883"
    assert not status.uplink.connected


async def test_the_wrapper_passes_other_attributes_through(tmp_path: Path) -> None:
    cfg = config(tmp_path, closed_port(), closed_port())
    link = open_link(cfg.buses[0])
    try:
        dev = make_device(cfg.devices[0], link)
        wrapped = GatewayMetrics("g", "s").instrument("plant", dev)
        assert wrapped.name == "pump1"
        assert wrapped.cfg is dev.cfg  # type: ignore[attr-defined]
        assert hasattr(wrapped, "write") == hasattr(dev, "write")
    finally:
        link.close()


def test_points_not_read_yet_have_no_time_and_read_ones_do(tmp_path: Path) -> None:
    cfg = config(tmp_path, closed_port(), closed_port())
    twin = TwinStage(cfg)
    read = twin_points(cfg, twin)
    before = read()
    assert [(p.device, p.name, p.unit) for p in before] == [
        (dev.name, pt["name"], pt["unit"]) for dev in cfg.devices for pt in POINTS
    ]
    assert all(p.ts is None for p in before)
    twin.step(
        DeviceReading(
            "pump2",
            1234.5,
            np.array([1500.0, 0.5]),
            np.array([Quality.GOOD, Quality.GOOD], dtype=np.uint16),
        )
    )
    after = {(p.device, p.name): p for p in read()}
    assert after["pump2", "speed"].ts == 1234.5
    assert after["pump2", "speed"].value == 1500.0
    assert after["pump2", "flow"].quality == Quality.GOOD
    assert after["pump1", "speed"].ts is None
