"""TOML file → validated, frozen :class:`Config`, or a ConfigError listing every located problem.

Paths in the file (``gateway.state_dir``, ``mqtt.password_file``) must be absolute: the
service's working directory is not part of its configuration, so a relative path would name
different places under systemd, in a shell and in a test.
"""

from __future__ import annotations

import difflib
import json
import re
import stat
import tomllib
import types
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, Tag, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from edgetwin.config.locate import KeyPath, TomlLocator
from edgetwin.config.schema import Config, Name, PointRef
from edgetwin.errors import ConfigError, ConfigProblem
from edgetwin.protocols.modbus.codec import register_count

# A discriminated union's key: a field name, or a function of the raw table (devices' driver).
Disc = str | Callable[[Any], Hashable] | None

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_NAME_PATTERN = TypeAdapter(Name).json_schema().get("pattern")
_POINT_REF_PATTERN = TypeAdapter(PointRef).json_schema().get("pattern")
_POINT_REF = re.compile(str(_POINT_REF_PATTERN))
_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "path_type": "a path string",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "list_type": "an array",
    "tuple_type": "an array",
}
# Model-level checks in the schema report on the whole table; point them at the key they are about.
_MODEL_CHECK_KEYS = (
    ("does not fit table", "type"),
    ("register out of range", "address"),
    ("range must be", "range"),
    ("scale must not be", "scale"),
    ("needs input", "model"),
    ("input is only for", "input"),
    ("input must name", "input"),
    ("independent samples", "commissioning"),
    ("has no device", "points"),
    ("listed twice", "points"),
    ("holds none of the asset's points", "device"),
)
# The schema's own guards on an asset's points, which _asset_points reports point by point.
_ASSET_MEMBER_CHECKS = ("has no device", "listed twice", "holds none of the asset's points")
_TABLE_WORDS = {
    "coil": "coil",
    "discrete": "discrete input",
    "holding": "holding register",
    "input": "input register",
}


@dataclass(frozen=True)
class _Issue:
    path: KeyPath
    message: str
    anchor: KeyPath | None = None  # where the line is, if ``path`` is not in the file


def load_config(path: Path | str) -> Config:
    """Read, parse and validate the TOML configuration file at ``path``."""
    filename = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([ConfigProblem(filename, "", f"cannot read the file: {reason}")]) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text: byte 0x{raw[exc.start]:02x} cannot be decoded"
        raise ConfigError([ConfigProblem(filename, "", message, line)]) from exc
    return load_config_text(text, filename=filename)


def load_config_text(text: str, *, filename: str) -> Config:
    """Parse and validate TOML ``text``; ``filename`` only labels the problems."""
    text = text.removeprefix("\ufeff")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(str(exc), filename)]) from exc
    issues: list[_Issue] = []
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        issues = [_translate(error) for error in exc.errors(include_url=False)]
    reported = {issue.path for issue in issues}
    issues += [i for i in _loose_types(data, Config, None, ()) if i.path not in reported]
    locator = TomlLocator(text, data)

    def where(path: KeyPath) -> str:
        line = locator.line(path)
        return render_path(path) + ("" if line is None else f", line {line}")

    semantic = _semantic_issues(data, where)
    # An asset's points are reported one by one below; drop the schema's summary of the same.
    located = {i.path[:2] for i in semantic if i.path[:1] == ("assets",)}
    issues = [
        i
        for i in issues
        if i.path[:2] not in located or not any(c in i.message for c in _ASSET_MEMBER_CHECKS)
    ]
    issues += semantic
    if issues:
        raise ConfigError(_located(issues, locator, filename))
    assert config is not None
    return config


