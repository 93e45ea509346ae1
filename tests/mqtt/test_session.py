"""Protocol versions, status and will, persistent sessions, and the in-flight window."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgetwin.uplink.session import Connector
from tests.mqtt.helpers import (
    COMMAND,
    STATUS,
    collecting,
    config,
    first_seen,
    numbered,
    running_uplink,
    wait_until,
)
from tests.support.mosquitto import Mosquitto


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_delivers_in_order_and_says_online_then_offline(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str
) -> None:
    cfg = config(mosquitto.url, protocol=protocol)
    async with (
        collecting(cfg, "data/#") as got,
        collecting(cfg, STATUS) as status,
        running_uplink(cfg, tmp_path / "outbox.db", window=7) as h,
    ):
        await h.put("data/x", numbered(0, 100))
        await wait_until(lambda: len(first_seen([p for t, p in got])) == 100)
        assert [p for _, p in status] == [b"online"]
        await h.stop()
        await wait_until(lambda: len(status) == 2)
    assert first_seen([p for _, p in got]) == list(range(100))
    assert [p for _, p in status] == [b"online", b"offline"]
    assert h.outbox.stats().depth == 0
    assert h.uplink.published == 100
    # Retained: a late subscriber learns the last state.
    async with collecting(cfg, STATUS) as late:
        await wait_until(lambda: len(late) == 1)
    assert late == [(STATUS, b"offline")]


async def test_rows_committed_one_by_one_each_go_out(tmp_path: Path, mosquitto: Mosquitto) -> None:
    # Short batches: after each the uplink waits for newer rows instead of asking again.
    cfg = config(mosquitto.url)
    async with (
        collecting(cfg, "data/#") as got,
        running_uplink(cfg, tmp_path / "outbox.db", window=7) as h,
    ):
        started = h.uplink.connected_since
        await wait_until(lambda: h.uplink.connected)
        assert h.uplink.connected_since > started  # when it went up, not when it was made
        for i in range(5):
            await h.put("data/x", numbered(i, 1))
            await wait_until(lambda i=i: len(first_seen([p for _, p in got])) == i + 1)
        await wait_until(lambda: h.outbox.stats().depth == 0)
    assert first_seen([p for _, p in got]) == list(range(5))
    assert not h.uplink.connected


async def test_a_takeover_makes_the_broker_publish_the_offline_will(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    cfg = config(mosquitto.url)
    async with (
        collecting(cfg, STATUS) as status,
        running_uplink(cfg, tmp_path / "outbox.db", client_id="gw-will") as h,
    ):
        await wait_until(lambda: [p for _, p in status] == [b"online"])
        # A second client with the same id ends the uplink's connection without a DISCONNECT.
        async with Connector(cfg).client("gw-will"):
            await wait_until(lambda: b"offline" in [p for _, p in status])
        await wait_until(lambda: h.uplink.connects == 2)  # and the uplink comes back
        await wait_until(lambda: [p for _, p in status][-1] == b"online")


@pytest.mark.parametrize(
    ("protocol", "persistent"), [("5", True), ("3.1.1", True), ("5", False), ("3.1.1", False)]
)
async def test_a_persistent_session_gets_what_was_published_while_away(
    tmp_path: Path, mosquitto: Mosquitto, protocol: str, persistent: bool
) -> None:
    session = {"clean_start": not persistent, "client_id": f"consumer-{protocol}"}
    if persistent and protocol == "5":
        session["session_expiry"] = 300
    consumer = config(mosquitto.url, protocol=protocol, **session)
    async with collecting(consumer, "data/#", client_id=f"consumer-{protocol}"):
        pass  # subscribed; now away
    async with running_uplink(config(mosquitto.url), tmp_path / "outbox.db") as h:
        await h.put("data/x", numbered(0, 20))
        await wait_until(lambda: h.uplink.published == 20)
    # Back: a resumed session still has its subscription and the queued messages.
    async with collecting(
        consumer, "data/#", client_id=f"consumer-{protocol}", subscribe=not persistent
    ) as got:
        if persistent:
            await wait_until(lambda: len(first_seen([p for _, p in got])) == 20)
        else:
            # Whatever the broker had queued would arrive before this probe.
            async with Connector(config(mosquitto.url)).client("probe") as probe:
                await probe.publish("data/x", b"999", qos=1)
            await wait_until(lambda: len(got) >= 1)
    assert first_seen([p for _, p in got]) == (list(range(20)) if persistent else [999])


async def test_a_persistent_uplink_gets_commands_sent_while_it_was_away(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    cfg = config(mosquitto.url, clean_start=False, session_expiry=300)
    async with running_uplink(cfg, tmp_path / "a.db", client_id="gw-p") as h:
        await wait_until(lambda: h.uplink.connects == 1)
        await h.stop()  # clean disconnect; the broker keeps the session and its subscription
    async with Connector(config(mosquitto.url)).client("operator") as op:
        await op.publish(COMMAND, b"please", qos=1)
    async with running_uplink(cfg, tmp_path / "b.db", client_id="gw-p") as h2:
        await wait_until(lambda: len(h2.commands) == 1)
    assert h2.commands == [(COMMAND, b"please")]


async def test_a_clean_uplink_does_not_get_them(tmp_path: Path, mosquitto: Mosquitto) -> None:
    cfg = config(mosquitto.url)  # clean_start = true (the default)
    async with running_uplink(cfg, tmp_path / "a.db", client_id="gw-c") as h:
        await wait_until(lambda: h.uplink.connects == 1)
        await h.stop()
    async with Connector(cfg).client("operator") as op:
        await op.publish(COMMAND, b"lost", qos=1)
    async with running_uplink(cfg, tmp_path / "b.db", client_id="gw-c") as h2:
        await wait_until(lambda: h2.uplink.connects == 1)
        async with Connector(cfg).client("operator") as op:
            await op.publish(COMMAND, b"live", qos=1)
        await wait_until(lambda: len(h2.commands) == 1)
    assert h2.commands == [(COMMAND, b"live")]


async def test_the_window_sets_the_clients_inflight_limit(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    client = Connector(config(mosquitto.url, inflight=5)).client("x")
    assert client._client._max_inflight_messages == 5  # paho keeps it private
    async with running_uplink(config(mosquitto.url, inflight=9), tmp_path / "o.db") as h:
        assert h.uplink.window == 9
