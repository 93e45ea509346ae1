"""Scenario files: validation errors name the file and the key; configs are filled and scaled."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.__main__ import main
from hil.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "hil" / "scenarios").glob("*.toml"))
PUMP_CONFIG = ROOT / "hil" / "configs" / "pump1.toml"

# A small, valid scenario with an inline gateway config; tests break one thing at a time.
GOOD = """
name = "mini"
description = "a minimal scenario"
duration = 60.0
clear_grace = 10.0

[gateway.config.gateway]
id = "gw"

[[gateway.config.buses]]
kind = "modbus_tcp"
name = "plant"
host = "127.0.0.1"
port = 5020

[[gateway.config.devices]]
name = "pump1"
bus = "plant"
interval = 0.25

[[gateway.config.devices.points]]
name = "flow"
table = "input"
address = 2
type = "float32"

[[gateway.config.devices.points]]
name = "speed"
table = "input"
address = 0
type = "float32"

[[gateway.config.assets]]
name = "hyd"
device = "pump1"
points = ["flow", "speed"]
commissioning = 80
smoothing = 2.0

[device]
bus = "plant"

[[faults]]
fault = "cavitation"
start = 20.0
duration = 10.0

[[faults.expect]]
asset = "hyd"
within = 5.0

[[faults]]
fault = "no_answer"
start = 40.0
duration = 5.0

[[faults.expect]]
kind = "offline"
device = "pump1"
within = 3.0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert str(path) in message  # every problem names the file
    return message


def test_good_scenario_loads(tmp_path: Path) -> None:
    loaded = load_scenario(write(tmp_path, GOOD))
    sc = loaded.scenario
    assert sc.name == "mini"
    assert [w.end for w in sc.faults] == [30.0, 45.0]
    assert sc.faults[0].spec(shift=6.0) == "cavitation@26+10"
    assert [e.label for e in sc.faults[0].expect] == ["asset hyd alarm"]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenarios_load(path: Path) -> None:
    loaded = load_scenario(path)
    assert loaded.scenario.name == path.stem
    assert loaded.scenario.duration <= 90.0
    # A window tests something: it expects a report, or counts the alarms nobody expected.
    assert all(w.expect or w.only_expected for w in loaded.scenario.faults)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("duration = 60.0\n", "", "[duration] Field required"),
        ("duration = 60.0", "duration = -1", "[duration] Input should be greater than 0"),
        ("duration = 60.0", 'duration = "long"', "[duration]"),
        ('fault = "cavitation"', 'fault = "cavitashun"', "unknown fault 'cavitashun'"),
        ('fault = "cavitation"', 'fault = "drift:pressure"', "drift needs a sensor point"),
        ('fault = "no_answer"', 'fault = "late:-1"', "[faults[1].fault]"),
        ("start = 40.0", "start = 58.0", "faults[1] ends at 63 s, after the scenario's duration"),
        ("start = 40.0", "start = 52.0", "clear_grace 10 = 67 s"),
        ('asset = "hyd"', 'asset = "hyd"\npoint = "flow"', "exactly one of 'point' and 'asset'"),
        ('kind = "offline"', 'kind = "offline"\npoint = "flow"', "names a 'device' and no point"),
        ("within = 5.0", "within = 0", "[faults[0].expect[0].within]"),
        ("within = 5.0", "within = 5.0\nwithn = 3", "[faults[0].expect[0].withn] Extra inputs"),
        ('asset = "hyd"', 'asset = "hydro"', "[faults[0].expect[0]] no asset 'hydro'"),
        ('asset = "hyd"', 'point = "flw"', "[faults[0].expect[0]] no point 'flw'"),
        (
            "duration = 10.0\n",
            'duration = 10.0\nonly_expected = true\ntolerate = [{point = "flw"}]\n',
            "[faults[0].tolerate[0]] no point 'flw'",
        ),
        (
            "duration = 10.0\n",
            'duration = 10.0\ntolerate = [{point = "flow"}]\n',
            "'tolerate' needs only_expected = true",
        ),
        (
            "duration = 10.0\n",
            'duration = 10.0\nonly_expected = true\ntolerate = [{point = "flow", within = 3}]\n',
            "[faults[0].tolerate[0].within] Extra inputs",
        ),
        ('device = "pump1"\nwithin', 'device = "pump2"\nwithin', "no device 'pump2'"),
        ('[device]\nbus = "plant"', '[device]\nbus = "field"', "[device.bus] no bus 'field'"),
        ('[device]\nbus = "plant"', '[device]\nstub = "fan"\nbus = "plant"', "[device.stub]"),
        ("interval = 0.25", "interval = 0.01", "[gateway.config.devices[0].interval]"),
        ('id = "gw"', 'id = "gw"\nsite = "x"', "[gateway.config.gateway.site]"),
        ("commissioning = 80", "commissioning = 6", "[gateway.config.assets[0]"),
        ('[[faults]]\nfault = "cavitation"', "[[faults]]\nfault = ", "not valid TOML"),
    ],
)
def test_bad_scenarios_name_the_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in GOOD
    assert expected in problems(tmp_path, GOOD.replace(old, new, 1))