def render_path(path: Sequence[str | int]) -> str:
    """Render a key path the way TOML spells it, e.g. ``devices[0].points[2].address``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            out += f".{key}" if out else key
    return out


def _located(issues: list[_Issue], locator: TomlLocator, filename: str) -> list[ConfigProblem]:
    rows: list[tuple[int | None, KeyPath, str]] = []
    for issue in dict.fromkeys(issues):
        line = locator.line(issue.path)
        if line is None and issue.anchor is not None:
            line = locator.line(issue.anchor)
        rows.append((line, issue.path, issue.message))
    rows.sort(key=lambda r: (r[0] is None, r[0] or 0, [(isinstance(p, str), p) for p in r[1]]))
    return [ConfigProblem(filename, render_path(p), m, line) for line, p, m in rows]


def _syntax_problem(text: str, filename: str) -> ConfigProblem:
    match = _POSITION.search(text)
    if match is None:
        reason = text.replace(" (at end of document)", "")
        return ConfigProblem(filename, "", f"TOML syntax error at the end of the file: {reason}")
    reason = f"TOML syntax error: {text[: match.start()]} (column {match[2]})"
    return ConfigProblem(filename, "", reason, int(match[1]))


# -- pydantic errors → located issues ----------------------------------------------------


def _translate(error: ErrorDetails) -> _Issue:
    loc, kind, value = error["loc"], error["type"], error["input"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    path, tp = _walk(loc)
    if kind == "missing":
        parent, parent_tp = _walk(loc[:-1])
        if isinstance(path[-1], int) and isinstance(value, list):  # a short fixed-size array
            size = len(get_args(parent_tp))
            return _Issue(parent, f"expected {size} items, got {_show(value)}")
        return _Issue(path, f"missing required key {path[-1]!r}", anchor=parent)
    if kind == "extra_forbidden":
        key = str(path[-1])
        return _Issue(path, f"unknown key {key!r}{_suggest(key, _fields(_walk(loc[:-1])[1]))}")
    if kind in {"union_tag_not_found", "union_tag_invalid"}:
        disc = str(ctx.get("discriminator", "kind")).strip("'")
        if kind == "union_tag_not_found":
            return _Issue((*path, disc), f"missing required key {disc!r}", anchor=path)
        tags = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        tag = str(ctx.get("tag"))
        text = f"unknown {disc} {tag!r}; expected {_one_of(tags)}{_suggest(tag, tags)}"
        return _Issue((*path, disc), text)
    if kind == "literal_error":
        # pydantic spells the choices "'a', 'b' or 'c'" (strings) or "7 or 8" (numbers).
        expected = str(ctx.get("expected", ""))
        options = re.findall(r"'([^']*)'", expected)
        if options:
            hint = _suggest(value, options) if isinstance(value, str) else ""
            return _Issue(path, f"must be {_one_of(options)}, got {_show(value)}{hint}")
        numbers = re.findall(r"-?\d+(?:\.\d+)?", expected)
        choice = f"one of {', '.join(numbers)}" if len(numbers) > 1 else "".join(numbers)
        return _Issue(path, f"must be {choice}, got {_show(value)}")
    if kind in _EXPECTED:
        want = _EXPECTED[kind]
        if kind == "list_type" and _holds_tables(_unwrap(_child(tp, 0))[0]):
            header = ".".join(p for p in path if isinstance(p, str))
            want = f"an array of tables, written [[{header}]]"
        return _Issue(path, f"expected {want}, got {_describe(value)}")
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == _NAME_PATTERN:
        text = "a name starts with a letter and has at most 64 letters, digits, '_' or '-'"
        return _Issue(path, f"invalid name {_show(value)}: {text}")
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == _POINT_REF_PATTERN:
        text = (
            "an asset's point is 'point' or 'device.point', each name starting with a letter "
            "and having at most 64 letters, digits, '_' or '-'"
        )
        return _Issue(path, f"invalid point {_show(value)}: {text}")
    if kind in {"too_short", "too_long"}:
        bound = "at least" if kind == "too_short" else "at most"
        count = ctx.get("min_length" if kind == "too_short" else "max_length")
        return _Issue(path, f"must have {bound} {count} items, got {ctx.get('actual_length')}")
    message = error["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
    if isinstance(value, dict):  # a model-level check
        field = next((k for phrase, k in _MODEL_CHECK_KEYS if phrase in message), None)
        if field is None or field not in value:
            return _Issue(path, message)
        shown = _show(value[field])
        return _Issue((*path, field), message if shown in message else f"{message} (got {shown})")
    return _Issue(path, f"{message} (got {_show(value)})")


def _walk(loc: Sequence[str | int]) -> tuple[KeyPath, Any]:
    """Key path without pydantic's union tags, and the schema type found there."""
    path: list[str | int] = []
    tp, disc = _unwrap((Config, None))
    for part in loc:
        member = _tagged(tp, disc, part)
        if member is not None:
            tp, disc = member, None
            continue
        path.append(part)
        tp, disc = _unwrap(_child(tp, part))
    return tuple(path), tp


