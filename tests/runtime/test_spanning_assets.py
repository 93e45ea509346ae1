"""Assets over several devices: when they tick, with which values, and how they name themselves.

Each test drives the real TwinStage with real DeviceReadings and compares the asset's estimator
with a standalone AssetEstimator fed the ticks the rule in docs/twin.md promises: the same
state afterwards means the same ticks, the same values and the same STALE marks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgetwin.config import load_config_text
from edgetwin.core.types import Alarm, DeviceReading, Quality
from edgetwin.runtime.gateway import Gateway
from edgetwin.runtime.twin_groups import AssetGroup
from edgetwin.runtime.twin_stage import AlarmChange, TwinStage
from edgetwin.storage.twin_state import TwinStateStore
from edgetwin.twin.asset import AssetEstimator
from edgetwin.uplink.codec import decode_event

STALE = int(Quality.STALE)

CONFIG = """
[gateway]
id = "gw"

[[buses]]
name = "rtu"
kind = "modbus_tcp"
host = "127.0.0.1"

[[devices]]
name = "drive"
bus = "rtu"
points = [
  { name = "current", table = "input", address = 0, type = "float32", model = "none" },
  { name = "speed", table = "input", address = 2, type = "float32", model = "none" },
  { name = "mode", table = "input", address = 4, type = "uint16", model = "none" },
]

[[devices]]
name = "motor"
bus = "rtu"
unit = 2
interval = {motor_interval}
points = [
  { name = "temp", table = "input", address = 0, type = "float32", model = "none" },
]

[[assets]]
name = "drivetrain"
points = ["drive.current", "motor.temp", "drive.speed"]
commissioning = 40
smoothing = 0.0
alarm_on = 2
"""

PARAMS = {"commissioning": 40, "smoothing": 0.0, "alarm_on": 2}


def stage(motor_interval: float = 1.0) -> TwinStage:
    text = CONFIG.replace("{motor_interval}", str(motor_interval))
    return TwinStage(load_config_text(text, filename="t.toml"))


def asset_of(s: TwinStage) -> AssetGroup:
    (group,) = s.spanning
    return group


def drive(t: float, current: float, speed: float) -> DeviceReading:
    return DeviceReading("drive", t, np.array([current, speed, 1.0]), np.zeros(3, np.uint16))


def motor(t: float, temp: float, quality: int = 0) -> DeviceReading:
    return DeviceReading("motor", t, np.array([temp]), np.full(1, quality, np.uint16))


def signals(rng: np.random.Generator, n: int) -> np.ndarray:
    """Per second: current, temp (follows current), speed; columns in the asset's order."""
    current = 10 + rng.normal(size=n)
    temp = 30 + 2 * current + 0.1 * rng.normal(size=n)
    speed = 1500 + 5 * rng.normal(size=n)
    return np.column_stack([current, temp, speed])


def same_state(group: AssetGroup, ref: AssetEstimator) -> bool:
    got, want = group.state(), ref.state()
    return set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in got)


def tick(ref: AssetEstimator, values: np.ndarray, stale: tuple[int, ...] = ()) -> None:
    quality = np.zeros(3, np.uint16)
    quality[list(stale)] = STALE
    ref.update(values[None, :], quality[None, :])


def test_devices_on_one_period_tick_once_a_round_with_fresh_values_of_all() -> None:
    for motor_first in (False, True):
        s, ref = stage(), AssetEstimator(1, 3, **PARAMS)
        x = signals(np.random.default_rng(1), 120)
        for k, (current, temp, speed) in enumerate(x):
            pair = [drive(k, current, speed), motor(k, temp)]
            for reading in reversed(pair) if motor_first else pair:
                s.step(reading)
            tick(ref, x[k])
        assert ref.calibrated[0]  # commissioning is over: the state is sensitive
        assert same_state(asset_of(s), ref), f"motor first: {motor_first}"


def test_the_rule_is_checked_by_state_so_one_extra_tick_would_show() -> None:
    """The comparison above can fail: one more (stale) tick per round changes the state."""
    s, ref = stage(), AssetEstimator(1, 3, **PARAMS)
    x = signals(np.random.default_rng(1), 120)
    for k, (current, temp, speed) in enumerate(x):
        s.step(drive(k, current, speed))
        s.step(motor(k, temp))
        tick(ref, x[k])
        if k % 7 == 0:
            tick(ref, x[k], stale=(1,))
    assert not same_state(asset_of(s), ref)


