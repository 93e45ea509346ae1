"""Asset alarms over the real twin: an AssetGroup fed readings until its points decouple, read
by the metrics as the gateway wires them, scraped and fetched over HTTP by `edgetwin status`."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edgetwin.acquisition.scheduler import DeviceHealth
from edgetwin.config import load_config_text
from edgetwin.core.types import Alarm, DeviceReading
from edgetwin.runtime.metrics import DeviceView, GatewayMetrics, twin_points
from edgetwin.runtime.twin_stage import TwinStage
from edgetwin.status import EXIT_ATTENTION, EXIT_OK
from tests.metrics.support import Uplink, no_outbox, samples, scrape, status_of, wired

CONFIG = """
[gateway]
id = "edge-01"

[[buses]]
name = "plant"
kind = "modbus_tcp"
host = "127.0.0.1"

[[devices]]
name = "m"
bus = "plant"
points = [
  { name = "flow", table = "input", address = 0, type = "float32", model = "none" },
  { name = "head", table = "input", address = 2, type = "float32", model = "none" },
  { name = "amps", table = "input", address = 4, type = "float32", model = "none" },
]

[[assets]]
name = "hydraulics"
device = "m"
points = ["flow", "head"]
commissioning = 50
smoothing = 0.0
alarm_on = 2

[[assets]]
name = "drive"
device = "m"
points = ["flow", "amps"]
commissioning = 50
smoothing = 0.0
"""

HYDRAULICS = (("asset", "hydraulics"), ("device", "m"))
DRIVE = (("asset", "drive"), ("device", "m"))


def feed(stage: TwinStage, rng: np.random.Generator, k: int, *, decoupled: bool) -> None:
    flow = 10 + rng.normal()
    # Head follows flow closely, amps loosely; decoupled: head leaves flow's line, still in range.
    head = 50 - 2 * flow + 0.1 * rng.normal() + (5.0 if decoupled else 0.0)
    amps = 2 + 0.3 * flow + 0.1 * rng.normal()
    stage.step(DeviceReading("m", float(k), np.array([flow, head, amps]), np.zeros(3, np.uint16)))


async def test_an_asset_in_alarm_is_exposed_and_needs_attention() -> None:
    stage, metrics = wired(CONFIG)
    hydraulics, drive = stage.devices["m"].assets
    async with await metrics.start_server("127.0.0.1", 0) as server:
        base = "http://{}:{}".format(*server.address)
        fams = await scrape(base)
        assert samples(fams["edgetwin_asset_alarm"]) == {}  # nothing read yet: no series
        assert [a.ts for a in metrics.status().assets] == [None, None]

        rng = np.random.default_rng(8)
        for k in range(20):  # commissioning is 50 complete polls
            feed(stage, rng, k, decoupled=False)
        fams = await scrape(base)
        assert samples(fams["edgetwin_asset_learning"]) == {HYDRAULICS: 1, DRIVE: 1}
        rc, text, doc = await status_of(base)
        assert rc == EXIT_OK
        assert "hydraulics  m        learning" in text
        assert [a["learning"] for a in doc["assets"]] == [True, True]  # type: ignore[index, union-attr]

        for k in range(20, 100):
            feed(stage, rng, k, decoupled=False)
        fams = await scrape(base)
        assert samples(fams["edgetwin_asset_alarm"]) == {HYDRAULICS: 0, DRIVE: 0}
        assert samples(fams["edgetwin_asset_learning"]) == {HYDRAULICS: 0, DRIVE: 0}
        assert samples(fams["edgetwin_asset_away"]) == {HYDRAULICS: 0, DRIVE: 0}
        rc, text, doc = await status_of(base)
        assert (rc, doc["attention"]) == (EXIT_OK, [])
        assert [a["away"] for a in doc["assets"]] == [False, False]  # type: ignore[index, union-attr]
        assert "hydraulics  m        NORMAL" in text

        k = 100
        while hydraulics.alarm != Alarm.ALARM:
            assert k < 130, "the decoupling was not seen"
            feed(stage, rng, k, decoupled=True)
            k += 1

        fams = await scrape(base)
        alarms = samples(fams["edgetwin_asset_alarm"])
        assert alarms == {HYDRAULICS: 2, DRIVE: drive.alarm}
        assert samples(fams["edgetwin_asset_away"])[HYDRAULICS] == 0  # not re-learnt elsewhere
        scores = samples(fams["edgetwin_asset_anomaly_score"])
        assert scores[HYDRAULICS] == pytest.approx(hydraulics.score)
        assert scores[HYDRAULICS] >= 1.0
        shares = samples(fams["edgetwin_asset_contribution"])
        assert {k: v for k, v in shares.items() if k[:2] == HYDRAULICS} == {
            (*HYDRAULICS, ("point", p)): c for p, c in hydraulics.contributions().items()
        }
        assert sum(shares[(*HYDRAULICS, ("point", p))] for p in ("flow", "head")) == (
            pytest.approx(1.0, abs=1e-3)
        )

        rc, text, doc = await status_of(base)
        assert rc == EXIT_ATTENTION
        assert isinstance(doc["attention"], list)
        assert len(doc["attention"]) == 1 + (drive.alarm == Alarm.ALARM)
        assert doc["attention"][0].startswith("asset hydraulics (m) in ALARM: score ")
        assert "; mostly head " in doc["attention"][0]  # the point that broke away
        assert isinstance(doc["assets"], list)
        assert doc["assets"][0]["alarm"] == "ALARM"
        assert doc["assets"][0]["ts"] == k - 1
        assert doc["assets"][0]["contributions"] == hydraulics.contributions()
        assert "NEEDS ATTENTION" in text.splitlines()[0]
        assert "hydraulics  m        ALARM" in text


# The same device with one asset over all three points and the asset defaults.
PUMP = (
    CONFIG.split("[[assets]]", maxsplit=1)[0]
    + """[[assets]]
