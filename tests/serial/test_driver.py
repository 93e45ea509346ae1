"""The serial driver against the simulated sensors over real pseudo-terminals.

The stub owns the pty master; the driver opens the slave path with pyserial-asyncio-fast,
exactly as it opens /dev/ttyUSB0. Expected values come from the stub's log of what it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgetwin.config.serial import SerialBusConfig, SerialDeviceConfig
from edgetwin.core.types import Quality
from edgetwin.drivers.base import PollResult
from edgetwin.drivers.serial_sensor import SerialSensor
from edgetwin.errors import ConnectionLostError, DeviceTimeoutError, ProtocolError
from edgetwin.protocols.serial.nmea import nmea_sentence
from firmware_stubs.serial import SerialStub
from firmware_stubs.serial.pty import Pty
from firmware_stubs.serial.sensors import FLOW_LAYOUT

PROTOCOLS: dict[str, dict[str, Any]] = {
    "line": {"kind": "line", "keys": ["T", "H", "P"], "terminator": "\r\n"},
    "nmea": {"kind": "nmea"},
    "binary": {
        "kind": "binary",
        "start": "AA55",
        "header_size": 2,
        "length": {"offset": 3, "size": 1},
        "fields": [["flow", "f"], ["total", "I"], ["temp", "h"], ["status", "B"]],
        "crc": {"kind": "crc16_modbus"},
    },
}
# (point name, field, scale, offset)
POINTS: dict[str, list[tuple[str, str, float, float]]] = {
    "line": [("t", "T", 1.0, 0.0), ("h", "H", 1.0, 0.0), ("p", "P", 100.0, 0.0)],
    "nmea": [
        ("lat", "GGA.latitude", 1.0, 0.0),
        ("alt", "GGA.altitude", 1.0, 0.0),
        ("knots", "RMC.speed_knots", 1.0, 0.0),
        ("kmh", "VTG.speed_kmh", 1.0, 0.0),
        ("wind", "MWV.wind_speed_ms", 1.0, 0.0),
        ("air", "XDR.AirTemp", 1.0, 273.15),
    ],
    "binary": [
        ("flow", "flow", 1.0, 0.0),
        ("volume", "total", 0.001, 0.0),
        ("temp", "temp", 0.01, 0.0),
        ("status", "status", 1.0, 0.0),
    ],
}
POLL = {"line": {"poll": "?\r\n"}, "nmea": {"poll": "Q\r\n"}, "binary": {"poll_hex": "01 03"}}
POLL_BYTES = {"line": b"?\r\n", "nmea": b"Q\r\n", "binary": b"\x01\x03"}
GOOD = int(Quality.GOOD)


def device(protocol: str, *, polled: bool, **extra: Any) -> SerialDeviceConfig:
    points = [{"name": n, "field": f, "scale": s, "offset": o} for n, f, s, o in POINTS[protocol]]
    data = {
        "name": f"{protocol}-sensor",
        "bus": "ser",
        "driver": "serial",
        "protocol": PROTOCOLS[protocol],
        "points": points,
        "probe_max": 0.3,
        **(POLL[protocol] if polled else {}),
        **extra,
    }
    return SerialDeviceConfig.model_validate(data)


def bus(port: str | Path, timeout: float = 1.0) -> SerialBusConfig:
    return SerialBusConfig(kind="serial", name="ser", port=str(port), timeout=timeout)


def expected(cfg: SerialDeviceConfig, values: dict[str, float]) -> np.ndarray:
    """What each point should read for a frame carrying ``values`` (NaN: not in it)."""
    return np.array(
        [
            values[p.field] * p.scale + p.offset if p.field in values else math.nan
            for p in cfg.points
        ]
    )


@contextlib.asynccontextmanager
async def rig(
    protocol: str,
    *,
    polled: bool,
    bus_timeout: float = 1.0,
    link: Path | None = None,
    period: float = 0.05,
    **extra: Any,
) -> AsyncIterator[tuple[SerialStub, SerialSensor]]:
    stub = SerialStub(
        protocol,  # type: ignore[arg-type]
        period=period,
        poll=POLL_BYTES[protocol] if polled else None,
        link=link,
        seed=7,
    )
    async with stub:
        cfg = device(protocol, polled=polled, **extra)
        async with SerialSensor(cfg, bus(link or stub.path, bus_timeout)) as sensor:
            yield stub, sensor


def assert_frame(result: PollResult, cfg: SerialDeviceConfig, values: dict[str, float]) -> None:
    assert result.quality.tolist() == [GOOD] * len(cfg.points), result.errors
    np.testing.assert_allclose(result.values, expected(cfg, values), rtol=1e-12)


# -- request/response --------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["line", "nmea", "binary"])
async def test_polled_values_are_the_frame_the_stub_sent(protocol: str) -> None:
    async with rig(protocol, polled=True) as (stub, sensor):
        for n in range(1, 4):
            result = await sensor.poll()
            assert result.answered
            assert result.ok == 1
            assert not result.errors
            assert stub.requests == n
            assert_frame(result, sensor.cfg, stub.frames()[-1].values)
        assert sensor.stats()["bytes_out"] == 3 * len(POLL_BYTES[protocol])
        assert sensor.stats()["frames"] >= 3


async def test_a_regex_reads_the_weather_station_as_the_docs_say() -> None:
    regex = r"T=(?P<t>-?\d+\.\d);H=(?P<h>\d+\.\d);P=(?P<p>\d+\.\d)"
    async with SerialStub("line", poll=b"?\r\n") as stub:
        cfg = SerialDeviceConfig.model_validate(
            {
                "name": "ws",
                "bus": "ser",
                "driver": "serial",
                "poll": "?\r\n",
                "protocol": {"kind": "line", "regex": regex},
                "points": [{"name": "p", "field": "p"}, {"name": "t", "field": "t"}],
            }
        )
        async with SerialSensor(cfg, bus(stub.path)) as sensor:
            result = await sensor.poll()
        sent = stub.frames()[-1].values
    assert result.values.tolist() == [sent["P"], sent["T"]]


async def test_polling_a_subset_leaves_the_other_points_stale() -> None:
    async with rig("binary", polled=True) as (stub, sensor):
        result = await sensor.poll([1, 3])
        sent = stub.frames()[-1].values
    assert result.quality.tolist() == [Quality.STALE, GOOD, Quality.STALE, GOOD]
    assert math.isnan(result.values[0])
    assert result.values[1] == sent["total"] * 0.001
    assert result.values[3] == sent["status"]


# (protocol, fault, counter it must raise, other counters it may also raise, outcome)
# outcome: "frame" = the intact frame after the fault is the answer; "bad_value" = the frame
# with the bad field is; "lost" = a line protocol has no start marker, so a cut line glues
# onto the answer and both are dropped (the next line is read again).
FAULTS = [
    ("line", "garbage", "garbage_bytes", (), "frame"),
    ("line", "partial", "partial", (), "lost"),
    ("line", "bad_value", "bad_field", (), "bad_value"),
    ("line", "overlong", "overlong", (), "frame"),
    ("nmea", "garbage", "garbage_bytes", (), "frame"),
    ("nmea", "partial", "partial", (), "frame"),
    ("nmea", "bad_checksum", "bad_checksum", (), "frame"),
    ("nmea", "bad_value", "bad_field", (), "bad_value"),
    ("nmea", "overlong", "overlong", (), "frame"),
    ("binary", "garbage", "garbage_bytes", (), "frame"),
    ("binary", "partial", "partial", (), "frame"),
    ("binary", "bad_checksum", "bad_checksum", (), "frame"),
    ("binary", "bad_value", "bad_field", (), "bad_value"),
    # the overlong header's first byte is dropped, the rest read as noise
    ("binary", "overlong", "overlong", ("garbage_bytes",), "frame"),
]
ERRORS = ("garbage_bytes", "partial", "overlong", "bad_checksum", "bad_field")


@pytest.mark.parametrize(("protocol", "fault", "counter", "also", "outcome"), FAULTS)
async def test_each_fault_is_survived_and_counted_by_its_kind(
    protocol: str, fault: str, counter: str, also: tuple[str, ...], outcome: str
) -> None:
    async with rig(protocol, polled=True, bus_timeout=0.5) as (stub, sensor):
        assert (await sensor.poll()).answered
        before = sensor.stats()
        stub.inject(fault)
        result = await sensor.poll()
        after = sensor.stats()
        assert after[counter] > before[counter]
        changed = {k for k in ERRORS if after[k] != before[k]}
        assert changed <= {counter, *also}
        if outcome == "lost":
            assert not result.answered
            assert (result.quality == Quality.DECODE_ERROR).all()
            assert isinstance(result.errors[0], ProtocolError)
        elif outcome == "bad_value":
            # The device's answer is the frame with the bad field: its point says so.
            assert result.answered
            (bad,) = [r for r in stub.sent if r.kind == "bad_value"]
            want = expected(sensor.cfg, bad.values)
            decode_error = np.isnan(want)
            assert decode_error.any()
            assert (result.quality[decode_error] == Quality.DECODE_ERROR).all()
            assert (result.quality[~decode_error] == GOOD).all()
            np.testing.assert_allclose(result.values[~decode_error], want[~decode_error])
        else:
            assert result.answered
            assert_frame(result, sensor.cfg, stub.frames()[-1].values)
        stub.clear()
        result = await sensor.poll()
        assert_frame(result, sensor.cfg, stub.frames()[-1].values)


async def test_silence_is_comm_fail_with_a_timeout() -> None:
    async with rig("nmea", polled=True, bus_timeout=0.3) as (stub, sensor):
        stub.inject("silence")
        result = await sensor.poll()
    assert not result.answered
    assert (result.quality == Quality.COMM_FAIL).all()
    assert np.isnan(result.values).all()
    assert isinstance(result.errors[0], DeviceTimeoutError)


async def test_a_vanished_port_fails_the_poll_and_the_next_poll_reopens_it(
    tmp_path: Path,
) -> None:
    link = tmp_path / "ttyFLOW"
    async with rig("binary", polled=True, link=link) as (stub, sensor):
        assert (await sensor.poll()).answered
        stub.inject("unplug")
        for _ in range(2):  # lost, then cannot be opened
            result = await sensor.poll()
            assert not result.answered
            assert (result.quality == Quality.COMM_FAIL).all()
            assert isinstance(result.errors[0], ConnectionLostError)
        stub.clear("unplug")
        result = await sensor.poll()
        assert_frame(result, sensor.cfg, stub.frames()[-1].values)
        assert sensor.stats()["opens"] == 2
        assert sensor.stats()["losses"] >= 1


async def test_a_missing_port_is_connection_lost() -> None:
    cfg = device("line", polled=True)
    async with SerialSensor(cfg, bus("/dev/edgetwin-no-such-tty")) as sensor:
        result = await sensor.poll()
    assert isinstance(result.errors[0], ConnectionLostError)
    assert (result.quality == Quality.COMM_FAIL).all()


# -- free-running ------------------------------------------------------------------------


def sent_vectors(stub: SerialStub, cfg: SerialDeviceConfig) -> list[np.ndarray]:
    return [expected(cfg, r.values) for r in stub.sent if r.values]


@pytest.mark.parametrize("protocol", ["line", "nmea", "binary"])
async def test_free_running_values_come_from_frames_the_stub_sent(protocol: str) -> None:
    async with rig(protocol, polled=False) as (stub, sensor):
        all_good = 0
        for _ in range(5):
            result = await sensor.poll()
            assert result.answered
            good = result.quality == GOOD
            assert ((result.quality == GOOD) | (result.quality == Quality.STALE)).all()
            all_good += bool(good.all())
            vectors = sent_vectors(stub, sensor.cfg)
            if protocol == "nmea":  # sentences of a burst may straddle a poll: per point
                for i in np.flatnonzero(good):
                    assert any(v[i] == pytest.approx(result.values[i], rel=1e-12) for v in vectors)
            else:
                assert any(np.allclose(v, result.values, rtol=1e-12) for v in vectors)
            await asyncio.sleep(0.07)
        assert all_good >= 3
        assert stub.requests == 0
        assert sensor.stats()["bytes_out"] == 0


async def test_free_running_survives_every_fault_at_once_and_counts_each_kind() -> None:
    async with rig("binary", polled=False) as (stub, sensor):
        for fault in ("garbage", "partial", "bad_checksum", "bad_value", "overlong"):
            stub.inject(fault)
        for _ in range(4):
            result = await sensor.poll()
            assert result.answered
            good = result.quality == GOOD
            for i in np.flatnonzero(good):
                vectors = sent_vectors(stub, sensor.cfg)
                assert any(v[i] == pytest.approx(result.values[i], rel=1e-12) for v in vectors)
            await asyncio.sleep(0.07)
        stats = sensor.stats()
    for counter in ERRORS:
        assert stats[counter] > 0, counter


async def test_free_running_silence_is_comm_fail() -> None:
    async with rig("line", polled=False, bus_timeout=0.3) as (stub, sensor):
        assert (await sensor.poll()).answered
        stub.inject("silence")
        results = [await sensor.poll() for _ in range(3)]
    last = results[-1]
    assert not last.answered
    assert (last.quality == Quality.COMM_FAIL).all()
    assert isinstance(last.errors[0], DeviceTimeoutError)


async def test_free_running_port_loss_is_reported_and_the_reader_reopens(tmp_path: Path) -> None:
    link = tmp_path / "ttyWX"
    async with rig("line", polled=False, link=link, bus_timeout=0.5) as (stub, sensor):
        assert (await sensor.poll()).answered
        stub.inject("unplug")
        for _ in range(10):
            result = await sensor.poll()
            if not result.answered:
                break
        assert isinstance(result.errors[0], ConnectionLostError)
        assert (result.quality == Quality.COMM_FAIL).all()
        stub.clear("unplug")
        deadline = asyncio.get_running_loop().time() + 5.0
        while not result.answered:  # the reader retries after a backoff of at most probe_max
            assert asyncio.get_running_loop().time() < deadline, "did not recover"
            await asyncio.sleep(0.05)
            result = await sensor.poll()
        assert (result.quality == GOOD).all()
        assert sensor.stats()["losses"] >= 1


async def test_poll_before_start_of_a_free_running_device_is_a_programming_error() -> None:
    sensor = SerialSensor(device("line", polled=False), bus("/dev/null"))
    with pytest.raises(RuntimeError, match="call start"):
        await sensor.poll()
    await sensor.close()


# -- hand-written streams on a raw pty ---------------------------------------------------


@contextlib.asynccontextmanager
async def raw_pty() -> AsyncIterator[Pty]:
    pty = Pty()
    pty.open()
    try:
        yield pty
    finally:
        pty.close()


async def wait_for(predicate: Any, within: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_free_running_points_not_refreshed_are_stale() -> None:
    cfg = device("nmea", polled=False)
    async with raw_pty() as pty, SerialSensor(cfg, bus(pty.path)) as sensor:
        await wait_for(lambda: sensor.port.is_open)
        pty.write(nmea_sentence("GPGGA,120000,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"))
        result = await sensor.poll()
        assert result.answered
        fields = [p.field for p in cfg.points]
        refreshed = {"GGA.latitude", "GGA.altitude"}
        want = [GOOD if f in refreshed else Quality.STALE for f in fields]
        assert result.quality.tolist() == want
        assert result.values[fields.index("GGA.altitude")] == 545.4
        pty.write(nmea_sentence("WIMWV,10.0,R,36.0,K,A"))
        result = await sensor.poll()
        want = [GOOD if f == "MWV.wind_speed_ms" else Quality.STALE for f in fields]
        assert result.quality.tolist() == want
        assert result.values[fields.index("MWV.wind_speed_ms")] == pytest.approx(10.0)


async def test_range_and_non_finite_values_are_flagged() -> None:
    cfg = SerialDeviceConfig.model_validate(
        {
            "name": "fm",
            "bus": "ser",
            "driver": "serial",
            "protocol": PROTOCOLS["binary"],
            "points": [
                {"name": "flow", "field": "flow"},
                {"name": "temp", "field": "temp", "scale": 0.01, "range": [-20.0, 60.0]},
            ],
        }
    )
    async with raw_pty() as pty, SerialSensor(cfg, bus(pty.path)) as sensor:
        await wait_for(lambda: sensor.port.is_open)
        values = {"flow": math.nan, "total": 1, "temp": 9000, "status": 1}
        pty.write(FLOW_LAYOUT.encode(values, b"\x01\x00"))
        result = await sensor.poll()
    assert result.quality.tolist() == [Quality.NOT_FINITE, Quality.OUT_OF_RANGE]
    assert math.isnan(result.values[0])
    assert result.values[1] == 90.0  # out of range keeps its value


@pytest.mark.parametrize("protocol", ["line", "nmea", "binary"])
async def test_a_device_that_sends_only_noise_never_breaks_anything(protocol: str) -> None:
    rng = random.Random(protocol)
    cfg = device(protocol, polled=False, timeout=0.3)
    async with raw_pty() as pty, SerialSensor(cfg, bus(pty.path)) as sensor:
        await wait_for(lambda: sensor.port.is_open)

        async def babble() -> None:
            while True:
                pty.write(rng.randbytes(64) + b"\r\n$\xaa\x55\x01\x09")
                await asyncio.sleep(0.01)

        task = asyncio.create_task(babble())
        try:
            results = [await sensor.poll() for _ in range(3)]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        stats = sensor.stats()
    for result in results:
        assert not result.answered
        assert (result.quality == Quality.DECODE_ERROR).all()
        assert isinstance(result.errors[0], ProtocolError)
    assert stats["frames"] == 0
    assert sum(stats[k] for k in ERRORS) > 0


async def test_closing_while_a_poll_waits_fails_that_poll_cleanly() -> None:
    cfg = device("line", polled=False, timeout=5.0)
    async with raw_pty() as pty:
        sensor = SerialSensor(cfg, bus(pty.path))
        await sensor.start()
        await wait_for(lambda: sensor.port.is_open)
        waiting = asyncio.create_task(sensor.poll())
        await asyncio.sleep(0.05)
        await sensor.close()
        result = await asyncio.wait_for(waiting, 2.0)
    assert not result.answered
    assert isinstance(result.errors[0], ConnectionLostError)
    assert (result.quality == Quality.COMM_FAIL).all()
