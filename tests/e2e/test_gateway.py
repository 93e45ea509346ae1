"""End to end: simulated pump (Modbus TCP) → `edgetwin run` → Mosquitto → the `tail` decoder."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sqlite3
import struct
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from edgetwin.cloud.mirror import PointUpdate
from edgetwin.cloud.subscriber import follow
from edgetwin.config import load_config
from edgetwin.core.types import Quality
from tests.support.mosquitto import Mosquitto
from tests.support.procs import gateway_config, start_gateway, start_pump


def served_values(log: Path, cfg_path: Path) -> dict[str, set[float]]:
    """Every value the pump served, decoded here with struct (not with edgetwin's codec)."""
    cfg = load_config(cfg_path)
    points = cfg.devices[0].points
    out: dict[str, set[float]] = defaultdict(set)
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        if rec["table"] != "input":
            continue
        words = rec["registers"]
        for p in points:
            off = p.address - rec["address"]
            width = {"float32": 2, "uint32": 2, "int16": 1, "uint16": 1}[p.type]
            if off < 0 or off + width > rec["count"]:
                continue
            w = words[off : off + width]
            if p.type == "float32":
                assert p.order == "ABCD"
                raw = struct.unpack(">f", struct.pack(">HH", *w))[0]
            elif p.type == "uint32":
                assert p.order == "CDAB"
                raw = struct.unpack(">I", struct.pack(">HH", w[1], w[0]))[0]
            elif p.type == "int16":
                raw = struct.unpack(">h", struct.pack(">H", w[0]))[0]
            else:
                raw = w[0]
            out[p.name].add(raw * p.scale + p.offset)
    return out


async def collect(url: str, stop: asyncio.Event, sink: list[PointUpdate]) -> None:
    await follow(url, sink.append, stop)


async def wait_until(predicate: Callable[[], bool], limit: float) -> None:
    async with asyncio.timeout(limit):
        while not predicate():
            await asyncio.sleep(0.1)


async def test_values_flow_from_device_to_cloud(tmp_path: Path, mosquitto: Mosquitto) -> None:
    served_log = tmp_path / "served.jsonl"
    pump, port = start_pump(tmp_path, served_log=served_log)
    cfg_path = gateway_config(tmp_path, pump_port=port, broker_url=mosquitto.url)
    cfg = load_config(cfg_path)
    names = [p.name for p in cfg.devices[0].points]
    updates: list[PointUpdate] = []
    stop = asyncio.Event()
    tail = asyncio.create_task(collect(mosquitto.url, stop, updates))
    cli_tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgetwin",
            "tail",
            "--broker",
            mosquitto.url,
            "--json",
            "--count",
            "25",
            "--timeout",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    await asyncio.sleep(1.0)  # both subscribers are in place before the gateway starts
    gw = start_gateway(cfg_path, tmp_path)
    try:

        def enough() -> bool:
            good = defaultdict(int)
            for u in updates:
                if u.quality == Quality.GOOD:
                    good[u.point] += 1
            return all(good[n] >= 3 for n in names)

        await wait_until(enough, 60)
        tail_out, tail_err = await asyncio.to_thread(cli_tail.communicate, timeout=60)
        gw.signal(signal.SIGTERM)
        assert await asyncio.to_thread(gw.wait, 30) == 0, gw.output()
    finally:
        stop.set()
        await tail
        if cli_tail.poll() is None:
            cli_tail.kill()
            cli_tail.communicate()
        gw.stop()
        pump.stop()

    served = served_values(served_log, cfg_path)
    # `edgetwin tail --json` printed exactly --count lines of the same stream.
    assert cli_tail.returncode == 0, tail_err
    lines = [json.loads(line) for line in tail_out.splitlines()]
    assert len(lines) == 25
    required = {"gateway", "device", "point", "ts", "value", "estimate", "score", "alarm", "seq"}
    for rec in lines:
        assert required <= rec.keys()
        if rec["quality"] == 0:
            assert rec["value"] in served[rec["point"]]
    checked = 0
    for u in updates:
        assert u.gateway == cfg.gateway.id
        assert u.device == "pump1"
        if u.quality != Quality.GOOD:
            continue
        assert u.value in served[u.point], f"{u.point}={u.value!r} was never served"
        assert math.isfinite(u.estimate)
        checked += 1
    assert checked >= 3 * len(names)
    # One session, contiguous sequence numbers, no duplicates.
    seqs = sorted({u.seq for u in updates})
    assert len({u.session for u in updates}) == 1
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    log = gw.output()
    assert "device pump1: online" in log
    assert "stopped; outbox empty" in log


def outbox_rows(state_dir: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(state_dir / "outbox.db") as db:
        return db.execute("SELECT id, topic, kind FROM outbox ORDER BY id").fetchall()


async def test_sigterm_keeps_the_outbox_and_delivers_it_after_restart(tmp_path: Path) -> None:
    pump, port = start_pump(tmp_path)
    broker = Mosquitto(tmp_path / "broker")  # not started yet: the gateway runs offline first
    asset = '[[assets]]\nname = "hydraulics"\ndevice = "pump1"\npoints = ["flow", "speed"]\n'
    cfg_path = gateway_config(
        tmp_path, pump_port=port, broker_url=broker.url, grace=0.5, extra=asset
    )
    cfg = load_config(cfg_path)
    try:
        gw = start_gateway(cfg_path, tmp_path, "gateway-1")
        await asyncio.to_thread(gw.wait_for_output, "device pump1: online")
        await asyncio.sleep(4)  # several frames into the outbox, broker down
        gw.signal(signal.SIGTERM)
        assert await asyncio.to_thread(gw.wait, 30) == 0, gw.output()
        assert "kept in the outbox" in gw.output()
        rows = outbox_rows(cfg.gateway.state_dir)
        frames_kept = sum(1 for _, _, kind in rows if kind in {"frame", "snapshot"})
        assert rows[0][2] == "birth"
        assert frames_kept >= 4
        # The twin's learned state was saved at the stop, the asset's too.
        with sqlite3.connect(cfg.gateway.state_dir / "twin.sqlite") as con:
            keys = {k for (k,) in con.execute("SELECT key FROM twin_state")}
        assert {"pump1:level:0.25", "asset:hydraulics"} <= keys

        broker.start()
        updates: list[PointUpdate] = []
        stop = asyncio.Event()
        tail = asyncio.create_task(collect(broker.url, stop, updates))
        await asyncio.sleep(0.5)  # subscribed before the gateway comes back
        gw2 = start_gateway(cfg_path, tmp_path, "gateway-2")
        try:
            sessions: list[str] = []

            def both_sessions_seen() -> bool:
                order = list(dict.fromkeys(u.session for u in updates))
                sessions[:] = order
                if len(order) < 2:
                    return False
                return len({u.seq for u in updates if u.session == order[0]}) >= frames_kept

            await wait_until(both_sessions_seen, 30)
            # The second run resumed the twin instead of commissioning it again.
            assert "twin state resumed" in gw2.output()
            assert "asset:hydraulics (2 points)" in gw2.output()
            gw2.signal(signal.SIGTERM)
            assert await asyncio.to_thread(gw2.wait, 30) == 0, gw2.output()
        finally:
            stop.set()
            await tail
            gw2.stop()
        first = sorted({u.seq for u in updates if u.session == sessions[0]})
        # Every frame the first run kept arrives: contiguous from 0, none missing.
        assert first == list(range(frames_kept))
        assert len(sessions) == 2  # the second run's own frames follow the backlog
        # The backlog went out marked as replay; the live session's frames did not.
        assert all(u.replay for u in updates if u.session == sessions[0])
        assert any(not u.replay for u in updates if u.session == sessions[1])
    finally:
        broker.stop()
        pump.stop()


async def test_sighup_reloads_a_valid_config_and_refuses_a_broken_one(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    pump, port = start_pump(tmp_path)
    cfg_path = gateway_config(tmp_path, pump_port=port, broker_url=mosquitto.url)
    good = cfg_path.read_text()
    updates: list[PointUpdate] = []
    stop = asyncio.Event()
    tail = asyncio.create_task(collect(mosquitto.url, stop, updates))
    await asyncio.sleep(0.5)
    gw = start_gateway(cfg_path, tmp_path)
    try:
        await asyncio.to_thread(gw.wait_for_output, "device pump1: online")
        await wait_until(lambda: bool(updates), 30)
        cfg_path.write_text(good.replace("interval = 0.25", "intervall = 0.25"))
        gw.signal(signal.SIGHUP)
        await asyncio.to_thread(gw.wait_for_output, "keeping the running configuration")
        assert "unknown key 'intervall'" in gw.output()
        sessions_before = {u.session for u in updates}
        assert len(sessions_before) == 1
        assert gw.proc.poll() is None

        cfg_path.write_text(good.replace('id = "edge-01"', 'id = "edge-02"'))
        gw.signal(signal.SIGHUP)
        await asyncio.to_thread(gw.wait_for_output, "reloading")
        await wait_until(lambda: any(u.gateway == "edge-02" for u in updates), 30)
        gw.signal(signal.SIGTERM)
        assert await asyncio.to_thread(gw.wait, 30) == 0, gw.output()
    finally:
        stop.set()
        await tail
        gw.stop()
        pump.stop()
    new = {u.session for u in updates if u.gateway == "edge-02"}
    assert len(new) == 1
    assert not new & sessions_before
