"""The twin stage: rate groups get their own estimators; snapshots hold every point seen."""

from __future__ import annotations

import numpy as np
import pytest

from edgetwin.config import load_config_text
from edgetwin.core.types import Alarm, DeviceReading, Quality
from edgetwin.runtime.twin_stage import TwinStage, severity
from edgetwin.twin import LagEstimator, LevelEstimator, TrendEstimator

CONFIG = """
[gateway]
id = "gw"
state_dir = "/tmp/unused"

[twin]
commissioning = 10

[[buses]]
name = "plant"
kind = "modbus_tcp"
host = "127.0.0.1"

[[devices]]
name = "a"
bus = "plant"
interval = 0.5
points = [
  { name = "p", table = "input", address = 0, type = "float32" },
  { name = "q", table = "input", address = 2, type = "float32", interval = 2.0 },
  { name = "r", table = "input", address = 4, type = "uint16", model = "none" },
  { name = "s", table = "input", address = 5, type = "float32", interval = 2.0 },
]

[[devices]]
name = "b"
bus = "plant"
unit = 2
points = [{ name = "x", table = "input", address = 0, type = "float32" }]
"""


def reading(dev: str, idx: list[int] | None, values: list[float], t: float) -> DeviceReading:
    return DeviceReading(
        dev,
        t,
        np.array(values),
        np.zeros(len(values), np.uint16),
        index=None if idx is None else np.array(idx),
    )


def test_groups_match_a_standalone_estimator_and_indexes_are_global() -> None:
    stage = TwinStage(load_config_text(CONFIG, filename="t.toml"))
    rng = np.random.default_rng(3)
    fast = LevelEstimator(1, commissioning=10)
    slow = LevelEstimator(2, commissioning=10)
    for k in range(40):
        v = 10 + rng.normal(size=1)
        batch, _, _ = stage.step(reading("a", [0, 2], [v[0], 7.0], k))
        ref = fast.update(v, np.zeros(1, np.uint16))
        assert batch.index.tolist() == [0, 2]
        np.testing.assert_array_equal(batch.estimate[:1], ref.estimate)
        assert batch.estimate[1] == 7.0  # model "none": the value itself
        if k % 4 == 0:
            w = 5 + rng.normal(size=2)
            batch, _, _ = stage.step(reading("a", [1, 3], w.tolist(), k))
            ref2 = slow.update(w, np.zeros(2, np.uint16))
            assert batch.index.tolist() == [1, 3]
            np.testing.assert_array_equal(batch.estimate, ref2.estimate)
    batch, _, _ = stage.step(reading("b", None, [1.0], 41))
    assert batch.index.tolist() == [4]  # device b's point follows device a's four


def test_alarm_changes_and_snapshot() -> None:
    stage = TwinStage(load_config_text(CONFIG, filename="t.toml"))
    rng = np.random.default_rng(4)
    for k in range(30):
        stage.step(reading("a", [0, 2], [10 + 0.1 * rng.normal(), 1.0], k))
    changes = []
    for k in range(30, 36):
        _, _, ch = stage.step(reading("a", [0, 2], [50.0, 1.0], k))  # a 400-sigma step
        changes += ch
    assert [(c.point, c.after) for c in changes if c.after == Alarm.ALARM] == [("p", Alarm.ALARM)]
    snap = stage.snapshot()
    assert snap is not None
    assert snap.index.tolist() == [0, 2]  # only points that have been read
    bad = DeviceReading(
        "a",
        40,
        np.array([np.nan, np.nan]),
        np.full(2, int(Quality.COMM_FAIL), np.uint16),
        index=np.array([0, 2]),
    )
    batch, _, _ = stage.step(bad)
    assert np.isfinite(batch.estimate).all()
    assert (batch.quality == Quality.COMM_FAIL).all()


MODELS = """
[gateway]
id = "gw"

[twin]
commissioning = 20

[[buses]]
name = "plant"
kind = "modbus_tcp"
host = "127.0.0.1"

[[devices]]
name = "m"
bus = "plant"
points = [
  { name = "amps", table = "input", address = 0, type = "float32" },
  { name = "temp", table = "input", address = 2, type = "float32", model = "lag", input = "amps" },
  { name = "wear", table = "input", address = 4, type = "float32", model = "trend" },
  { name = "flow", table = "input", address = 6, type = "float32", model = "none" },
  { name = "head", table = "input", address = 8, type = "float32", model = "none" },
]

[[assets]]
name = "hydraulics"
device = "m"
points = ["flow", "head"]
commissioning = 50
smoothing = 0.0
alarm_on = 2
"""


def test_trend_and_lag_points_match_standalone_estimators() -> None:
    stage = TwinStage(load_config_text(MODELS, filename="t.toml"))
    lag = LagEstimator(1, commissioning=20)
    trend = TrendEstimator(1, commissioning=20)
    rng = np.random.default_rng(7)
    temp = 30.0
    good = np.zeros(1, np.uint16)
    for k in range(80):
        amps = 5 + rng.normal()
        temp = 0.9 * temp + 0.1 * 6 * amps + 0.05 * rng.normal()
        wear = 0.02 * k + 0.1 * rng.normal()
        values = [amps, temp, wear, 1.0, 2.0]
        batch, _, _ = stage.step(reading("m", None, values, k))
        ref_lag = lag.update([temp], [amps], good, good)
        ref_trend = trend.update([wear], good)
        assert batch.estimate[1] == ref_lag.estimate[0]
        assert batch.score[1] == ref_lag.score[0]
        assert batch.estimate[2] == ref_trend.estimate[0]
        assert batch.score[2] == ref_trend.score[0]


