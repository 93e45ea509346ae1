"""Modbus point and device configuration: what is accepted, what is refused and why."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edgetwin.config import load_config_text
from edgetwin.config.modbus import ModbusDeviceConfig, ModbusPointConfig
from edgetwin.drivers.modbus import ModbusDevice
from edgetwin.runtime.devices import make_device, open_link
from edgetwin.transports.modbus_serial import ModbusRtuLink, ModbusRtuTcpLink, frame_silence
from edgetwin.transports.modbus_tcp import ModbusTcpLink


def point(**kw: object) -> ModbusPointConfig:
    return ModbusPointConfig(**{"name": "p", "table": "holding", "address": 0, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "count"),
    [
        ({"type": "bool", "bit": 3}, 1),
        ({"type": "bool", "table": "coil"}, 1),
        ({"type": "float64"}, 4),
        ({"type": "string", "length": 11, "model": "none"}, 6),
        ({"type": "string", "length": 250, "model": "none"}, 125),
    ],
)
def test_accepted_points_and_their_register_count(kw: dict[str, object], count: int) -> None:
    assert point(**kw).count == count


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"type": "bool"}, "does not fit table 'holding' without a bit"),
        ({"type": "uint16", "bit": 2}, "bit selects a bool"),
        ({"type": "bool", "table": "coil", "bit": 2}, "bit selects a bool"),
        ({"type": "bool", "bit": 16}, "less than or equal to 15"),
        ({"type": "string", "model": "none"}, "length"),
        ({"type": "uint16", "length": 4}, "length"),
        ({"type": "string", "length": 4}, "model = 'none'"),
        ({"type": "string", "length": 4, "model": "none", "scale": 2}, "takes no scale"),
        ({"type": "string", "length": 251, "model": "none"}, "less than or equal to 250"),
        ({"type": "string", "length": 8, "model": "none", "address": 65533}, "out of range"),
        ({"type": "float32", "table": "coil"}, "does not fit table 'coil'"),
    ],
)
def test_refused_points_say_why(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        point(**kw)


def device(**kw: object) -> ModbusDeviceConfig:
    points = [point(type="uint16", address=10), point(name="q", type="float32", address=20)]
    return ModbusDeviceConfig(name="d", bus="b", points=points, **kw)  # type: ignore[arg-type]


def test_forbidden_ranges_and_offsets_are_checked_against_the_points() -> None:
    assert device(forbidden={"holding": [(11, 19), (22, 30)]}).forbidden["holding"][0] == (11, 19)
    with pytest.raises(ValidationError, match=r"forbidden range 21\.\.25"):
        device(forbidden={"holding": [(21, 25)]})
    with pytest.raises(ValidationError, match="not within"):
        device(forbidden={"holding": [(9, 5)]})
    assert device(address_offset={"holding": -1}).wire_address("holding", 10) == 9
    with pytest.raises(ValidationError, match=r"out of 0\.\.65535"):
        device(address_offset={"holding": -11})


def test_a_point_wider_than_max_registers_is_refused() -> None:
    wide = point(type="string", length=40, model="none")  # 20 registers
    with pytest.raises(ValidationError, match="more than max_registers 16"):
        ModbusDeviceConfig(name="d", bus="b", points=[wide], max_registers=16)


def test_the_planner_works_in_wire_addresses() -> None:
    cfg = device(address_offset={"holding": -1}, forbidden={"holding": [(15, 15)]})
    plan = ModbusDevice(cfg, ModbusTcpLink("127.0.0.1", 1, timeout=1)).plan
    # points at wire 9 and 19..20; wire 14 is forbidden: two requests although max_gap is 8
    assert [(t, r.address, r.count) for t, r in plan] == [("holding", 9, 1), ("holding", 19, 2)]


def test_toml_with_rtu_buses_builds_the_right_links(tmp_path: Path) -> None:
    text = f"""
[gateway]
id = "edge"
state_dir = "{tmp_path}"

[[buses]]
kind = "modbus_rtu"
name = "line"
port = "/dev/ttyUSB0"
baudrate = 9600

[[buses]]
kind = "modbus_rtu_tcp"
name = "gw"
host = "127.0.0.1"
port = 4001

[[devices]]
name = "meter"
bus = "line"
unit = 3
request_pause = 0.05
address_offset = {{ holding = -1 }}
forbidden = {{ holding = [[1, 9]] }}

[[devices.points]]
name = "energy"
table = "holding"
address = 10
type = "uint32"
order = "CDAB"
unit = "kWh"

[[devices.points]]
name = "serial"
table = "holding"
address = 40
type = "string"
length = 16
model = "none"

[[devices]]
name = "drive"
bus = "gw"

[[devices.points]]
name = "ready"
table = "input"
address = 5
type = "bool"
bit = 3
"""
    cfg = load_config_text(text, filename="edgetwin.toml")
    links = {bus.name: open_link(bus) for bus in cfg.buses}
    assert isinstance(links["line"], ModbusRtuLink)
    assert isinstance(links["gw"], ModbusRtuTcpLink)
    assert links["line"].silence == pytest.approx(3.5 * 11 / 9600)  # 8E1: 11 bits a character
    for dev in cfg.devices:
        assert isinstance(make_device(dev, links[dev.bus]), ModbusDevice)


def test_inter_frame_silence_follows_the_line_settings() -> None:
    assert frame_silence(19200, 8, "N", 1) == pytest.approx(3.5 * 10 / 19200)
    assert frame_silence(9600, 8, "N", 2) == pytest.approx(3.5 * 11 / 9600)
    assert frame_silence(115200) == 0.00175  # fixed above 19200 baud
