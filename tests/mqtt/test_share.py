"""Shared subscriptions: consumers split the frames, every one of them gets the births."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import pytest

from edgetwin import cli
from edgetwin.cloud.mirror import Mirror, PointUpdate
from edgetwin.cloud.subscriber import follow
from edgetwin.uplink.session import Connector
from tests.mqtt.conftest import Pki
from tests.mqtt.helpers import (
    birth_payload,
    collecting,
    config,
    frame_payload,
    running_uplink,
    wait_until,
)
from tests.support.mosquitto import Mosquitto

GW = "gw-7"
BIRTH = f"edgetwin/v1/{GW}/birth"
FRAMES = f"edgetwin/v1/{GW}/frames"


async def test_two_members_split_the_frames_and_both_get_the_birth(
    tmp_path: Path, mtls_broker: Mosquitto, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    tls = {"tls_ca": pki.ca, "tls_cert": pki.client_cert, "tls_key": pki.client_key}
    stop = asyncio.Event()
    members: list[tuple[Mirror, list[PointUpdate], asyncio.Event]] = []
    tasks = []
    for _ in range(2):
        mirror, updates, ready = Mirror(), [], asyncio.Event()
        members.append((mirror, updates, ready))
        tasks.append(
            asyncio.create_task(
                follow(
                    mtls_broker.tls_url,
                    updates.append,
                    stop,
                    mirror=mirror,
                    on_ready=ready.set,
                    share="g",
                    **tls,
                )
            )
        )
    try:
        for _, _, ready in members:
            await asyncio.wait_for(ready.wait(), 10)
        async with running_uplink(config(mtls_broker.url), tmp_path / "outbox.db") as h:
            h.outbox.put(BIRTH, birth_payload(GW, "s1", ["p", "q"]), retain=True, kind="birth")
            await h.put(FRAMES, [frame_payload(GW, "s1", seq, 2) for seq in range(40)])
            await wait_until(lambda: sum(len(u) for _, u, _ in members) == 80)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    seqs = [{u.seq for u in updates} for _, updates, _ in members]
    assert all(seqs), "each member got some frames"
    assert not seqs[0] & seqs[1], "no frame went to both"
    assert seqs[0] | seqs[1] == set(range(40))
    for mirror, updates, _ in members:
        assert mirror.birth(GW) is not None, "every member got the birth"
        assert len(updates) == 2 * len({u.seq for u in updates})  # both points of each frame
        assert mirror.stats().duplicates == 0
    assert sum(m.stats().gaps for m, _, _ in members) > 0  # gaps are normal in a group...
    assert not [r for r in caplog.records if "rebirth" in r.getMessage()]  # ...and not a reason


async def test_share_needs_mqtt_5_and_a_plain_group_name(mosquitto: Mosquitto) -> None:
    stop = asyncio.Event()
    stop.set()
    with pytest.raises(ValueError, match="MQTT 5"):
        await follow(mosquitto.url, print, stop, share="g", protocol="3.1.1")
    with pytest.raises(ValueError, match="share group"):
        await follow(mosquitto.url, print, stop, share="a/b")


async def run_cli(*args: str, limit: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgetwin",
        "tail",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_tail_cli_follows_a_share_group_over_mutual_tls(
    mtls_broker: Mosquitto, pki: Pki
) -> None:
    cfg = config(mtls_broker.url)
    async with Connector(cfg).client("publisher") as pub:
        await pub.publish(BIRTH, birth_payload(GW, "s1", ["p"]), qos=1, retain=True)
        cli = asyncio.create_task(
            run_cli(
                *("--broker", mtls_broker.tls_url, "--share", "g", "--json", "--count", "3"),
                *("--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert)),
                *("--tls-key", str(pki.client_key), "--timeout", "30"),
            )
        )
        seq = 0
        while not cli.done():  # the tail may start late: keep the frames coming
            await pub.publish(FRAMES, frame_payload(GW, "s1", seq, 1), qos=1)
            seq += 1
            await asyncio.sleep(0.05)
        rc, out, err = await cli
    assert rc == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3
    assert {(rec["gateway"], rec["point"]) for rec in lines} == {(GW, "p")}


def test_tail_cli_rejects_bad_options_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def tail(*args: str) -> int:
        return cli._cmd_tail(cli.build_parser().parse_args(["tail", *args]))

    assert tail("--share", "g", "--mqtt-protocol", "3.1.1") == 2
    assert "--share needs" in capsys.readouterr().err
    missing = tmp_path / "nope.pem"
    assert tail("--broker", "mqtts://127.0.0.1:1", "--tls-ca", str(missing)) == 2
    err = capsys.readouterr().err
    assert "tls_ca" in err
    assert "does not exist" in err


async def test_a_member_asks_for_a_rebirth_for_an_unknown_session_not_for_gaps(
    mosquitto: Mosquitto,
) -> None:
    cfg = config(mosquitto.url)
    rebirth = f"edgetwin/v1/{GW}/cmd/rebirth"
    stop, ready = asyncio.Event(), asyncio.Event()
    updates: list[PointUpdate] = []
    async with collecting(cfg, rebirth) as asked, Connector(cfg).client("gw") as gw:
        tail = asyncio.create_task(
            follow(mosquitto.url, updates.append, stop, on_ready=ready.set, share="g")
        )
        try:
            await asyncio.wait_for(ready.wait(), 10)
            await gw.publish(FRAMES, frame_payload(GW, "s2", 0, 1), qos=1)  # no birth yet
            await wait_until(lambda: len(asked) == 1)
            await gw.publish(BIRTH, birth_payload(GW, "s2", ["p"]), qos=1, retain=True)
            for seq in (1, 5, 9):  # gaps, as a member of a group sees them
                await gw.publish(FRAMES, frame_payload(GW, "s2", seq, 1), qos=1)
            await wait_until(lambda: len(updates) == 3)
            await gw.publish(rebirth, b"sentinel", qos=1)  # whatever was asked arrives first
            await wait_until(lambda: len(asked) == 2)
        finally:
            stop.set()
            await tail
    assert [p for _, p in asked] == [b"", b"sentinel"]
    assert [u.seq for u in updates] == [1, 5, 9]
