"""An asset over two devices in /metrics, /status.json and `edgetwin status`: its identity."""

from __future__ import annotations

import numpy as np

from edgetwin.core.types import Alarm, DeviceReading
from edgetwin.runtime.twin_stage import TwinStage
from edgetwin.status import EXIT_ATTENTION
from tests.metrics.support import samples, scrape, status_of, wired

CONFIG = """
[gateway]
id = "edge-01"

[[buses]]
name = "plant"
kind = "modbus_tcp"
host = "127.0.0.1"

[[devices]]
name = "drive"
bus = "plant"
points = [
  { name = "current", table = "input", address = 0, type = "float32", model = "none" },
  { name = "speed", table = "input", address = 2, type = "float32", model = "none" },
]

[[devices]]
name = "motor"
bus = "plant"
unit = 2
points = [{ name = "temp", table = "input", address = 0, type = "float32", model = "none" }]

[[assets]]
name = "hydraulics"
device = "drive"
points = ["current", "speed"]
commissioning = 40
smoothing = 0.0

[[assets]]
name = "drivetrain"
points = ["drive.current", "motor.temp"]
commissioning = 40
smoothing = 0.0
alarm_on = 2
"""

SPAN = (("asset", "drivetrain"), ("device", "drive"))
ONE = (("asset", "hydraulics"), ("device", "drive"))


def feed(stage: TwinStage, rng: np.random.Generator, k: int, offset: float) -> None:
    current = 10 + rng.normal()
    temp = 30 + 2 * current + 0.1 * rng.normal() - offset
    good2, good1 = np.zeros(2, np.uint16), np.zeros(1, np.uint16)
    stage.step(DeviceReading("drive", float(k), np.array([current, 1500.0]), good2))
    stage.step(DeviceReading("motor", k + 0.5, np.array([temp]), good1))


async def test_a_spanning_asset_is_labelled_by_its_first_device_and_lists_them_all() -> None:
    stage, metrics = wired(CONFIG)
    span = stage.spanning[0]
    rng = np.random.default_rng(12)
    async with await metrics.start_server("127.0.0.1", 0) as server:
        base = "http://{}:{}".format(*server.address)
        fams = await scrape(base)
        members = samples(fams["edgetwin_asset_device_info"])
        assert members == {
            ONE: 1,
            SPAN: 1,
            (("asset", "drivetrain"), ("device", "motor")): 1,
        }
        k = 0
        for k in range(60):
            feed(stage, rng, k, 0.0)
        while span.alarm != Alarm.ALARM:
            assert k < 120, "the broken relationship was not seen"
            k += 1
            feed(stage, rng, k, 6.0)

        fams = await scrape(base)
        assert samples(fams["edgetwin_asset_alarm"])[SPAN] == 2
        shares = samples(fams["edgetwin_asset_contribution"])
        assert {p[2] for p in shares if p[:2] == SPAN} == {
            ("point", "drive.current"),
            ("point", "motor.temp"),
        }
        assert {p[2] for p in shares if p[:2] == ONE} == {("point", "current"), ("point", "speed")}

        rc, text, doc = await status_of(base)
    assert rc == EXIT_ATTENTION
    by_name = {a["name"]: a for a in doc["assets"]}
    assert (by_name["drivetrain"]["device"], by_name["drivetrain"]["devices"]) == (
        "drive",
        ["drive", "motor"],
    )
    assert (by_name["hydraulics"]["device"], by_name["hydraulics"]["devices"]) == (
        "drive",
        ["drive"],
    )
    assert by_name["drivetrain"]["ts"] == k + 0.5  # the motor's reading came last
    assert set(by_name["drivetrain"]["contributions"]) == {"drive.current", "motor.temp"}
    assert doc["attention"][0].startswith("asset drivetrain (drive, motor) in ALARM: score ")
    assert "drivetrain  drive,motor  ALARM" in text