def _unwrap(typed: tuple[Any, Disc]) -> tuple[Any, Disc]:
    tp, disc = typed
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp, *meta = get_args(tp)
            for info in meta:
                key = info.discriminator if isinstance(info, FieldInfo | Discriminator) else None
                if isinstance(key, str) or (isinstance(info, Discriminator) and callable(key)):
                    disc = key
        elif origin in {Union, types.UnionType}:
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp, disc
            tp = members[0]
        else:
            return tp, disc


def _child(tp: Any, part: str | int) -> tuple[Any, Disc]:
    if _is_model(tp) and isinstance(part, str):
        field = tp.model_fields.get(part)
        if field is None:
            return None, None
        disc = field.discriminator
        return field.annotation, disc if isinstance(disc, str) else None
    args = get_args(tp)
    if isinstance(part, int) and args and get_origin(tp) in {list, tuple}:
        return (args[0] if args[-1] is Ellipsis else args[min(part, len(args) - 1)]), None
    return None, None


def _tagged(tp: Any, disc: Disc, tag: object) -> Any:
    """The member of a discriminated union whose ``disc`` literal (or Tag) is ``tag``, else None."""
    if disc is None or not isinstance(tag, str):
        return None
    members = get_args(tp) if get_origin(tp) in {Union, types.UnionType} else (tp,)
    if callable(disc):  # members are Annotated[Model, Tag(...)]
        for member in members:
            model, *meta = get_args(member) if get_origin(member) is Annotated else (member,)
            if any(isinstance(m, Tag) and m.tag == tag for m in meta):
                return model
        return None
    for member in members:
        field = member.model_fields.get(disc) if _is_model(member) else None
        if (
            field is not None
            and get_origin(field.annotation) is Literal
            and tag in get_args(field.annotation)
        ):
            return member
    return None


def _holds_tables(tp: Any) -> bool:
    """A model, or a union of (tagged) models."""
    if get_origin(tp) in {Union, types.UnionType}:
        return all(_holds_tables(a) for a in get_args(tp))
    if get_origin(tp) is Annotated:
        return _holds_tables(get_args(tp)[0])
    return _is_model(tp)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _fields(tp: Any) -> list[str]:
    return list(tp.model_fields) if _is_model(tp) else []


def _loose_types(data: Any, tp: Any, disc: Disc, path: KeyPath) -> Iterator[_Issue]:
    """Numbers written as strings or booleans, which pydantic's lax mode would accept."""
    tp, disc = _unwrap((tp, disc))
    if disc is not None and isinstance(data, dict):
        tp = _tagged(tp, disc, disc(data) if callable(disc) else data.get(disc))
    if _is_model(tp) and isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and key in tp.model_fields:
                yield from _loose_types(value, *_child(tp, key), (*path, key))
    elif get_origin(tp) in {list, tuple} and isinstance(data, list):
        for i, item in enumerate(data):
            yield from _loose_types(item, *_child(tp, i), (*path, i))
    elif tp is int and (isinstance(data, bool) or not isinstance(data, int)):
        yield _Issue(path, f"expected an integer, got {_describe(data)}")
    elif tp is float and (isinstance(data, bool) or not isinstance(data, int | float)):
        yield _Issue(path, f"expected a number, got {_describe(data)}")