def test_a_fast_and_a_slow_device_tick_every_second_with_the_slow_one_stale() -> None:
    """drive every 1 s, motor every 3 s: from the second drive reading on, every one ticks."""
    s, ref = stage(motor_interval=3.0), AssetEstimator(1, 3, **PARAMS)
    x = signals(np.random.default_rng(2), 300)
    group = asset_of(s)
    held_temp = np.nan
    for k, (current, temp, speed) in enumerate(x):
        motor_due = k % 3 == 0
        # Round 0: both report, the asset ticks once with all fresh. Second 1: drive has
        # reported once since, no tick. From second 2: each drive reading ticks; a motor
        # reading that came after the tick of its round joins the next second's tick.
        s.step(drive(k, current, speed))
        if k == 0:
            pass
        elif k >= 2:
            if np.isnan(held_temp):
                tick(ref, np.array([current, 0.0, speed]), stale=(1,))
            else:
                tick(ref, np.array([current, held_temp, speed]))
            held_temp = np.nan
        if motor_due:
            s.step(motor(k, temp))
            if k == 0:
                tick(ref, x[0])
            else:
                held_temp = temp
    assert same_state(group, ref)
    assert not group.learning  # complete ticks (every third second) finished commissioning


def test_a_slow_reading_before_the_fast_one_joins_the_tick_of_its_round() -> None:
    s, ref = stage(motor_interval=3.0), AssetEstimator(1, 3, **PARAMS)
    x = signals(np.random.default_rng(3), 300)
    for k, (current, temp, speed) in enumerate(x):
        motor_due = k % 3 == 0
        if motor_due:
            s.step(motor(k, temp))
        s.step(drive(k, current, speed))
        if k == 0 or (k >= 2 and motor_due):
            tick(ref, x[k])  # the motor reading is fresh: a complete tick
        elif k >= 2:
            tick(ref, np.array([current, 0.0, speed]), stale=(1,))
    assert same_state(asset_of(s), ref)


def test_an_offline_device_leaves_the_asset_ticking_on_the_other_with_stale_points() -> None:
    s, ref = stage(), AssetEstimator(1, 3, **PARAMS)
    x = signals(np.random.default_rng(4), 200)
    group = asset_of(s)
    for k, (current, temp, speed) in enumerate(x):
        s.step(drive(k, current, speed))
        if k < 100:  # the motor answers, then falls silent (breaker open, nothing read)
            s.step(motor(k, temp))
            tick(ref, x[k])
        elif k >= 101:  # drive's second reading since the last tick ticks it
            tick(ref, np.array([current, 0.0, speed]), stale=(1,))
        if k == 150:
            assert same_state(group, ref)
    assert same_state(group, ref)
    assert group.alarm != Alarm.ALARM  # an imputed point is not an anomaly


def test_a_probe_of_the_offline_device_with_bad_quality_is_not_learnt() -> None:
    s, ref = stage(), AssetEstimator(1, 3, **PARAMS)
    x = signals(np.random.default_rng(5), 120)
    for k, (current, temp, speed) in enumerate(x):
        s.step(drive(k, current, speed))
        s.step(motor(k, np.nan, int(Quality.COMM_FAIL)) if k >= 60 else motor(k, temp))
        quality = np.zeros(3, np.uint16)
        if k >= 60:
            quality[1] = int(Quality.COMM_FAIL)
        ref.update(np.array([[current, np.nan if k >= 60 else temp, speed]]), quality[None, :])
    assert same_state(asset_of(s), ref)


def test_a_broken_relationship_between_two_devices_raises_the_asset_alarm() -> None:
    s = stage()
    rng = np.random.default_rng(6)
    changes: list[tuple[DeviceReading, AlarmChange]] = []
    for k in range(160):
        current = 10 + rng.normal()
        # From 120 on the motor runs 6 K cooler than the current says: both still in range.
        temp = 30 + 2 * current + 0.1 * rng.normal() - (6.0 if k >= 120 else 0.0)
        for reading in (drive(k, current, 1500 + 5 * rng.normal()), motor(k, temp)):
            changes += [(reading, c) for c in s.step(reading)[2] if c.asset is not None]
    raised = [(r, c) for r, c in changes if c.after == Alarm.ALARM]
    assert raised, "the broken relationship was not seen"
    reading, event = raised[0]
    assert event.ts >= 120
    assert all(c.ts >= 120 for _, c in changes if c.after == Alarm.ALARM)
    # The change comes from the step that ticked it: the motor reading completes each round.
    assert (reading.device, reading.ts) == ("motor", event.ts)
    assert (event.device, event.devices, event.asset, event.point) == (
        "drive",
        ("drive", "motor"),
        "drivetrain",
        None,
    )
    assert event.contributions is not None
    assert list(event.contributions) == ["drive.current", "motor.temp", "drive.speed"]
    assert abs(sum(event.contributions.values()) - 1.0) < 1e-3
    assert event.contributions["drive.speed"] < max(event.contributions.values())


