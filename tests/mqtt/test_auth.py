"""User name and password from a file, against a Mosquitto that requires them."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgetwin.cloud.mirror import PointUpdate
from edgetwin.cloud.subscriber import follow
from edgetwin.errors import ConfigError
from edgetwin.uplink.session import read_password
from tests.mqtt.helpers import (
    birth_payload,
    collecting,
    config,
    first_seen,
    frame_payload,
    numbered,
    running_uplink,
    wait_until,
)
from tests.support.mosquitto import MOSQUITTO_PASSWD, Mosquitto, write_password_file

needs_passwd = pytest.mark.skipif(
    MOSQUITTO_PASSWD is None,
    reason="mosquitto_passwd is not installed (apt-get install mosquitto): no password file",
)

RIGHT = f"right-{secrets.token_hex(8)}"
WRONG = f"wrong-{secrets.token_hex(8)}"


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Mosquitto that admits only user 'gateway' with the password RIGHT."""
    passwd = write_password_file(tmp_path / "broker.passwd", {"gateway": RIGHT})
    broker = Mosquitto(tmp_path / "mosquitto", password_file=passwd)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def secret_file(tmp_path: Path, secret: str) -> Path:
    path = tmp_path / f"{secrets.token_hex(4)}.password"
    path.write_text(f"{secret}\n")
    path.chmod(0o600)
    return path


@needs_passwd
async def test_password_from_a_file_works(tmp_path: Path, auth_broker: Mosquitto) -> None:
    creds = {"username": "gateway", "password_file": secret_file(tmp_path, RIGHT)}
    async with (
        collecting(config(auth_broker.url, **creds), "data/#") as got,
        running_uplink(config(auth_broker.url, **creds), tmp_path / "outbox.db") as h,
    ):
        await h.put("data/x", numbered(0, 10))
        await wait_until(lambda: len(first_seen([p for _, p in got])) == 10)
    assert first_seen([p for _, p in got]) == list(range(10))


@needs_passwd
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_wrong_password_is_reported_without_leaking_it(
    tmp_path: Path, auth_broker: Mosquitto, caplog: pytest.LogCaptureFixture, protocol: str
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="mqtt")  # paho's own log, WARNING by default
    cfg = config(
        auth_broker.url,
        username="gateway",
        password_file=secret_file(tmp_path, WRONG),
        protocol=protocol,
        reconnect_max=0.2,
    )
    async with running_uplink(cfg, tmp_path / "outbox.db") as h:
        await h.put("data/x", numbered(0, 3))
        await wait_until(lambda: h.uplink.failures >= 2)
        assert h.uplink.connects == 0
        assert not h.run.done()
        error = h.uplink.last_error or ""
        assert "refused" in error
        assert "'gateway'" in error  # the user name helps; the password would not
        assert h.uplink.last_delay is not None
        assert h.uplink.last_delay >= 0.1  # a refusal waits at the cap
        texts = [repr(h.uplink), repr(h.uplink.connector), error, str(vars(h.uplink))]
        await h.stop(grace=0)
    assert any(r.name == "mqtt" for r in caplog.records), "paho's debug log was captured"
    assert [r for r in caplog.records if "refused" in r.getMessage()], "the failure is logged"
    texts += [caplog.text, *(r.getMessage() for r in caplog.records)]
    texts += [r.exc_text or "" for r in caplog.records]
    for text in texts:
        assert WRONG not in text


def test_password_file_errors_do_not_quote_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.password"
    path.write_bytes(b"s3cr\xff" + WRONG.encode())
    with pytest.raises(ConfigError) as err:
        read_password(path)
    assert err.value.problems[0].path == "mqtt.password_file"
    assert WRONG not in str(err.value)
    assert "s3cr" not in str(err.value)
    assert err.value.__cause__ is None
    assert err.value.__suppress_context__  # the decode error, which holds the bytes, is hidden
    with pytest.raises(ConfigError) as err:
        read_password(tmp_path / "missing")
    assert err.value.problems[0].path == "mqtt.password_file"


def test_password_is_the_first_line_stripped(tmp_path: Path) -> None:
    path = tmp_path / "p"
    path.write_text(f"  {RIGHT}  \nsecond line\n")
    secret = read_password(path)
    assert secret.get_secret_value() == RIGHT
    assert RIGHT not in repr(secret)
    assert RIGHT not in str(secret)


@needs_passwd
async def test_follow_logs_in_with_a_password_file(tmp_path: Path, auth_broker: Mosquitto) -> None:
    creds = {"username": "gateway", "password_file": secret_file(tmp_path, RIGHT)}
    updates: list[PointUpdate] = []
    ready = asyncio.Event()
    stop = asyncio.Event()
    tail = asyncio.create_task(
        follow(
            auth_broker.url, updates.append, stop, prefix="edgetwin/v1", on_ready=ready.set, **creds
        )
    )
    try:
        await asyncio.wait_for(ready.wait(), 10)
        async with running_uplink(config(auth_broker.url, **creds), tmp_path / "o.db") as h:
            await h.put("edgetwin/v1/gw-9/birth", [birth_payload("gw-9", "s1", ["p", "q"])])
            await h.put("edgetwin/v1/gw-9/frames", [frame_payload("gw-9", "s1", 0, 2)])
            await wait_until(lambda: len(updates) == 2)
    finally:
        stop.set()
        await tail
    assert {(u.gateway, u.point, u.value) for u in updates} == {
        ("gw-9", "p", 0.0),
        ("gw-9", "q", 0.0),
    }