name = "pump"
device = "m"
points = ["flow", "head", "amps"]
alarm_on = 1
"""
)

PUMP_KEY = (("asset", "pump"), ("device", "m"))


def away_and_back(rng: np.random.Generator) -> np.ndarray:
    """Readings (2000, 3) moved by one common factor; a fault in flow fades to a new operating
    point 4 above the commissioned one, and at 1500 flow returns home."""
    x = 10.0 + rng.normal(0.0, 2.0, (2000, 1)) + rng.normal(0.0, 0.5, (2000, 3))
    x[800:1000, 0] += 10.0
    x[1000:1500, 0] += 4.0
    return x


async def test_an_asset_away_from_its_commissioned_operating_point_is_exposed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="edgetwin.runtime.twin_groups")
    stage, metrics = wired(PUMP)
    (pump,) = stage.devices["m"].assets
    x = away_and_back(np.random.default_rng(8))

    def read(ks: range) -> None:
        for k in ks:
            stage.step(DeviceReading("m", float(k), x[k], np.zeros(3, np.uint16)))

    async def away() -> tuple[float, bool, str]:
        fams = await scrape(base)
        _, text, doc = await status_of(base)
        (entry,) = doc["assets"]  # type: ignore[misc]
        (row,) = [line for line in text.splitlines() if line.startswith("  pump ")]
        return samples(fams["edgetwin_asset_away"])[PUMP_KEY], entry["away"], row

    async with await metrics.start_server("127.0.0.1", 0) as server:
        base = "http://{}:{}".format(*server.address)
        read(range(10))  # commissioning: not away, only learning
        got, flag, row = await away()
        assert (got, flag) == (0, False)
        assert row.split()[:3] == ["pump", "m", "learning"]

        read(range(10, 900))  # commissioned, then the fault is raised
        assert pump.alarm == Alarm.ALARM
        got, flag, row = await away()
        assert (got, flag) == (0, False)
        assert row.split()[:3] == ["pump", "m", "ALARM"]

        assert not caplog.messages
        read(range(900, 1200))  # it faded to a new operating point, re-learnt there
        assert pump.alarm != Alarm.ALARM
        assert pump.away
        assert caplog.messages == [
            "asset pump: re-learns where it now runs, away from its commissioned operating point"
        ]
        caplog.clear()
        (resumed,) = wired(PUMP)[0].devices["m"].assets  # a restart resumes it away
        assert not resumed.away
        assert resumed.restore(pump.names, pump.state()) == 3
        assert resumed.away
        got, flag, row = await away()
        assert (got, flag) == (1, True)
        assert row.split()[:4] == ["pump", "m", f"{Alarm(pump.alarm).name},", "away"]

        read(range(1200, 2000))  # back where it was commissioned
        assert not pump.away
        assert caplog.messages == ["asset pump: back at its commissioned operating point"]
        got, flag, row = await away()
        assert (got, flag) == (0, False)
        assert "away" not in row


POINTS = """
[gateway]
id = "edge-01"

[twin]
commissioning = 10

[[buses]]
name = "plant"
kind = "modbus_tcp"
host = "127.0.0.1"

[[devices]]
name = "m"
bus = "plant"
points = [
  { name = "flow", table = "input", address = 0, type = "float32" },
  { name = "wear", table = "input", address = 2, type = "float32", model = "trend" },
  { name = "mode", table = "input", address = 4, type = "uint16", model = "none" },
]
"""


async def test_points_still_commissioning_show_as_learning() -> None:
    cfg = load_config_text(POINTS, filename="t.toml")
    stage = TwinStage(cfg)
    metrics = GatewayMetrics("edge-01", "s")
    device = DeviceView("plant", "m", DeviceHealth(online=True), breaker_open=False)
    metrics.bind(
        devices=lambda: [device],
        points=twin_points(cfg, stage),
        outbox=no_outbox,
        uplink=Uplink(True).view,
    )
    rng = np.random.default_rng(3)

    def read(k: int) -> None:
        values = np.array([10 + rng.normal(), 0.01 * k + 0.1 * rng.normal(), 2.0])
        stage.step(DeviceReading("m", float(k), values, np.zeros(3, np.uint16)))

    async with await metrics.start_server("127.0.0.1", 0) as server:
        base = "http://{}:{}".format(*server.address)
        for k in range(5):
            read(k)
        fams = await scrape(base)
        assert samples(fams["edgetwin_device_learning_points"]) == {(("device", "m"),): 2}
        _, text, doc = await status_of(base)
        learning = [p["learning"] for p in doc["devices"][0]["points"]]  # type: ignore[index]
        assert learning == [True, True, False]  # a point without a model has nothing to learn
        assert "learning" in text
        for k in range(5, 40):
            read(k)
        fams = await scrape(base)
        assert samples(fams["edgetwin_device_learning_points"]) == {(("device", "m"),): 0}
        _, text, doc = await status_of(base)
        assert [p["learning"] for p in doc["devices"][0]["points"]] == [False] * 3  # type: ignore[index]
        assert "learning" not in text