def test_a_broken_relationship_raises_an_asset_alarm_with_contributions() -> None:
    stage = TwinStage(load_config_text(MODELS, filename="t.toml"))
    rng = np.random.default_rng(8)
    changes = []
    for k in range(120):
        flow = 10 + rng.normal()
        head = 50 - 2 * flow + 0.1 * rng.normal()  # head follows flow closely
        if k >= 100:
            head = 50 - 2 * 10 + 0.1 * rng.normal() + 2.0  # decoupled, still in range
        _, _, ch = stage.step(reading("m", None, [5.0, 30.0, 1.0, flow, head], k))
        changes += [c for c in ch if c.asset is not None]
    raised = [c for c in changes if c.after == Alarm.ALARM]
    assert raised, "the decoupling was not seen"
    event = raised[0]
    assert (event.device, event.asset, event.point) == ("m", "hydraulics", None)
    assert event.ts >= 100
    assert event.contributions is not None
    assert set(event.contributions) == {"flow", "head"}
    assert abs(sum(event.contributions.values()) - 1.0) < 1e-3
    assert event.severity in {"minor", "major", "critical"}
    # Nothing before the fault.
    assert all(c.ts >= 100 for c in changes if c.after == Alarm.ALARM)


def test_severity_grades_by_score() -> None:
    twin = load_config_text(MODELS, filename="t.toml").twin
    assert [severity(s, twin) for s in (1.0, 1.99, 2.0, 4.99, 5.0, 80.0)] == [
        "minor",
        "minor",
        "major",
        "major",
        "critical",
        "critical",
    ]


QUANTISED = """
[gateway]
id = "gw"

[twin]
commissioning = 20

[[buses]]
name = "plant"
kind = "modbus_tcp"
host = "127.0.0.1"

[[devices]]
name = "t"
bus = "plant"
points = [
  { name = "counts", table = "input", address = 0, type = "int16", scale = 0.1 },
  { name = "exact", table = "input", address = 1, type = "float32" },
  { name = "stepped", table = "input", address = 3, type = "float32", resolution = 0.1 },
  { name = "drift", table = "input", address = 5, type = "int16", scale = 0.1, model = "trend" },
]
"""


def test_a_quantised_point_does_not_alarm_on_its_first_one_step_change() -> None:
    cfg = load_config_text(QUANTISED, filename="t.toml")
    assert [p.quantum for p in cfg.devices[0].points] == [0.1, None, 0.1, 0.1]
    stage = TwinStage(cfg)
    alarms = np.zeros(4, dtype=bool)
    for k in range(60):
        v = 21.5 if k < 40 else 21.6  # one count, held
        batch, _, _ = stage.step(reading("t", None, [v, v, v, v], k))
        alarms |= batch.alarm == Alarm.ALARM
    # The float point without a resolution knows no step: the change is 1e5 sigma of nothing.
    assert alarms.tolist() == [False, True, False, False]
    for k in range(60, 70):  # twenty counts is a real step, even for a quantised point
        batch, _, _ = stage.step(reading("t", None, [23.6] * 4, k))
        alarms = batch.alarm == Alarm.ALARM
    assert alarms.all()


def test_a_reading_of_every_point_steps_as_one_with_explicit_indexes() -> None:
    """index None takes the whole-device path; it must give what index 0..n-1 gives."""
    cfg = load_config_text(MODELS, filename="t.toml")
    whole, indexed = TwinStage(cfg), TwinStage(cfg)
    rng = np.random.default_rng(11)
    n = 5
    seen_changes = 0
    for k in range(300):
        values = rng.normal(size=n) * [1, 1, 1, 1, 1] + [5, 30, 1, 10, 30]
        if k >= 200:
            values[rng.integers(n)] += rng.choice([0.0, 40.0])  # steps: alarms come and go
        quality = np.where(rng.random(n) < 0.05, int(Quality.COMM_FAIL), 0).astype(np.uint16)
        values[rng.random(n) < 0.03] = np.nan
        a = DeviceReading("m", k, values.copy(), quality.copy())
        b = DeviceReading("m", k, values.copy(), quality.copy(), index=np.arange(n))
        batch_a, nis_a, ch_a = whole.step(a)
        batch_b, nis_b, ch_b = indexed.step(b)
        for col in ("index", "ts", "value", "estimate", "score", "alarm", "quality"):
            np.testing.assert_array_equal(getattr(batch_a, col), getattr(batch_b, col), col)
        np.testing.assert_array_equal(nis_a, nis_b)
        assert ch_a == ch_b
        seen_changes += len(ch_a)
    assert seen_changes > 0  # the comparison covered alarm changes, points and asset
    snap_a, snap_b = whole.snapshot(), indexed.snapshot()
    assert snap_a is not None
    assert snap_b is not None
    np.testing.assert_array_equal(snap_a.estimate, snap_b.estimate)


def test_a_reading_of_every_point_with_the_wrong_length_is_refused() -> None:
    stage = TwinStage(load_config_text(MODELS, filename="t.toml"))
    with pytest.raises(ValueError, match=r"'m'.*5 values"):
        stage.step(DeviceReading("m", 0, np.zeros(4), np.zeros(4, np.uint16)))
