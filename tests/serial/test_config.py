"""Serial config: each protocol loads; mistakes are reported clearly, at their line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgetwin.config import load_config_text
from edgetwin.config.serial import (
    BinaryProtocolConfig,
    LineProtocolConfig,
    NmeaProtocolConfig,
    SerialDeviceConfig,
)
from edgetwin.errors import ConfigError, ConfigProblem

DOC = Path(__file__).resolve().parents[2] / "docs" / "serial-sensors.md"

HEAD = """\
[gateway]
id = "edge-01"
state_dir = "/var/lib/edgetwin"

[[buses]]
kind = "serial"
name = "ser"
port = "/dev/ttyUSB0"
"""


def problems(text: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config_text(HEAD + text, filename="t.toml")
    return info.value.problems


def line_of(text: str, needle: str) -> int:
    lines = (HEAD + text).splitlines()
    (n,) = [i for i, line in enumerate(lines, 1) if needle in line]
    return n


def doc_examples() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_worked_examples_in_the_docs_load() -> None:
    examples = doc_examples()
    kinds = set()
    for text in examples:
        config = load_config_text(text, filename="doc.toml")
        for dev in config.devices:
            assert isinstance(dev, SerialDeviceConfig)
            kinds.add(dev.protocol.kind)
    assert kinds == {"line", "nmea", "binary"}


BINARY = """
[[devices]]
name = "flowmeter"
bus = "ser"
driver = "serial"
poll_hex = "01 03"

  [devices.protocol]
  kind = "binary"
  start = "{start}"
  header_size = 2
  length = {{ offset = {offset}, size = 1 }}
  fields = [["flow", "f"], ["total", "I"], ["temp", "h"], ["status", "B"]]
  crc = {{ kind = "crc16_modbus" }}

  [[devices.points]]
  name = "flow"
  field = "{field}"
"""


def test_a_binary_device_loads_into_typed_objects() -> None:
    config = load_config_text(
        HEAD + BINARY.format(start="aa 55", offset=3, field="flow"), filename="t.toml"
    )
    dev = config.devices[0]
    assert isinstance(dev, SerialDeviceConfig)
    assert isinstance(dev.protocol, BinaryProtocolConfig)
    assert dev.protocol.layout.start == b"\xaa\x55"
    assert dev.protocol.layout.length is not None
    assert dev.protocol.layout.length.offset == 3
    assert dev.poll_bytes == b"\x01\x03"


def test_an_unknown_field_names_the_point_the_field_and_the_known_ones() -> None:
    text = BINARY.format(start="AA55", offset=3, field="Flow")
    (p,) = problems(text)
    assert "point 'flow'" in p.message
    assert "unknown field 'Flow'" in p.message
    assert "'flow', 'total', 'temp', 'status'" in p.message
    assert p.line == line_of(text, "[[devices]]")


def test_a_marker_that_is_not_hex_is_reported_at_its_line() -> None:
    text = BINARY.format(start="AZ55", offset=3, field="flow")
    (p,) = problems(text)
    assert p.path == "devices[0].protocol.start"
    assert "'AZ55' is not a hex byte string" in p.message
    assert p.line == line_of(text, 'start = "AZ55"')


def test_a_length_field_outside_the_header_is_explained() -> None:
    (p,) = problems(BINARY.format(start="AA55", offset=1, field="flow"))
    assert p.path == "devices[0].protocol"
    assert "length field" in p.message
    assert "header" in p.message


def test_a_crc8_must_say_which_one() -> None:
    text = BINARY.format(start="AA55", offset=3, field="flow").replace(
        'kind = "crc16_modbus"', 'kind = "crc8"'
    )
    (p,) = problems(text)
    assert p.path == "devices[0].protocol.crc.kind"
    assert "'crc8_maxim_dow'" in p.message
    assert "'crc8_sensirion'" in p.message


def serial_device(protocol: dict[str, object], fields: list[str], **extra: object) -> dict:
    return {
        "name": "d",
        "bus": "ser",
        "driver": "serial",
        "protocol": protocol,
        "points": [{"name": f"p{i}", "field": f} for i, f in enumerate(fields)],
        **extra,
    }


def error_of(data: dict) -> str:
    with pytest.raises(ValidationError) as info:
        SerialDeviceConfig.model_validate(data)
    return str(info.value)


def test_nmea_fields_are_sentence_dot_field_and_xdr_names_are_free() -> None:
    ok = SerialDeviceConfig.model_validate(
        serial_device({"kind": "nmea"}, ["GGA.altitude", "RMC.speed_knots", "XDR.AirTemp"])
    )
    assert isinstance(ok.protocol, NmeaProtocolConfig)
    msg = error_of(serial_device({"kind": "nmea"}, ["GGA.speed"]))
    assert "unknown field 'GGA.speed'" in msg
    assert "'GGA.altitude'" in msg
    msg = error_of(serial_device({"kind": "nmea", "sentences": ["RMC"]}, ["GGA.altitude"]))
    assert "unknown field 'GGA.altitude'" in msg
    assert "'RMC.speed_knots'" in msg


def test_line_protocol_takes_a_regex_with_named_groups_or_keys() -> None:
    ok = SerialDeviceConfig.model_validate(
        serial_device({"kind": "line", "regex": r"(?P<t>[-\d.]+)C"}, ["t"])
    )
    assert isinstance(ok.protocol, LineProtocolConfig)
    assert "no named groups" in error_of(serial_device({"kind": "line", "regex": "x+"}, ["t"]))
    assert "invalid regex" in error_of(serial_device({"kind": "line", "regex": "(?P<t>"}, ["t"]))
    both = {"kind": "line", "regex": "(?P<T>.*)", "keys": ["T"]}
    assert "either 'regex'" in error_of(serial_device(both, ["T"]))
    assert "either 'regex'" in error_of(serial_device({"kind": "line"}, ["T"]))
    msg = error_of(serial_device({"kind": "line", "keys": ["T", "H"]}, ["P"]))
    assert "unknown field 'P'" in msg
    assert "'T', 'H'" in msg


def test_poll_text_or_hex_not_both_and_hex_must_be_hex() -> None:
    proto = {"kind": "line", "keys": ["T"]}
    assert "not both" in error_of(serial_device(proto, ["T"], poll="?", poll_hex="3F"))
    assert "not a hex byte string" in error_of(serial_device(proto, ["T"], poll_hex="0x3G"))
    dev = SerialDeviceConfig.model_validate(serial_device(proto, ["T"], poll="R\r\n"))
    assert dev.poll_bytes == b"R\r\n"
    assert SerialDeviceConfig.model_validate(serial_device(proto, ["T"])).poll_bytes is None


def test_a_frame_that_cannot_fit_max_frame_is_refused() -> None:
    proto = {"kind": "binary", "start": "AA", "fields": [["v", "d"]] * 1}
    msg = error_of(serial_device(proto, ["v"], max_frame=8))
    assert "at least 9 bytes" in msg


def test_bus_stopbits_must_be_a_real_setting() -> None:
    device = """
[[devices]]
name = "d"
bus = "ser"
driver = "serial"

  [devices.protocol]
  kind = "line"
  keys = ["T"]

  [[devices.points]]
  name = "t"
  field = "T"
"""
    text = HEAD.replace('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\nstopbits = 3') + device
    with pytest.raises(ConfigError) as info:
        load_config_text(text, filename="t.toml")
    (problem,) = info.value.problems
    assert problem.path == "buses[0].stopbits"
    assert "1, 1.5 or 2" in problem.message
    assert problem.line == text.splitlines().index("stopbits = 3") + 1
