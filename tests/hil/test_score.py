"""Scoring on hand-made event lists: detection, delay, clearing, false alarms, the verdict."""

from __future__ import annotations

from typing import Any

from hil.scenario import Scenario
from hil.score import Event, score


def scenario(**extra: Any) -> Scenario:
    data: dict[str, Any] = {
        "name": "s",
        "description": "",
        "duration": 100.0,
        "clear_grace": 10.0,
        "gateway": {"config": "unused.toml"},
        "faults": [
            {
                "fault": "cavitation",
                "start": 20.0,
                "duration": 10.0,
                "expect": [{"asset": "hyd", "within": 5.0}, {"point": "flow", "within": 5.0}],
            },
            {
                "fault": "no_answer",
                "start": 60.0,
                "duration": 10.0,
                "expect": [{"kind": "offline", "device": "pump1", "within": 3.0}],
            },
        ],
    }
    data.update(extra)
    return Scenario.model_validate(data)


def alarm(
    t: float, *, asset: str | None = None, point: str | None = None, up: bool = True
) -> Event:
    body: dict[str, Any] = {"type": "alarm", "device": "pump1", "alarm": 2 if up else 0}
    body["previous"] = 0 if up else 2
    body["asset" if asset else "point"] = asset or point
    return Event(t, body)


def device(t: float, state: str, name: str = "pump1") -> Event:
    return Event(t, {"type": "device", "device": name, "state": state})


def clean_run() -> list[Event]:
    return [
        device(-4.0, "online"),
        alarm(21.0, asset="hyd"),
        alarm(21.5, point="flow"),
        alarm(22.0, point="vibration"),  # not expected, but inside the window: excused
        alarm(31.0, point="flow", up=False),
        alarm(33.0, asset="hyd", up=False),
        alarm(34.0, point="vibration", up=False),
        device(61.0, "offline"),
        device(71.0, "online"),
    ]


def test_clean_run_passes() -> None:
    result = score(scenario(), clean_run())
    assert [r.status for r in result.windows] == ["detected"] * 3
    assert [r.delay for r in result.windows] == [1.0, 1.5, 1.0]
    assert [r.cleared_at for r in result.windows] == [33.0, 31.0, 71.0]
    assert result.false_alarms == []
    assert result.passed


def test_late_detection_fails() -> None:
    events = [e for e in clean_run() if e.body.get("asset") != "hyd"]
    events += [alarm(26.0, asset="hyd"), alarm(33.0, asset="hyd", up=False)]
    result = score(scenario(), events)
    hyd = result.windows[0]
    assert (hyd.status, hyd.delay, hyd.ok) == ("late", 6.0, False)
    assert not result.passed


def test_missed_and_early_raise_is_a_false_alarm() -> None:
    events = [e for e in clean_run() if e.body.get("point") != "flow"]
    events += [alarm(19.5, point="flow")]  # before the window: not a detection
    result = score(scenario(), events)
    flow = result.windows[1]
    assert (flow.status, flow.detected_at, flow.ok) == ("missed", None, False)
    assert [e.t for e in result.false_alarms] == [19.5]
    assert not result.passed


def test_alarm_that_does_not_clear() -> None:
    events = [e for e in clean_run() if not (e.body.get("asset") and e.t > 30)]
    result = score(scenario(), events)
    assert result.windows[0].status == "detected"
    assert not result.windows[0].cleared
    assert not result.passed
    relaxed = scenario()
    data = relaxed.model_dump()
    data["faults"][0]["expect"][0]["clears"] = False
    assert score(Scenario.model_validate(data), events).passed


def test_clear_then_raise_again_in_the_grace_is_not_cleared() -> None:
    events = [*clean_run(), alarm(38.0, asset="hyd")]  # raised again 8 s after the end
    result = score(scenario(), events)
    assert not result.windows[0].cleared
    assert result.false_alarms == []  # inside end + clear_grace: not false, but not cleared


def test_clear_after_the_grace_does_not_count() -> None:
    events = [e for e in clean_run() if e.body.get("asset") != "hyd"]
    events += [alarm(21.0, asset="hyd"), alarm(41.0, asset="hyd", up=False)]
    assert not score(scenario(), events).windows[0].cleared


def test_false_alarms_and_allowance() -> None:
    events = [*clean_run(), alarm(50.0, point="power"), alarm(90.0, asset="hyd")]
    result = score(scenario(), events)
    assert [e.t for e in result.false_alarms] == [50.0, 90.0]
    assert not result.passed
    assert score(scenario(false_alarms_allowed=2), events).passed
    # Clears, online events and WARNING changes are never false alarms.
    quiet = [*clean_run(), alarm(50.0, point="power", up=False), device(80.0, "online")]
    assert score(scenario(), quiet).passed


def test_unexpected_offline_is_a_false_alarm() -> None:
    result = score(scenario(), [*clean_run(), device(45.0, "offline"), device(46.0, "online")])
    assert [e.body["state"] for e in result.false_alarms] == ["offline"]


def test_only_expected_window_counts_other_alarms() -> None:
    events = [*clean_run(), alarm(72.0, point="flow"), alarm(74.0, point="flow", up=False)]
    assert score(scenario(), events).passed
    data = scenario().model_dump()
    data["faults"][1]["only_expected"] = True
    result = score(Scenario.model_validate(data), events)
    assert [e.t for e in result.false_alarms] == [72.0]


def test_tolerated_targets_are_excused_but_not_required() -> None:
    events = [*clean_run(), alarm(72.0, point="flow"), alarm(73.0, asset="hyd")]
    data = scenario().model_dump()
    data["faults"][1].update(only_expected=True, tolerate=[{"point": "flow"}])
    result = score(Scenario.model_validate(data), events)
    assert [e.t for e in result.false_alarms] == [73.0]  # the asset is not tolerated
    assert len(result.windows) == 3  # a tolerated target is no expectation
    assert score(Scenario.model_validate(data), clean_run()).passed  # nor is it required
    # Only inside its own window's span: the same raise after it is false.
    late = [*clean_run(), alarm(81.0, point="flow")]
    assert [e.t for e in score(Scenario.model_validate(data), late).false_alarms] == [81.0]


def test_targets_match_kind_device_and_name() -> None:
    events = [e for e in clean_run() if e.body.get("type") != "device"]
    events += [device(61.0, "offline", name="pump2"), device(71.0, "online", name="pump2")]
    result = score(scenario(), events)
    assert result.windows[2].status == "missed"
    assert result.windows[1].detected_at == 21.5
    # An asset named like the point is not the point.
    events = [e for e in clean_run() if e.body.get("point") != "flow"]
    events += [alarm(21.0, asset="flow"), alarm(31.0, asset="flow", up=False)]
    assert score(scenario(), events).windows[1].status == "missed"


def test_warning_to_alarm_is_a_raise_and_back_a_clear() -> None:
    events = [e for e in clean_run() if e.body.get("asset") != "hyd"]
    up = {"type": "alarm", "device": "pump1", "asset": "hyd", "alarm": 2, "previous": 1}
    down = {"type": "alarm", "device": "pump1", "asset": "hyd", "alarm": 1, "previous": 2}
    again = {**up, "previous": 2}  # not a transition: neither raise nor detection
    events += [Event(20.5, again), Event(21.0, up), Event(33.0, down)]
    hyd = score(scenario(), events).windows[0]
    assert (hyd.detected_at, hyd.cleared_at) == (21.0, 33.0)