# -- checks across keys ------------------------------------------------------------------


def _semantic_issues(data: dict[str, Any], where: Callable[[KeyPath], str]) -> list[_Issue]:
    buses = _items(data, "buses", ())
    devices = _items(data, "devices", ())
    issues = [*_duplicates(buses, "bus", where), *_duplicates(devices, "device", where)]
    for path, device in devices:
        points = _items(device, "points", path)
        issues += _duplicates(points, "point", where)
        issues += _overlaps(points, where)
    issues += _bus_references(data.get("buses"), devices)
    issues += _bus_kinds(data.get("buses"), devices)
    issues += _unit_ids(devices, where)
    issues += _lag_inputs(devices)
    assets = _items(data, "assets", ())
    issues += _duplicates(assets, "asset", where)
    issues += _asset_points(assets, devices)
    issues += _file_paths(data)
    return issues


def _point_names(device: dict[str, Any]) -> list[str]:
    return [p["name"] for _, p in _items(device, "points", ()) if isinstance(p.get("name"), str)]


def _lag_inputs(devices: list[tuple[KeyPath, Any]]) -> Iterator[_Issue]:
    for path, device in devices:
        names = _point_names(device)
        for p_path, point in _items(device, "points", path):
            source = point.get("input")
            if isinstance(source, str) and source not in names:
                hint = _suggest(source, names)
                yield _Issue(
                    (*p_path, "input"), f"input {source!r} is not a point of this device{hint}"
                )


def _asset_points(
    assets: list[tuple[KeyPath, Any]], devices: list[tuple[KeyPath, Any]]
) -> Iterator[_Issue]:
    by_name = {d["name"]: d for _, d in devices if isinstance(d.get("name"), str)}
    for path, asset in assets:
        default = asset.get("device")
        if isinstance(default, str) and default not in by_name:
            yield _Issue((*path, "device"), _unknown_device(default, list(by_name)))
        listed = asset.get("points")
        if not isinstance(listed, list):
            continue
        yield from _asset_members(path, listed, default, by_name)


def _asset_members(
    path: KeyPath, listed: list[Any], default: object, by_name: dict[str, Any]
) -> Iterator[_Issue]:
    """Each listed point resolves to one point of a known device, once; one period per device."""
    first: dict[tuple[str, str], int] = {}
    periods: dict[str, dict[object, str]] = {}
    for i, ref in enumerate(listed):
        if not isinstance(ref, str) or not _POINT_REF.fullmatch(ref):
            continue  # the schema reports it
        here = (*path, "points", i)
        dev_name, _, name = ref.rpartition(".")
        if not dev_name:
            if default is None:
                text = f"{ref!r} names no device: write 'device.{ref}' or give the asset a device"
                yield _Issue(here, text, anchor=(*path, "points"))
                continue
            if not isinstance(default, str) or default not in by_name:
                continue  # the device key is reported
            dev_name = default
        device = by_name.get(dev_name)
        if device is None:
            text = f"in {ref!r}: {_unknown_device(dev_name, list(by_name))}"
            yield _Issue(here, text, anchor=(*path, "points"))
            continue
        points = {p["name"]: p for _, p in _items(device, "points", ()) if "name" in p}
        if name not in points:
            hint = _suggest(name, [str(n) for n in points])
            text = f"{name!r} is not a point of device {dev_name!r}{hint}"
            yield _Issue(here, text, anchor=(*path, "points"))
            continue
        if (dev_name, name) in first:
            j = first[dev_name, name]
            text = (
                f"{ref!r} is listed twice: points[{j}] {listed[j]!r} is the same point "
                f"of device {dev_name!r}"
            )
            yield _Issue(here, text, anchor=(*path, "points"))
            continue
        first[dev_name, name] = i
        period = points[name].get("interval") or device.get("interval", 1.0)
        periods.setdefault(dev_name, {}).setdefault(period, name)
    known = isinstance(default, str) and default in by_name
    if known and first and all(d != default for d, _ in first):
        text = f"device {default!r} holds none of the asset's points: drop it or list some"
        yield _Issue((*path, "device"), text)
    for dev_name, seen in periods.items():
        if len(seen) > 1:
            # Across devices periods may differ (the asset ticks on the fastest, docs/twin.md);
            # on one device a reading is that device's report, so it must hold all its points.
            shown = ", ".join(f"{n!r} every {p} s" for p, n in seen.items())
            text = (
                "the points of an asset must be polled together on each device; "
                f"device {dev_name!r}: {shown}"
            )
            yield _Issue((*path, "points"), text)


