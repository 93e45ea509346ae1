"""Config loader: the example loads, every broken file reports each problem at its line."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.config import Config, load_config, load_config_text
from edgetwin.config.locate import TomlLocator
from edgetwin.errors import ConfigError, ConfigProblem

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "edgetwin.example.toml"
REGISTER_MAP = ROOT / "docs" / "dev" / "pump-register-map.md"
BAD = Path(__file__).resolve().parent / "bad"

VALID = """\
[gateway]
id = "edge-01"

[[buses]]
kind = "modbus_tcp"
name = "plant"
host = "127.0.0.1"

[[devices]]
name = "pump1"
bus = "plant"

  [[devices.points]]
  name = "speed"
  table = "input"
  address = 0
  type = "float32"
"""


def marker_line(text: str, label: str) -> int:
    """1-based line of the only line carrying the comment marker ``# <- label``."""
    pattern = re.compile(rf"#\s*<-\s*{re.escape(label)}\b")
    lines = [n for n, line in enumerate(text.splitlines(), 1) if pattern.search(line)]
    assert len(lines) == 1, f"marker {label!r} found on lines {lines}"
    return lines[0]


def problems_of(path: Path | str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def text_problems(text: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, filename="test.toml")
    return info.value.problems


# -- the example -------------------------------------------------------------------------


def input_register_rows() -> list[dict[str, str]]:
    """Input-register rows of the PD-100 map, parsed from the Markdown table."""
    text = REGISTER_MAP.read_text(encoding="utf-8")
    section = text.split("Input registers", 1)[1].split("Holding registers", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 6 and cells[0].isdigit():
            addr, name, vtype, order, unit, nominal = cells[:6]
            rows.append(
                {"addr": addr, "name": name, "type": vtype, "order": order}
                | {"unit": unit, "nominal": nominal}
            )
    return rows


def test_register_map_parses() -> None:
    rows = input_register_rows()
    assert [r["name"] for r in rows][:2] == ["speed", "flow"]
    assert len(rows) == 11


def test_example_loads_with_the_expected_structure() -> None:
    config = load_config(EXAMPLE)
    assert isinstance(config, Config)
    assert config.gateway.state_dir.is_absolute()
    assert config.mqtt.protocol == "5"
    assert config.mqtt.topic_prefix
    (bus,) = config.buses
    assert (bus.kind, bus.host, bus.port) == ("modbus_tcp", "127.0.0.1", 5020)
    (device,) = config.devices
    assert (device.name, device.unit, device.interval) == ("pump1", 1, 0.5)
    assert config.bus(device.bus) is bus


def test_example_points_match_the_pump_register_map() -> None:
    rows = input_register_rows()
    points = load_config(EXAMPLE).devices[0].points
    assert [p.name for p in points] == [r["name"] for r in rows]
    for point, row in zip(points, rows, strict=True):
        assert point.table == "input"
        assert point.address == int(row["addr"])
        assert point.type == row["type"]
        if row["order"]:
            assert point.order == row["order"]
        # "0.1 degC" in the map means raw tenths: scale 0.1, unit degC after scaling
        scale_text, _, unit = row["unit"].rpartition(" ")
        assert point.scale == pytest.approx(float(scale_text) if scale_text else 1.0)
        assert point.unit == unit
        if row["nominal"]:
            assert point.model == "level"
            assert point.range is not None
            low, high = point.range
            assert low < float(row["nominal"]) * point.scale < high
        else:  # counters and status words are sent, not modelled
            assert point.model == "none"


def test_example_has_no_problems_even_from_text() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert load_config_text(text, filename="example") == load_config(EXAMPLE)


# -- broken files ------------------------------------------------------------------------

# file, then (expected path, marker label, fragments the message must contain) per problem,
# in the order the loader must report them (by line).
CASES = [
    (
        "unknown_key.toml",
        [
            ("devices[0].points[1].address", "header", ["missing required key 'address'"]),
            (
                "devices[0].points[1].adress",
                "here",
                ["unknown key 'adress'", "did you mean 'address'?"],
            ),
        ],
    ),
    ("missing_key.toml", [("buses[0].host", "here", ["missing required key 'host'"])]),
    ("wrong_type.toml", [("buses[0].timeout", "here", ["expected a number", "'fast'"])]),
    ("number_as_string.toml", [("buses[0].port", "here", ["expected an integer", "'5020'"])]),
    (
        "register_out_of_range.toml",
        [("devices[0].points[1].address", "here", ["register out of range", "65534"])],
    ),
    (
        "bool_on_holding.toml",
        [("devices[0].points[1].type", "here", ["'bool'", "does not fit table 'holding'"])],
    ),
    (
        "duplicate_point.toml",
        [
            (
                "devices[0].points[1].name",
                "here",
                ["duplicate point name 'speed'", "devices[0].points[0]"],
            )
        ],
    ),
    (
        "duplicate_device.toml",
        [("devices[1].name", "here", ["duplicate device name 'pump1'", "devices[0]"])],
    ),
    (
        "unknown_bus.toml",
        [
            (
                "devices[0].bus",
                "here",
                ["unknown bus 'plnat'", "did you mean 'plant'?", "'plant', 'line2'"],
            )
        ],
    ),
    (
        "overlapping_registers.toml",
        [("devices[0].points[2].address", "here", ["overlap", "'speed'", "1..2", "0..1"])],
    ),
    (
        "duplicate_unit.toml",
        [("devices[1].unit", "here", ["unit id 3", "bus 'plant'", "device 'pump1'"])],
    ),
    (
        "duplicate_unit_default.toml",
        [("devices[1].unit", "here", ["unit id 1 (the default)", "device 'pump1'"])],
    ),
    ("bad_mqtt_url.toml", [("mqtt.url", "here", ["mqtt://", "'http://broker:1883'"])]),
    ("syntax_error.toml", [("", "here", ["TOML syntax error", "column"])]),
    (
        "three_problems.toml",
        [
            ("mqtt.keepalvie", "A", ["unknown key 'keepalvie'", "did you mean 'keepalive'?"]),
            ("buses[0].port", "B", ["less than or equal to 65535", "70000"]),
            ("devices[0].bus", "C", ["unknown bus 'plnat'", "'plant'"]),
        ],
    ),
    ("relative_state_dir.toml", [("gateway.state_dir", "here", ["absolute", "'state'"])]),
    (
        "missing_password_file.toml",
        [("mqtt.password_file", "here", ["does not exist", "mqtt.password"])],
    ),
    ("buses_as_table.toml", [("buses", "here", ["array of tables", "[[buses]]"])]),
    (
        "unknown_bus_kind.toml",
        [("buses[0].kind", "here", ["unknown kind 'modbus_rtx'", "did you mean 'modbus_rtu'"])],
    ),
    (
        "table_typo.toml",
        [("devices[0].points[0].table", "here", ["'inptu'", "did you mean 'input'?"])],
    ),
    (
        "lag_without_input.toml",
        [("devices[0].points[1].model", "here", ["model = 'lag' needs input"])],
    ),
    (
        "lag_unknown_input.toml",
        [
            (
                "devices[0].points[1].input",
                "here",
                ["input 'amp' is not a point of this device", "did you mean 'amps'?"],
            )
        ],
    ),
    (
        "asset_problems.toml",
        [
            ("assets[0].device", "A", ["unknown device 'pump2'", "defined devices: 'pump1'"]),
            ("assets[1].points", "B", ["polled together", "'temp' every 10.0 s"]),
            ("assets[2].points[1]", "C", ["'haed' is not a point of device 'pump1'", "'head'"]),
            ("assets[3].name", "D", ["duplicate asset name 'thermal'", "assets[1]"]),
            ("assets[4].commissioning", "E", ["independent samples", "lengthen commissioning"]),
        ],
    ),
    (
        "inline_points.toml",
        [("devices[0].points[1].address", "here", ["register out of range", "65534"])],
    ),
]


def test_every_bad_file_has_a_case() -> None:
    assert sorted(p.name for p in BAD.glob("*.toml")) == sorted(name for name, _ in CASES)


@pytest.mark.parametrize(("name", "expected"), CASES, ids=[name for name, _ in CASES])
def test_bad_config_reports_each_problem_at_its_line(
    name: str, expected: list[tuple[str, str, list[str]]]
) -> None:
    path = BAD / name
    text = path.read_text(encoding="utf-8")
    problems = problems_of(path)
    got = [(p.path, p.line) for p in problems]
    assert got == [(key, marker_line(text, label)) for key, label, _ in expected]
    for problem, (_, _, fragments) in zip(problems, expected, strict=True):
        assert problem.file == str(path)
        for fragment in fragments:
            assert fragment in problem.message
        assert "pydantic" not in problem.message
        assert f"{path}:{problem.line}:" in str(problem)


def test_an_edit_to_the_example_is_located() -> None:
    # A technician's typo in a copy of the example is found in that copy.
    text = EXAMPLE.read_text(encoding="utf-8")
    points = load_config(EXAMPLE).devices[0].points
    index = next(i for i, p in enumerate(points) if p.address == 22)
    broken = text.replace("address = 22\n", "address = 22\nadress = 3  # <- here\n", 1)
    (problem,) = text_problems(broken)
    assert problem.path == f"devices[0].points[{index}].adress"
    assert problem.line == marker_line(broken, "here")


def test_semantic_checks_run_alongside_schema_errors() -> None:
    text = VALID.replace('[gateway]\nid = "edge-01"\n', "") + (
        '\n[[devices]]\nname = "pump1"  # <- here\nbus = "plant"\nunit = 2\n'
        '  [[devices.points]]\n  name = "a"\n  table = "coil"\n  address = 0\n  type = "bool"\n'
    )
    problems = text_problems(text)
    assert [(p.path, p.line) for p in problems] == [
        ("devices[1].name", marker_line(text, "here")),
        ("gateway", None),  # no line defines a missing top-level table
    ]
    assert "duplicate device name 'pump1'" in problems[0].message
    assert "missing required key 'gateway'" in problems[1].message


def test_problems_are_sorted_by_line_then_path() -> None:
    text = VALID.replace('host = "127.0.0.1"', "host = 1\nport = 0\ntimeout = -1")
    text = text.replace('address = 0\n  type = "float32"', 'address = true\n  type = "x"')
    problems = text_problems(text)
    keys = [(p.line is None, p.line or 0) for p in problems]
    assert keys == sorted(keys)
    assert [p.path for p in problems] == [
        "buses[0].host",
        "buses[0].port",
        "buses[0].timeout",
        "devices[0].points[0].address",
        "devices[0].points[0].type",
    ]


def test_range_with_one_number_names_the_array() -> None:
    text = VALID + "  range = [1.0]  # <- here\n"
    (problem,) = text_problems(text)
    assert (problem.path, problem.line) == ("devices[0].points[0].range", marker_line(text, "here"))
    assert "expected 2 items" in problem.message


def test_bad_name_is_explained() -> None:
    text = VALID.replace('name = "speed"', 'name = "2nd speed"  # <- here')
    (problem,) = text_problems(text)
    assert (problem.path, problem.line) == ("devices[0].points[0].name", marker_line(text, "here"))
    assert "'2nd speed'" in problem.message
    assert "letter" in problem.message


# -- unreadable files --------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    (problem,) = problems_of(path)
    assert (problem.file, problem.path, problem.line) == (str(path), "", None)
    assert "cannot read" in problem.message
    assert "No such file" in problem.message


def test_directory_is_not_a_config(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path)
    assert "cannot read" in problem.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.toml"
    path.write_text(VALID, encoding="utf-8")
    path.chmod(0)
    (problem,) = problems_of(path)
    assert "Permission denied" in problem.message


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    text = VALID.replace('host = "127.0.0.1"', 'host = "Großhof"  # <- here')
    path.write_bytes(text.encode("latin-1"))
    (problem,) = problems_of(path)
    assert problem.line == marker_line(text, "here")
    assert "UTF-8" in problem.message
    assert "0xdf" in problem.message


def test_byte_order_mark_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "windows.toml"
    path.write_bytes(b"\xef\xbb\xbf" + VALID.replace("\n", "\r\n").encode())
    assert load_config(path).devices[0].points[0].name == "speed"
    bad = "\ufeff" + VALID.replace("address = 0", "address = -1  # <- here").replace("\n", "\r\n")
    (problem,) = text_problems(bad)
    assert problem.line == marker_line(bad, "here")


def test_syntax_error_at_end_of_file_has_no_line() -> None:
    (problem,) = text_problems(VALID + 'unit = "open\n')
    assert problem.path == ""
    assert "TOML syntax error" in problem.message
    (problem,) = text_problems(VALID + "range = [1.0,\n")
    assert problem.line is None
    assert "end of the file" in problem.message


# -- the MQTT password file --------------------------------------------------------------


def with_password_file(path: str) -> str:
    return VALID.replace("[[buses]]", f"[mqtt]\npassword_file = {path!r}  # <- here\n\n[[buses]]")


def test_readable_password_file_loads(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret\n", encoding="utf-8")
    config = load_config_text(with_password_file(str(secret)), filename="x.toml")
    assert config.mqtt.password_file == secret


def test_password_file_that_is_a_directory(tmp_path: Path) -> None:
    text = with_password_file(str(tmp_path))
    (problem,) = text_problems(text)
    assert (problem.path, problem.line) == ("mqtt.password_file", marker_line(text, "here"))
    assert "not a regular file" in problem.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_password_file_that_is_not_readable(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret\n", encoding="utf-8")
    secret.chmod(0)
    (problem,) = text_problems(with_password_file(str(secret)))
    assert "not readable" in problem.message


def test_relative_password_file(tmp_path: Path) -> None:
    (problem,) = text_problems(with_password_file("~/mqtt.password"))
    assert problem.path == "mqtt.password_file"
    assert "absolute" in problem.message
    assert "'~' is not expanded" in problem.message


# -- the locator -------------------------------------------------------------------------

TRICKY = """\
# [[devices]] in a comment is not a header
title = "a [b] = c # not a comment"      # @title
'literal.key' = 1                        # @literal
"quoted \\" key" = 2                      # @quoted
site . area.cell = "x"                   # @dotted
multi = \"\"\"
[[devices]]
name = "fake" \\\"\"\" still text
\"\"\"\"
raw = '''
[mqtt] = x'''
arr = [                                  # @arr
  1,                                     # @arr0
  "],[",                                 # @arr1
  # a comment with ] and [
  [2, 3], ]                              # @arr2
[[devices]]                              # @dev0
name = "d0"                              # @dev0.name
  [[devices.points]]                     # @dev0.p0
  name = "p0"                            # @dev0.p0.name
  [[devices.points]]                     # @dev0.p1
  name = "p1"
  range = [0,
    1]                                   # @dev0.p1.range1
  [devices.points.extra]                 # @dev0.p1.extra
  x = 1
[[devices]]                              # @dev1
name = "d1"
  [[ devices . points ]]                 # @dev1.p0
  "name" = "p0"                          # @dev1.p0.name
[mqtt]                                   # @mqtt
url = "mqtt://x"                         # @mqtt.url
inline = { a = 1, b = [1,                # @inline.b0
  2] }                                   # @inline.b1
points = [ { name = "x" },               # @points0
  { name = "y" } ]                       # @points1
"""

LOCATED = [
    (("title",), "title"),
    (("literal.key",), "literal"),
    (('quoted " key',), "quoted"),
    (("site",), "dotted"),
    (("site", "area", "cell"), "dotted"),
    (("arr",), "arr"),
    (("arr", 0), "arr0"),
    (("arr", 1), "arr1"),
    (("arr", 2), "arr2"),
    (("devices",), "dev0"),
    (("devices", 0), "dev0"),
    (("devices", 0, "name"), "dev0.name"),
    (("devices", 0, "points", 0), "dev0.p0"),
    (("devices", 0, "points", 0, "name"), "dev0.p0.name"),
    (("devices", 0, "points", 1), "dev0.p1"),
    (("devices", 0, "points", 1, "range", 1), "dev0.p1.range1"),
    (("devices", 0, "points", 1, "extra"), "dev0.p1.extra"),
    (("devices", 1), "dev1"),
    (("devices", 1, "points", 0), "dev1.p0"),
    (("devices", 1, "points", 0, "name"), "dev1.p0.name"),
    (("mqtt",), "mqtt"),
    (("mqtt", "url"), "mqtt.url"),
    (("mqtt", "inline", "b", 0), "inline.b0"),
    (("mqtt", "inline", "b", 1), "inline.b1"),
    (("mqtt", "points", 0, "name"), "points0"),
    (("mqtt", "points", 1, "name"), "points1"),
]


def tricky_line(label: str) -> int:
    lines = [n for n, line in enumerate(TRICKY.splitlines(), 1) if line.endswith(f"# @{label}")]
    assert len(lines) == 1
    return lines[0]


def test_tricky_document_is_valid_toml() -> None:
    data = tomllib.loads(TRICKY)
    assert data["multi"].startswith("[[devices]]")
    assert len(data["devices"]) == 2
    assert data["devices"][0]["points"][1]["extra"] == {"x": 1}


@pytest.mark.parametrize(("path", "label"), LOCATED, ids=[label for _, label in LOCATED])
def test_locator_finds_the_defining_line(path: tuple[str | int, ...], label: str) -> None:
    locator = TomlLocator(TRICKY, tomllib.loads(TRICKY))
    assert locator.line(path) == tricky_line(label)


@pytest.mark.parametrize(
    "path",
    [("devices", 2), ("name",), ("devices", 0, "points", 2), ("missing",), ("arr", 3)],
)
def test_locator_knows_nothing_it_cannot_see(path: tuple[str | int, ...]) -> None:
    assert TomlLocator(TRICKY, tomllib.loads(TRICKY)).line(path) is None


def test_locator_forgets_everything_when_the_scan_disagrees() -> None:
    # Given a document that does not match the text, an unknown line beats a wrong one.
    assert TomlLocator(TRICKY).line(("title",)) == tricky_line("title")
    assert TomlLocator(TRICKY, {"title": "x"}).line(("title",)) is None


layouts = st.lists(  # per device: per point, (indent, blank lines before, quoted key, comment)
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 2), st.booleans(), st.booleans()),
        min_size=1,
        max_size=4,
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=60, deadline=None)
@given(layouts)
def test_locator_on_generated_arrays_of_tables(
    devices: list[list[tuple[int, int, bool, bool]]],
) -> None:
    lines: list[str] = []
    expect: dict[tuple[str | int, ...], int] = {}
    for d, points in enumerate(devices):
        lines.append("[[devices]]")
        expect["devices", d] = len(lines)
        lines.append(f'name = "d{d}"  # [[devices.points]] = fake')
        for p, (indent, blanks, quoted, comment) in enumerate(points):
            pad = " " * indent
            lines += [""] * blanks
            if comment:
                lines.append(f"{pad}# [[devices]]")
            lines.append(f"{pad}[[devices.points]]")
            expect["devices", d, "points", p] = len(lines)
            lines += [f'{pad}note = """', "[[devices.points]]", 'name = "no"', '"""']
            key = '"name"' if quoted else "name"
            lines.append(f'{pad}{key} = "p{p}"')
            expect["devices", d, "points", p, "name"] = len(lines)
    text = "\n".join(lines) + "\n"
    data = tomllib.loads(text)
    assert len(data["devices"]) == len(devices)
    locator = TomlLocator(text, data)
    for path, line in expect.items():
        assert locator.line(path) == line


def test_numeric_choice_names_the_allowed_numbers() -> None:
    text = EXAMPLE.read_text().replace(
        'kind = "modbus_tcp"', 'kind = "modbus_rtu"\nbytesize = 6', 1
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, filename="x.toml")
    messages = {p.path: p.message for p in info.value.problems}
    assert messages["buses[0].bytesize"] == "must be one of 7, 8, got 6"


def test_bits_of_one_register_do_not_overlap_but_strings_do() -> None:
    head = re.split(r"(?m)^\[\[devices\.points\]\]$", EXAMPLE.read_text(), maxsplit=1)[0]
    points = """
[[devices.points]]
name = "running"
table = "holding"
address = 300
type = "bool"
bit = 0
model = "none"

[[devices.points]]
name = "fault"
table = "holding"
address = 300
type = "bool"
bit = 1
model = "none"

[[devices.points]]
name = "serial_no"
table = "holding"
address = 310
type = "string"
length = 8
model = "none"

[[devices.points]]
name = "hidden"
table = "holding"
address = 313
type = "uint16"
"""
    with pytest.raises(ConfigError) as info:
        load_config_text(head + points, filename="x.toml")
    problems = {p.path: p.message for p in info.value.problems}
    assert list(problems) == ["devices[0].points[3].address"], problems
    assert "overlap point 'serial_no'" in problems["devices[0].points[3].address"]
