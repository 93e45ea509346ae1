"""The metrics server on a free loopback port: every family, the status document, HTTP edges."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetwin.acquisition.scheduler import DeviceHealth
from edgetwin.core.types import Alarm, Quality
from edgetwin.errors import ConnectionLostError, DeviceTimeoutError
from edgetwin.runtime.metrics import (
    AssetView,
    DeviceView,
    GatewayMetrics,
    PointView,
    UplinkView,
    parse_request,
)
from edgetwin.status import Status, fetch_status
from edgetwin.storage.outbox import Outbox
from tests.metrics.support import Uplink, http_get, no_outbox, samples, scrape

MESSAGES = [("edgetwin/v1/edge-01/frames", b"\x01" * 40), ("edgetwin/v1/edge-01/events", b"{}")]


@dataclass
class Plant:
    """Real state objects the metrics read: healths, points, an outbox, the uplink."""

    metrics: GatewayMetrics
    healths: dict[str, DeviceHealth]
    points: list[PointView]
    assets: list[AssetView]
    outbox: Outbox
    uplink: Uplink
    base: str


@pytest.fixture
async def plant(tmp_path: Path) -> AsyncIterator[Plant]:
    now = time.time()
    healths = {
        "pump1": DeviceHealth(online=True, since=now - 3600, polls=120, overruns=2),
        "pump2": DeviceHealth(
            online=False,
            since=now - 90,
            reason="unit 2 at 127.0.0.1:5020 did not answer input 0+23 within 1 s",
            polls=40,
            failed_polls=7,
        ),
        "pump3": DeviceHealth(),  # not polled yet
    }
    points = [
        PointView("pump1", "speed", "rpm", 1480.5, 1480.0, 0.2, Alarm.NORMAL, Quality.GOOD, now),
        PointView(
            "pump1", "flow", "m3/h", 131.0, 80.0, 4.5, Alarm.ALARM, Quality.OUT_OF_RANGE, now
        ),
        PointView(
            "pump2", "speed", "rpm", math.nan, 1480.0, 0.0, Alarm.WARNING, Quality.COMM_FAIL, now
        ),
        PointView("pump3", "speed", "rpm", math.nan, 0.0, 0.0, Alarm.NORMAL, Quality.STALE, None),
    ]
    assets = [
        AssetView("pump1", "hydraulics", 3.5, Alarm.ALARM, {"speed": 0.2, "flow": 0.8}, now),
        AssetView("pump1", "drive", 0.4, Alarm.NORMAL, {"speed": 0.5, "flow": 0.5}, now - 2),
        AssetView("pump3", "line", 0.0, Alarm.NORMAL, {"speed": 0.0, "flow": 0.0}, None),
    ]
    outbox = Outbox(tmp_path / "outbox.db")
    await outbox.open()
    uplink = Uplink(connected=True, published=17)
    metrics = GatewayMetrics("edge-01", "0123abcd", version="9.9.9")
    metrics.bind(
        devices=lambda: [
            DeviceView("plant", "pump1", healths["pump1"], False),
            DeviceView("plant", "pump2", healths["pump2"], True),
            DeviceView("line2", "pump3", healths["pump3"], False),
        ],
        points=lambda: points,
        outbox=outbox.stats,
        uplink=uplink.view,
        assets=lambda: assets,
    )
    server = await metrics.start_server("127.0.0.1", 0)
    try:
        host, port = server.address
        yield Plant(metrics, healths, points, assets, outbox, uplink, f"http://{host}:{port}")
    finally:
        await server.close()
        await outbox.close()


async def test_every_family_is_exposed_with_its_labels_and_values(plant: Plant) -> None:
    for topic, payload in MESSAGES:
        plant.outbox.put(topic, payload)
    await plant.outbox.flush()
    m = plant.metrics
    m.observe_transaction("plant", "pump1", 0.004)
    m.observe_transaction("plant", "pump2", 1.02, [DeviceTimeoutError("late")])
    m.observe_transaction("plant", "pump2", 0.001, [ConnectionLostError("down")] * 2)
    for s in (0.0002, 0.0003, 0.2):
        m.observe_tick(s)

    fams = await scrape(plant.base)

    expected = {
        "edgetwin_gateway_info": "gauge",  # the classic text format has no info type
        "edgetwin_gateway_start_time_seconds": "gauge",
        "edgetwin_bus_transaction_seconds": "histogram",
        "edgetwin_device_errors": "counter",
        "edgetwin_twin_tick_seconds": "histogram",
        "edgetwin_device_up": "gauge",
        "edgetwin_device_state_since_timestamp_seconds": "gauge",
        "edgetwin_device_breaker_open": "gauge",
        "edgetwin_device_polls": "counter",
        "edgetwin_device_failed_polls": "counter",
        "edgetwin_device_overruns": "counter",
        "edgetwin_device_bad_quality_points": "gauge",
        "edgetwin_device_alarm_points": "gauge",
        "edgetwin_point_alarm": "gauge",
        "edgetwin_point_quality": "gauge",
        "edgetwin_point_anomaly_score": "gauge",
        "edgetwin_asset_alarm": "gauge",
        "edgetwin_asset_anomaly_score": "gauge",
        "edgetwin_asset_contribution": "gauge",
        "edgetwin_outbox_messages": "gauge",
        "edgetwin_outbox_bytes": "gauge",
        "edgetwin_outbox_buffered_messages": "gauge",
        "edgetwin_outbox_oldest_age_seconds": "gauge",
        "edgetwin_outbox_dropped_frames": "counter",
        "edgetwin_outbox_dropped_bytes": "counter",
        "edgetwin_outbox_commits": "counter",
        "edgetwin_mqtt_connected": "gauge",
        "edgetwin_mqtt_state_since_timestamp_seconds": "gauge",
        "edgetwin_mqtt_published": "counter",
        "process_cpu_seconds": "counter",
    }
    for name, kind in expected.items():
        assert name in fams, f"{name} missing; have {sorted(fams)}"
        assert fams[name].type == kind, name
        assert fams[name].documentation, name

    def one(name: str, suffix: str = "", **labels: str) -> float:
        return samples(fams[name], suffix)[tuple(sorted(labels.items()))]

    info = samples(fams["edgetwin_gateway_info"])
    assert info == {(("gateway", "edge-01"), ("session", "0123abcd"), ("version", "9.9.9")): 1.0}

    # Transactions: per bus and outcome; the timeout lands above the 1 s bucket.
    assert one("edgetwin_bus_transaction_seconds", "_count", bus="plant", outcome="ok") == 1
    assert one("edgetwin_bus_transaction_seconds", "_count", bus="plant", outcome="error") == 2
    err_le_1 = one(
        "edgetwin_bus_transaction_seconds", "_bucket", bus="plant", outcome="error", le="1.0"
    )
    assert err_le_1 == 1  # the 0.001 s one only
    errors = samples(fams["edgetwin_device_errors"], "_total")
    assert errors[(("bus", "plant"), ("device", "pump2"), ("kind", "timeout"))] == 1
    assert errors[(("bus", "plant"), ("device", "pump2"), ("kind", "connection"))] == 2
    assert one("edgetwin_twin_tick_seconds", "_count") == 3
    assert one("edgetwin_twin_tick_seconds", "_bucket", le="0.00025") == 1

    # Devices, straight from their health records.
    for dev, bus, h, breaker in [
        ("pump1", "plant", plant.healths["pump1"], 0),
        ("pump2", "plant", plant.healths["pump2"], 1),
        ("pump3", "line2", plant.healths["pump3"], 0),
    ]:
        key = {"bus": bus, "device": dev}
        assert one("edgetwin_device_up", **key) == (1.0 if h.online else 0.0)
        assert one("edgetwin_device_state_since_timestamp_seconds", **key) == pytest.approx(h.since)
        assert one("edgetwin_device_breaker_open", **key) == breaker
        assert one("edgetwin_device_polls", "_total", **key) == h.polls
        assert one("edgetwin_device_failed_polls", "_total", **key) == h.failed_polls
        assert one("edgetwin_device_overruns", "_total", **key) == h.overruns

    # Points: a point never read has no series; counts per device.
    assert one("edgetwin_point_alarm", device="pump1", point="flow") == 2
    assert one("edgetwin_point_alarm", device="pump2", point="speed") == 1
    assert one("edgetwin_point_quality", device="pump1", point="flow") == 8
    assert one("edgetwin_point_quality", device="pump1", point="speed") == 0
    assert one("edgetwin_point_anomaly_score", device="pump1", point="flow") == 4.5
    assert (("device", "pump3"), ("point", "speed")) not in samples(fams["edgetwin_point_alarm"])
    assert one("edgetwin_device_bad_quality_points", device="pump1") == 1
    assert one("edgetwin_device_bad_quality_points", device="pump2") == 1
    assert one("edgetwin_device_bad_quality_points", device="pump3") == 0
    assert one("edgetwin_device_alarm_points", device="pump1", state="alarm") == 1
    assert one("edgetwin_device_alarm_points", device="pump1", state="normal") == 1
    assert one("edgetwin_device_alarm_points", device="pump2", state="warning") == 1

    # Assets: like points, one never updated has no series; a share per point of the asset.
    assert samples(fams["edgetwin_asset_alarm"]) == {
        (("asset", "hydraulics"), ("device", "pump1")): 2,
        (("asset", "drive"), ("device", "pump1")): 0,
    }
    assert one("edgetwin_asset_anomaly_score", device="pump1", asset="hydraulics") == 3.5
    assert one("edgetwin_asset_anomaly_score", device="pump1", asset="drive") == 0.4
    shares = samples(fams["edgetwin_asset_contribution"])
    assert len(shares) == 4
    assert shares[(("asset", "hydraulics"), ("device", "pump1"), ("point", "flow"))] == 0.8
    assert shares[(("asset", "hydraulics"), ("device", "pump1"), ("point", "speed"))] == 0.2

    # Outbox: what was committed, counted here independently of the outbox.
    assert one("edgetwin_outbox_messages") == len(MESSAGES)
    assert one("edgetwin_outbox_bytes") == sum(len(t.encode()) + len(p) for t, p in MESSAGES)
    assert one("edgetwin_outbox_buffered_messages") == 0
    assert 0 <= one("edgetwin_outbox_oldest_age_seconds") < 60
    assert one("edgetwin_outbox_dropped_frames", "_total") == 0
    assert one("edgetwin_outbox_commits", "_total") >= 1

    assert one("edgetwin_mqtt_connected") == 1
    assert one("edgetwin_mqtt_published", "_total") == 17


async def test_scrape_follows_the_live_objects(plant: Plant) -> None:
    plant.healths["pump2"].online = True
    plant.healths["pump2"].polls += 5
    plant.uplink.connected = False
    plant.outbox.put(*MESSAGES[0])
    fams = await scrape(plant.base)
    key = (("bus", "plant"), ("device", "pump2"))
    assert samples(fams["edgetwin_device_up"])[key] == 1
    assert samples(fams["edgetwin_device_polls"], "_total")[key] == 45
    assert samples(fams["edgetwin_mqtt_connected"])[()] == 0
    assert samples(fams["edgetwin_outbox_buffered_messages"])[()] == 1


async def test_status_document_round_trips_over_http(plant: Plant) -> None:
    plant.metrics.observe_transaction("plant", "pump2", 1.0, [DeviceTimeoutError("late")])
    fetched = await asyncio.to_thread(fetch_status, plant.base)
    local = plant.metrics.status()
    assert isinstance(fetched, Status)
    assert fetched.model_dump(exclude={"ts"}) == local.model_dump(exclude={"ts"})
    devices = {d.name: d for d in fetched.devices}
    assert devices["pump2"].online is False
    assert devices["pump2"].reason == plant.healths["pump2"].reason
    assert devices["pump2"].breaker_open
    assert devices["pump2"].errors["timeout"] == 1
    assert devices["pump3"].online is None
    flow = next(p for p in devices["pump1"].points if p.name == "flow")
    assert (flow.value, flow.unit, flow.alarm, flow.quality) == (
        131.0,
        "m3/h",
        "ALARM",
        ("OUT_OF_RANGE",),
    )
    nan_point = devices["pump2"].points[0]
    assert nan_point.value is None
    assert nan_point.quality == ("COMM_FAIL",)
    assert devices["pump3"].points[0].ts is None
    assets = {a.name: a for a in fetched.assets}
    assert list(assets) == ["hydraulics", "drive", "line"]
    assert (assets["hydraulics"].device, assets["hydraulics"].alarm) == ("pump1", "ALARM")
    assert assets["hydraulics"].score == 3.5
    assert assets["hydraulics"].contributions == {"speed": 0.2, "flow": 0.8}
    assert assets["drive"].alarm == "NORMAL"
    assert assets["line"].ts is None
    assert fetched.uplink.connected
    assert fetched.uplink.published == 17
    assert fetched.backlog.depth == plant.outbox.stats().depth


async def test_http_edges_and_garbage_do_not_break_the_server(plant: Plant) -> None:
    code, _, body = await http_get(plant.base + "/")
    assert code == 200
    assert b"/metrics" in body
    code, _, _ = await http_get(plant.base + "/nope")
    assert code == 404
    code, headers, _ = await http_get(plant.base + "/metrics", method="POST")
    assert code == 405
    assert headers["Allow"] == "GET, HEAD"
    code, headers, body = await http_get(plant.base + "/metrics", method="HEAD")
    assert code == 200
    assert body == b""
    assert int(headers["Content-Length"]) > 1000

    host, port = plant.base.removeprefix("http://").split(":")
    for junk in (b"\x00\xff garbage\r\n\r\n", b"GET /metrics\r\n\r\n", b"x" * 20_000, b""):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(junk)
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await writer.wait_closed()
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:80]
    code, _, _ = await http_get(plant.base + "/metrics")
    assert code == 200


async def test_status_is_unavailable_until_bound() -> None:
    metrics = GatewayMetrics("edge-01", "s")
    async with await metrics.start_server("127.0.0.1", 0) as server:
        base = "http://{}:{}".format(*server.address)
        code, _, _ = await http_get(base + "/status.json")
        assert code == 503
        fams = await scrape(base)
        assert "edgetwin_gateway_info" in fams
        assert "edgetwin_device_up" not in fams


async def test_uplink_since_is_when_the_state_was_seen_to_change() -> None:
    now = [1000.0]
    uplink = Uplink(connected=False)
    metrics = GatewayMetrics("g", "s", clock=lambda: now[0])
    metrics.bind(devices=list, points=list, outbox=no_outbox, uplink=uplink.view)
    now[0] = 1005.0
    assert metrics.status().uplink.since == 1000.0  # down since start
    uplink.connected = True
    metrics.sample()
    now[0] = 1100.0
    status = metrics.status()
    assert status.uplink.connected
    assert status.uplink.since == 1005.0
    uplink.connected = False
    assert metrics.status().uplink.since == 1100.0


async def test_uplink_since_is_the_views_own_when_it_has_one() -> None:
    now = [1000.0]
    view = UplinkView(connected=True, published=0, broker="b:1883", since=990.0)
    metrics = GatewayMetrics("g", "s", clock=lambda: now[0])
    metrics.bind(devices=list, points=list, outbox=no_outbox, uplink=lambda: view)
    now[0] = 1005.0
    metrics.sample()
    assert metrics.status().uplink.since == 990.0  # not when a sample first saw it
    fams = {f.name: f for f in metrics.registry.collect()}
    assert samples(fams["edgetwin_mqtt_state_since_timestamp_seconds"])[()] == 990.0


async def test_serve_gives_up_quietly_when_the_port_is_taken(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        metrics = GatewayMetrics("g", "s")
        with caplog.at_level(logging.ERROR, logger="edgetwin.runtime.metrics"):
            await asyncio.wait_for(metrics.serve("127.0.0.1", port), 10)
    assert f"cannot listen on 127.0.0.1:{port}" in caplog.text


async def test_cancelling_serve_closes_every_connection() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    metrics = GatewayMetrics("g", "s")
    task = asyncio.create_task(metrics.serve("127.0.0.1", port), name="metrics")
    async with asyncio.timeout(10):
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.02)
    writer.write(b"GET /metr")  # a client that never finishes its request
    await writer.drain()
    await asyncio.sleep(0.05)
    task.cancel()
    # Well inside the server's 5 s request timeout: the stalled client is cut off, not awaited.
    done, _ = await asyncio.wait({task}, timeout=3)
    assert task in done
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the server hung up
    writer.close()
    await writer.wait_closed()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


@given(st.binary(max_size=300))
def test_parse_request_never_raises(head: bytes) -> None:
    parsed = parse_request(head)
    if parsed is not None:
        method, _path, headers = parsed
        assert method.isalpha()
        assert all(k == k.lower() for k in headers)


@given(
    st.sampled_from(["GET", "HEAD", "POST"]),
    st.from_regex(r"/[a-z._]{0,20}", fullmatch=True),
    st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z-]{0,15}", fullmatch=True),
        st.from_regex(r"[ -~]{0,30}", fullmatch=True).map(str.strip),
        max_size=5,
    ),
)
def test_parse_request_reads_well_formed_heads(
    method: str, path: str, headers: dict[str, str]
) -> None:
    head = f"{method} {path}?q=1 HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    parsed = parse_request(head.encode("latin-1"))
    assert parsed is not None
    assert parsed[:2] == (method, path)
    assert parsed[2] == {k.lower(): v for k, v in headers.items()}