def _unknown_device(name: str, known: list[str]) -> str:
    defined = ", ".join(repr(n) for n in known) or "none"
    return f"unknown device {name!r}{_suggest(name, known)}; defined devices: {defined}"


def _items(container: dict[str, Any], key: str, base: KeyPath) -> list[tuple[KeyPath, Any]]:
    value = container.get(key)
    if not isinstance(value, list):
        return []
    return [((*base, key, i), item) for i, item in enumerate(value) if isinstance(item, dict)]


def _duplicates(
    items: list[tuple[KeyPath, Any]], what: str, where: Callable[[KeyPath], str]
) -> Iterator[_Issue]:
    first: dict[str, KeyPath] = {}
    for path, item in items:
        name = item.get("name")
        if not isinstance(name, str):
            continue
        if name in first:
            text = f"duplicate {what} name {name!r} (first defined at {where(first[name])})"
            yield _Issue((*path, "name"), text)
        else:
            first[name] = path


def _span(point: dict[str, Any]) -> tuple[str, int, int] | None:
    table, address, vtype = point.get("table"), point.get("address"), point.get("type", "uint16")
    if table not in _TABLE_WORDS or isinstance(address, bool) or not isinstance(address, int):
        return None
    length = point.get("length")
    try:
        count = (
            1
            if table in {"coil", "discrete"}
            else register_count(
                vtype, length if isinstance(length, int) and not isinstance(length, bool) else None
            )
        )
    except (KeyError, ValueError):
        return None  # the schema reports the bad type or length
    return table, address, address + count - 1


def _registers(table: str, first: int, last: int) -> str:
    word = _TABLE_WORDS[table]
    return f"{word} {first}" if first == last else f"{word}s {first}..{last}"


def _overlaps(
    points: list[tuple[KeyPath, Any]], where: Callable[[KeyPath], str]
) -> Iterator[_Issue]:
    seen: list[tuple[KeyPath, str, int, int, object, object]] = []
    for path, point in points:
        span = _span(point)
        if span is None:
            continue
        table, first, last = span
        bit = point.get("bit")
        for other, o_table, o_first, o_last, o_name, o_bit in seen:
            # Different bits of one register are different points (status words).
            same_bits = bit is None or o_bit is None or bit == o_bit
            if o_table == table and first <= o_last and o_first <= last and same_bits:
                text = (
                    f"{_registers(table, first, last)} overlap point {o_name!r} "
                    f"({_registers(table, o_first, o_last)} at {where(other)})"
                )
                yield _Issue((*path, "address"), text)
                break
        seen.append((path, table, first, last, point.get("name"), bit))


def _bus_references(buses: object, devices: list[tuple[KeyPath, Any]]) -> Iterator[_Issue]:
    if not isinstance(buses, list):
        return
    names = [bus.get("name") if isinstance(bus, dict) else None for bus in buses]
    if not all(isinstance(name, str) for name in names):
        return  # a malformed bus might be the one referenced: cannot tell
    defined = ", ".join(repr(n) for n in dict.fromkeys(names)) or "none"
    for path, device in devices:
        bus = device.get("bus")
        if isinstance(bus, str) and bus not in names:
            hint = _suggest(bus, [str(n) for n in names])
            yield _Issue((*path, "bus"), f"unknown bus {bus!r}{hint}; defined buses: {defined}")