def test_a_single_device_asset_in_qualified_form_is_the_same_asset() -> None:
    legacy = CONFIG.split("[[assets]]", maxsplit=1)[0].replace("{motor_interval}", "1.0")
    forms = [
        'device = "drive"\npoints = ["current", "speed"]',
        'points = ["drive.current", "drive.speed"]',
        'device = "drive"\npoints = ["current", "drive.speed"]',
    ]
    texts = [f'{legacy}[[assets]]\nname = "d"\n{form}\n' for form in forms]
    stages = [TwinStage(load_config_text(t, filename="t.toml")) for t in texts]
    for st in stages:
        assert st.spanning == []
        (group,) = st.devices["drive"].assets
        assert (group.names, group.devices, group.key) == (
            ["current", "speed"],
            ["drive"],
            "asset:d",
        )
    rng = np.random.default_rng(7)
    for k in range(80):
        reading = drive(k, 10 + rng.normal(), 1500 + rng.normal())
        outs = [st.step(reading) for st in stages]
        for _, _, ch in outs[1:]:
            assert ch == outs[0][2]
    ref = stages[0].devices["drive"].assets[0]
    assert all(same_state(st.devices["drive"].assets[0], ref.estimator) for st in stages[1:])


def test_saved_state_restores_across_the_config_forms_and_for_spanning_assets(
    tmp_path: Path,
) -> None:
    store = TwinStateStore(tmp_path / "twin.sqlite")
    legacy = CONFIG.split("[[assets]]", maxsplit=1)[0].replace("{motor_interval}", "1.0")
    old = legacy + '[[assets]]\nname = "d"\ndevice = "drive"\npoints = ["current", "speed"]\n'
    new = legacy + '[[assets]]\nname = "d"\npoints = ["drive.current", "drive.speed"]\n'
    a = TwinStage(load_config_text(old, filename="t.toml"))
    x = signals(np.random.default_rng(8), 60)
    for k, (current, _, speed) in enumerate(x):
        a.step(drive(k, current, speed))
    store.save(a.groups())
    b = TwinStage(load_config_text(new, filename="t.toml"))
    assert store.restore(b.groups()).resumed == {"asset:d": 2}
    assert same_state(b.devices["drive"].assets[0], a.devices["drive"].assets[0].estimator)

    c = stage()
    for k, (current, temp, speed) in enumerate(x):
        c.step(drive(k, current, speed))
        c.step(motor(k, temp))
    store.save(c.groups())
    d = stage()
    assert store.restore(d.groups()).resumed == {"asset:drivetrain": 3}
    assert same_state(asset_of(d), asset_of(c).estimator)


@pytest.mark.parametrize("motor_first", [False, True])
def test_snapshot_and_point_batches_are_untouched_by_a_spanning_asset(motor_first: bool) -> None:
    s = stage()
    pair = [drive(0, 10.0, 1500.0), motor(0, 50.0)]
    batches = [s.step(r)[0] for r in (reversed(pair) if motor_first else pair)]
    assert sorted(i for b in batches for i in b.index.tolist()) == [0, 1, 2, 3]
    snap = s.snapshot()
    assert snap is not None
    assert snap.index.tolist() == [0, 1, 2, 3]


async def test_the_alarm_event_names_the_first_device_and_qualified_points(
    tmp_path: Path,
) -> None:
    change = raised_change()
    events = await published(tmp_path, change)
    (event,) = events
    assert (event["device"], event["asset"], event["alarm"]) == ("drive", "drivetrain", 2)
    assert "point" not in event
    assert event["contributions"] == change.contributions
    assert set(event["contributions"]) == {"drive.current", "motor.temp", "drive.speed"}


async def test_the_alarm_event_lists_every_device_of_a_spanning_asset(tmp_path: Path) -> None:
    (event,) = await published(tmp_path, raised_change())
    assert event["devices"] == ["drive", "motor"]


def raised_change() -> AlarmChange:
    s = stage()
    rng = np.random.default_rng(6)
    for k in range(200):
        current = 10 + rng.normal()
        temp = 30 + 2 * current + 0.1 * rng.normal() - (6.0 if k >= 120 else 0.0)
        for reading in (drive(k, current, 1500 + 5 * rng.normal()), motor(k, temp)):
            for c in s.step(reading)[2]:
                if c.asset is not None and c.after == Alarm.ALARM:
                    return c
    raise AssertionError("the broken relationship was not seen")


async def published(tmp_path: Path, change: AlarmChange) -> list[dict[str, Any]]:
    """The events the gateway puts in its outbox for ``change``, decoded as a subscriber would."""
    text = CONFIG.replace("{motor_interval}", "1.0")
    text = text.replace('id = "gw"\n', f'id = "gw"\nstate_dir = "{tmp_path}"\n', 1)
    gw = Gateway(load_config_text(text, filename="t.toml"), session="s1")
    await gw.outbox.open()
    try:
        gw._put_alarms([change])
        await gw.outbox.flush()
        rows = await gw.outbox.pending(10)
    finally:
        await gw.outbox.close()
    return [decode_event(r.payload) for r in rows if r.topic == gw.topics.events]
