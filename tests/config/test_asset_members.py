"""Assets over several devices in the config: "device.point" names, and each mistake located."""

from __future__ import annotations

import re

import pytest

from edgetwin.config import load_config_text
from edgetwin.errors import ConfigError, ConfigProblem

DEVICES = """\
[gateway]
id = "edge-01"

[[buses]]
kind = "modbus_tcp"
name = "plant"
host = "127.0.0.1"

[[devices]]
name = "drive"
bus = "plant"
points = [
  { name = "current", table = "input", address = 0, type = "float32" },
  { name = "speed", table = "input", address = 2, type = "float32" },
  { name = "hours", table = "input", address = 4, type = "float32", interval = 60.0 },
]

[[devices]]
name = "motor"
bus = "plant"
unit = 2
interval = 10.0
points = [
  { name = "temp", table = "input", address = 0, type = "float32" },
  { name = "vib", table = "input", address = 2, type = "float32" },
]
"""


def asset(body: str) -> str:
    return f'{DEVICES}\n[[assets]]\nname = "drivetrain"\n{body}\n'


def marker_line(text: str, label: str) -> int:
    """1-based line of the only line carrying ``# <- label``."""
    pattern = re.compile(rf"#\s*<-\s*{re.escape(label)}\b")
    (line,) = [n for n, row in enumerate(text.splitlines(), 1) if pattern.search(row)]
    return line


def problems(text: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, filename="t.toml")
    return info.value.problems


def test_qualified_points_span_devices_at_their_own_periods() -> None:
    cfg = load_config_text(
        asset('points = ["drive.current", "motor.temp", "drive.speed"]'), filename="t.toml"
    )
    (a,) = cfg.assets
    assert a.device is None
    assert a.devices == ["drive", "motor"]
    assert a.primary == "drive"
    assert a.members == [("drive", "current"), ("motor", "temp"), ("drive", "speed")]
    assert a.point_names == ["drive.current", "motor.temp", "drive.speed"]
    assert "device" not in a.params()


def test_bare_names_belong_to_the_device_which_comes_first() -> None:
    text = asset('device = "drive"\npoints = ["motor.temp", "current", "speed"]')
    (a,) = load_config_text(text, filename="t.toml").assets
    assert a.devices == ["drive", "motor"]
    assert a.members == [("motor", "temp"), ("drive", "current"), ("drive", "speed")]
    assert a.point_names == ["motor.temp", "drive.current", "drive.speed"]


@pytest.mark.parametrize(
    "points",
    [
        'device = "drive"\npoints = ["current", "speed"]',
        'points = ["drive.current", "drive.speed"]',
    ],
)
def test_one_device_keeps_bare_names_in_either_form(points: str) -> None:
    (a,) = load_config_text(asset(points), filename="t.toml").assets
    assert (a.devices, a.point_names) == (["drive"], ["current", "speed"])


CASES = [
    (
        'points = ["drive.current", "motr.temp"]  # <- here',
        "assets[0].points[1]",
        ["in 'motr.temp'", "unknown device 'motr'", "did you mean 'motor'?", "'drive', 'motor'"],
    ),
    (
        'points = ["drive.current", "motor.tmep"]  # <- here',
        "assets[0].points[1]",
        ["'tmep' is not a point of device 'motor'", "did you mean 'temp'?"],
    ),
    (
        'device = "drive"\npoints = ["current", "motor.temp", "drive.current"]  # <- here',
        "assets[0].points[2]",
        ["'drive.current' is listed twice", "points[0] 'current'", "device 'drive'"],
    ),
    (
        'points = ["motor.temp", "motor.temp"]  # <- here',
        "assets[0].points[1]",
        ["'motor.temp' is listed twice"],
    ),
    (
        'points = ["drive.current", "temp"]  # <- here',
        "assets[0].points[1]",
        ["'temp' names no device", "'device.temp'"],
    ),
    (
        'device = "pump"  # <- here\npoints = ["drive.current", "motor.temp"]',
        "assets[0].device",
        ["unknown device 'pump'"],
    ),
    (
        'device = "motor"  # <- here\npoints = ["drive.current", "drive.speed"]',
        "assets[0].device",
        ["device 'motor' holds none of the asset's points"],
    ),
    (
        'points = ["drive.current", "motor.temp", "drive.hours"]  # <- here',
        "assets[0].points",
        ["polled together", "device 'drive'", "'current' every 1.0 s", "'hours' every 60.0 s"],
    ),
    (
        'points = ["drive.current", "motor.temp.c"]  # <- here',
        "assets[0].points[1]",
        ["invalid point 'motor.temp.c'", "'device.point'"],
    ),
]


@pytest.mark.parametrize(
    ("body", "path", "fragments"), CASES, ids=[c[1] + ":" + c[2][0] for c in CASES]
)
def test_each_mistake_is_one_problem_naming_what_and_where(
    body: str, path: str, fragments: list[str]
) -> None:
    text = asset(body)
    (problem,) = problems(text)  # one problem: the schema's own guard is not repeated
    assert (problem.path, problem.line) == (path, marker_line(text, "here"))
    for fragment in fragments:
        assert fragment in problem.message, problem.message


def test_every_point_is_checked_not_only_the_first() -> None:
    text = asset('points = ["drive.curent", "motor.tmp", "spede"]')
    got = [(p.path, p.message) for p in problems(text)]
    assert [path for path, _ in got] == [f"assets[0].points[{i}]" for i in range(3)]
    assert "'current'" in got[0][1]
    assert "'temp'" in got[1][1]
    assert "names no device" in got[2][1]