_DRIVER_BUSES = {
    "modbus": ("modbus_tcp", "modbus_rtu", "modbus_rtu_tcp"),
    "serial": ("serial",),
    "i2c": ("i2c",),
}


def _bus_kinds(buses: object, devices: list[tuple[KeyPath, Any]]) -> Iterator[_Issue]:
    if not isinstance(buses, list):
        return
    kinds = {b.get("name"): b.get("kind") for b in buses if isinstance(b, dict)}
    for path, device in devices:
        driver, kind = device.get("driver", "modbus"), kinds.get(device.get("bus"))
        fits = _DRIVER_BUSES.get(driver) if isinstance(driver, str) else None
        known = any(kind in kinds for kinds in _DRIVER_BUSES.values())
        if known and fits is not None and kind not in fits:
            text = (
                f"a {driver} device cannot sit on bus {device.get('bus')!r} of kind {kind!r}; "
                f"it needs {_one_of(list(fits))}"
            )
            yield _Issue((*path, "bus"), text)


def _unit_ids(
    devices: list[tuple[KeyPath, Any]], where: Callable[[KeyPath], str]
) -> Iterator[_Issue]:
    first: dict[tuple[str, int], tuple[KeyPath, object]] = {}
    for path, device in devices:
        if device.get("driver", "modbus") != "modbus":
            continue
        bus, unit = device.get("bus"), device.get("unit", 1)
        if not isinstance(bus, str) or isinstance(unit, bool) or not isinstance(unit, int):
            continue
        if (bus, unit) in first:
            other, name = first[bus, unit]
            default = "" if "unit" in device else " (the default)"
            text = (
                f"unit id {unit}{default} on bus {bus!r} is already used by device {name!r} "
                f"({where(other)})"
            )
            yield _Issue((*path, "unit"), text, anchor=path)
        else:
            first[bus, unit] = (path, device.get("name"))


def _file_paths(data: dict[str, Any]) -> Iterator[_Issue]:
    gateway, mqtt = data.get("gateway"), data.get("mqtt")
    state_dir = gateway.get("state_dir") if isinstance(gateway, dict) else None
    if isinstance(state_dir, str) and not Path(state_dir).is_absolute():
        yield _Issue(("gateway", "state_dir"), _relative(state_dir))
    password_file = mqtt.get("password_file") if isinstance(mqtt, dict) else None
    if isinstance(password_file, str):
        if not Path(password_file).is_absolute():
            yield _Issue(("mqtt", "password_file"), _relative(password_file))
        elif (reason := _unreadable(Path(password_file))) is not None:
            yield _Issue(("mqtt", "password_file"), reason)


def _relative(path: str) -> str:
    note = " ('~' is not expanded)" if path.startswith("~") else ""
    return f"must be an absolute path, got {path!r}{note}"


def _unreadable(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"file {str(path)!r} does not exist"
    except OSError as exc:
        return f"cannot access {str(path)!r}: {exc.strerror}"
    if not stat.S_ISREG(mode):  # opening a FIFO would block
        return f"{str(path)!r} is not a regular file"
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        return f"file {str(path)!r} is not readable: {exc.strerror}"
    return None


# -- wording -----------------------------------------------------------------------------


def _suggest(word: str, options: Sequence[str]) -> str:
    if len(options) < 2:  # the message already names the only option
        return ""
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _one_of(options: Sequence[str]) -> str:
    quoted = [repr(o) for o in options]
    if len(quoted) <= 1:
        return "".join(quoted)
    return f"one of {', '.join(quoted[:-1])} or {quoted[-1]}"


def _show(value: object) -> str:
    """A value as TOML would spell it, shortened."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        if len(value) > 8 or any(isinstance(v, dict | list) for v in value):
            return "an array"
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _describe(value: object) -> str:
    """A value with its TOML type, for type errors."""
    if isinstance(value, dict | list):
        return _show(value)
    kind = {bool: "boolean", str: "string", int: "integer", float: "float"}.get(type(value))
    return f"{kind or type(value).__name__} {_show(value)}"