def test_no_faults(tmp_path: Path) -> None:
    text = GOOD.split("[[faults]]", maxsplit=1)[0]
    assert "[faults] Field required" in problems(tmp_path, text)


def test_config_file_problems_name_its_line(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(PUMP_CONFIG.read_text().replace("interval = 0.25", "intervall = 0.25"))
    text = GOOD.split("[gateway.config.gateway]", maxsplit=1)[0]
    text += '[gateway]\nconfig = "gw.toml"\n'
    text += "[device]" + GOOD.split("[device]")[1].replace('"hyd"', '"hydraulics"')
    message = problems(tmp_path, text)
    assert f"{cfg}:" in message
    assert "unknown key 'intervall'" in message
    cfg.unlink()
    assert "cannot read the file" in problems(tmp_path, text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "nope.toml")


def test_fill_and_scale(tmp_path: Path) -> None:
    loaded = load_scenario(write(tmp_path, GOOD))
    _, cfg = loaded.gateway_config(
        broker="mqtt://127.0.0.1:1999", state_dir=tmp_path / "st", stub_port=4321, scale=0.5
    )
    assert cfg.mqtt.url == "mqtt://127.0.0.1:1999"
    assert cfg.gateway.state_dir == tmp_path / "st"
    bus = cfg.buses[0]
    assert (bus.host, bus.port, bus.timeout) == ("127.0.0.1", 4321, 0.5)  # type: ignore[union-attr]
    dev = cfg.devices[0]
    assert (dev.interval, dev.probe_max) == (0.125, 15.0)
    assert cfg.metrics.enabled is False
    assert cfg.assets[0].commissioning == 80  # counts of polls are not scaled
    sc = loaded.scenario.scaled(0.5)
    assert (sc.duration, sc.clear_grace) == (30.0, 5.0)
    assert [(w.start, w.duration) for w in sc.faults] == [(10.0, 5.0), (20.0, 2.5)]
    assert sc.faults[0].expect[0].within == 2.5


def test_scale_floor(tmp_path: Path) -> None:
    loaded = load_scenario(write(tmp_path, GOOD))
    with pytest.raises(ScenarioError, match=r"smallest scale for this scenario is 0\.2"):
        loaded.gateway_config(
            broker="mqtt://127.0.0.1:1", state_dir=tmp_path, stub_port=1, scale=0.1
        )


def test_late_fault_delay_scales(tmp_path: Path) -> None:
    loaded = load_scenario(write(tmp_path, GOOD.replace('"no_answer"', '"late:2"')))
    assert loaded.scenario.scaled(0.25).faults[1].fault == "late:0.5"


def test_cli_exits_2_on_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.replace("within = 5.0", "within = -5.0"))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: [faults[0].expect[0].within] Input should be greater than 0" in err
    assert main(["check", str(write(tmp_path, GOOD))]) == 0
    assert main(["run", str(write(tmp_path, GOOD)), "--scale", "0.1"]) == 2
    assert "smallest scale" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["run", str(path), "--scale", "0"])
    assert info.value.code == 2
