"""`edgetwin status`: attention rules, the text summary and exit codes."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from typing import Any

import pytest

from edgetwin.status import (
    EXIT_ATTENTION,
    EXIT_OK,
    EXIT_UNREACHABLE,
    AssetStatus,
    BacklogStatus,
    DeviceStatus,
    Limits,
    PointStatus,
    Status,
    StatusUnavailableError,
    UplinkStatus,
    attention,
    fetch_status,
    needs_attention,
    render,
    run_status,
    status_url,
)

NOW = 1_750_000_000.0
REASON = "unit 2 at 127.0.0.1:5020 did not answer input 0+23 within 1 s"


def point(name: str = "speed", **kw: Any) -> PointStatus:
    base: dict[str, Any] = {"name": name, "unit": "rpm", "value": 1480.0, "estimate": 1480.0}
    return PointStatus(**{**base, "score": 0.1, "ts": NOW - 0.5, **kw})


def device(name: str = "pump1", **kw: Any) -> DeviceStatus:
    base: dict[str, Any] = {"name": name, "bus": "plant", "online": True, "since": NOW - 3600}
    return DeviceStatus(**{**base, "polls": 3600, "points": (point(),), **kw})


def asset(name: str = "hydraulics", **kw: Any) -> AssetStatus:
    base: dict[str, Any] = {"name": name, "device": "pump1", "score": 0.2, "ts": NOW - 0.5}
    return AssetStatus(**{**base, "contributions": {"speed": 0.5, "flow": 0.5}, **kw})


def status(
    devices: tuple[DeviceStatus, ...] | None = None,
    uplink: dict[str, Any] | None = None,
    backlog: dict[str, Any] | None = None,
    assets: tuple[AssetStatus, ...] = (),
) -> Status:
    return Status(
        gateway="edge-01",
        session="0123abcd",
        version="1.2.3",
        started=NOW - 7200,
        ts=NOW,
        devices=devices if devices is not None else (device(),),
        assets=assets,
        uplink=UplinkStatus(
            **{"broker": "10.0.0.5:1883", "connected": True, "since": NOW - 7000, **(uplink or {})}
        ),
        backlog=BacklogStatus(**{"depth": 2, "bytes": 300, "oldest_age": 0.3, **(backlog or {})}),
    )


def test_a_healthy_gateway_needs_nothing() -> None:
    s = status(
        devices=(
            device(),
            device("pump3", online=None, points=(point(ts=None, value=None),)),
            device("pump4", points=(point(alarm="WARNING"),)),
        ),
        assets=(asset(), asset("drive", alarm="WARNING", score=0.9), asset("new", ts=None)),
    )
    assert attention(s) == []
    assert not needs_attention(s)
    assert render(s).splitlines()[0] == "edgetwin edge-01: OK"


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ({"devices": (device("pump2", online=False, since=NOW - 300, reason=REASON),)}, REASON),
        ({"devices": (device(points=(point("flow", alarm="ALARM", score=4.2),)),)}, "in ALARM"),
        ({"devices": (device(points=(point(quality=("OUT_OF_RANGE",)),)),)}, "out_of_range"),
        ({"uplink": {"connected": False, "since": NOW - 61}}, "disconnected for 1 min 1 s"),
        ({"backlog": {"oldest_age": 301.0, "depth": 9000}}, "9000 messages waiting"),
        ({"backlog": {"dropped_frames": 12, "dropped_bytes": 4096}}, "12 frames (4.0 KiB)"),
        (
            {"assets": (asset(alarm="ALARM", score=3.25, contributions={"flow": 0.75}),)},
            "asset hydraulics (pump1) in ALARM: score 3.25; mostly flow 75 %",
        ),
    ],
)
def test_each_problem_needs_attention_and_is_named(case: dict[str, Any], expect: str) -> None:
    s = status(**case)
    found = attention(s)
    assert len(found) == 1, found
    assert expect in found[0]
    assert needs_attention(s)
    text = render(s)
    assert "NEEDS ATTENTION (1)" in text.splitlines()[0]
    assert expect in text


def test_short_outages_are_tolerated_up_to_the_limits() -> None:
    s = status(uplink={"connected": False, "since": NOW - 30}, backlog={"oldest_age": 200.0})
    assert not needs_attention(s)
    assert needs_attention(s, Limits(uplink_down=20, backlog_age=300))
    assert needs_attention(s, Limits(uplink_down=60, backlog_age=100))


def test_an_offline_device_is_one_item_not_one_per_point() -> None:
    bad = point(value=None, quality=("COMM_FAIL",))
    s = status(devices=(device("pump2", online=False, reason=REASON, points=(bad, bad)),))
    assert len(attention(s)) == 1


def test_render_shows_devices_points_uplink_and_backlog() -> None:
    s = status(
        devices=(
            device(),
            device(
                "pump2",
                online=False,
                since=NOW - 300,
                reason=REASON,
                breaker_open=True,
                errors={"timeout": 7, "connection": 0},
                points=(point(value=None, quality=("COMM_FAIL",), ts=NOW - 300),),
            ),
        ),
        backlog={"depth": 1234, "bytes": 3 * 1024 * 1024, "dropped_frames": 0},
    )
    text = render(s)
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.lstrip().startswith("pump2"))
    assert "OFFLINE since" in lines[at]
    assert "5 min 0 s ago" in lines[at]
    assert lines[at + 1].strip() == f"why: {REASON}"
    assert any("ONLINE since" in line and "pump1" in line for line in lines)
    assert "errors: timeout 7" in text
    assert "connection 0" not in text
    assert "breaker open" in text
    assert any("speed" in line and "1480" in line and "rpm" in line for line in lines)
    assert any("speed" in line and "n/a" in line and "comm_fail" in line for line in lines)
    assert "connected to 10.0.0.5:1883" in text
    assert "1234 messages (3.0 MiB) waiting" in text


def test_render_lists_assets_with_their_top_points_largest_first() -> None:
    shares = {"speed": 0.05, "flow": 0.6, "head": 0.3, "temp": 0.05, "amps": 0.0}
    s = status(
        assets=(
            asset(alarm="ALARM", score=4.0, contributions=shares, ts=NOW - 3),
            asset("drive", device="pump2", score=None, ts=None),
        )
    )
    lines = render(s).splitlines()
    at = lines.index("Assets")
    assert lines[at - 1] == ""
    assert lines[at + 1].split() == ["asset", "devices", "alarm", "score", "read", "top", "points"]
    row = lines[at + 2].split("  ")
    cells = [c.strip() for c in row if c.strip()]
    assert cells == [
        "hydraulics",
        "pump1",
        "ALARM",
        "4.00",
        "3.0 s ago",
        "flow 60 %, head 30 %, speed 5 %",
    ]
    assert [c.strip() for c in lines[at + 3].split("  ") if c.strip()] == [
        "drive",
        "pump2",
        "NORMAL",
        "n/a",
        "never",
        "-",
    ]
    assert lines[at + 4] == ""
    assert lines[at + 5] == "Uplink"
    assert "Assets" not in render(status()).splitlines()


def test_an_asset_away_from_its_commissioned_operating_point_is_shown_not_alarmed() -> None:
    s = status(
        assets=(
            asset(away=True),
            asset("drive", alarm="WARNING", away=True),
            asset("line", alarm="ALARM", score=2.0, away=True),
            asset("new", learning=True),
        )
    )
    lines = render(s).splitlines()
    at = lines.index("Assets")
    rows = lines[at + 2 : at + 6]
    states = [[c.strip() for c in line.split("  ") if c.strip()][2] for line in rows]
    assert states == ["NORMAL, away", "WARNING, away", "ALARM, away", "learning"]
    assert len(attention(s)) == 1  # the ALARM; being away is no problem in itself
    assert "away" not in render(status(assets=(asset(),)))


def test_an_older_daemons_asset_without_away_reads_as_home() -> None:
    doc = status(assets=(asset(away=True),)).model_dump(mode="json")
    assert doc["assets"][0]["away"] is True
    del doc["assets"][0]["away"]
    old = Status.model_validate_json(json.dumps(doc))
    assert old.assets[0].away is False


def test_an_older_daemons_document_without_assets_still_reads() -> None:
    doc = status().model_dump(mode="json")
    del doc["assets"]
    old = Status.model_validate_json(json.dumps(doc))
    assert old.assets == ()
    assert attention(old) == []
    assert Status.model_validate(status(assets=(asset(),)).model_dump(mode="json")).assets == (
        asset(),
    )


def test_status_url_accepts_a_base_or_the_document() -> None:
    assert status_url("http://127.0.0.1:9877") == "http://127.0.0.1:9877/status.json"
    assert status_url("http://127.0.0.1:9877/") == "http://127.0.0.1:9877/status.json"
    assert status_url("http://gw:1/x/status.json") == "http://gw:1/x/status.json"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_daemon_exits_2_naming_the_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    out, err = io.StringIO(), io.StringIO()
    assert run_status(url, out=out, err=err, timeout=2) == EXIT_UNREACHABLE
    assert out.getvalue() == ""
    assert f"{url}/status.json" in err.getvalue()
    assert "edgetwin run" in err.getvalue()


def test_a_bad_url_scheme_is_reported_not_raised() -> None:
    with pytest.raises(StatusUnavailableError, match="http://"):
        fetch_status("ftp://127.0.0.1/status.json")


async def _serve_once(body: bytes, code: int = 200) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 {code} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("body", "code", "expect"),
    [
        (b'{"hello": "world"}', 200, "not an edgetwin status document"),
        (b"<html>", 200, "not an edgetwin status document"),
        (b"starting", 503, "HTTP 503"),
    ],
)
async def test_something_else_answering_is_unreachable(body: bytes, code: int, expect: str) -> None:
    server, url = await _serve_once(body, code)
    try:
        err = io.StringIO()
        rc = await asyncio.to_thread(run_status, url, out=io.StringIO(), err=err)
    finally:
        server.close()
        await server.wait_closed()
    assert rc == EXIT_UNREACHABLE
    assert expect in err.getvalue()
    assert url in err.getvalue()


@pytest.mark.parametrize(
    ("case", "broken"),
    [
        ({}, False),
        ({"uplink": {"connected": False, "since": NOW - 600}}, True),
        ({"assets": (asset(alarm="WARNING"),)}, False),
        ({"assets": (asset(alarm="ALARM", score=2.0),)}, True),
    ],
)
async def test_exit_code_and_json_output(case: dict[str, Any], broken: bool) -> None:
    s = status(**case)
    server, url = await _serve_once(s.model_dump_json().encode())
    try:
        out = io.StringIO()
        rc = await asyncio.to_thread(run_status, url, as_json=True, out=out, err=io.StringIO())
    finally:
        server.close()
        await server.wait_closed()
    assert rc == (EXIT_ATTENTION if broken else EXIT_OK)
    doc = json.loads(out.getvalue())
    assert Status.model_validate(doc) == s
    assert bool(doc["attention"]) == broken
