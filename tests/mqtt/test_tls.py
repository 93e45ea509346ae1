"""The uplink over TLS against a real Mosquitto: CA-only, client certificates, a wrong CA."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest

from edgetwin.errors import ConfigError
from edgetwin.uplink.session import tls_context
from tests.mqtt.conftest import Pki
from tests.mqtt.helpers import collecting, config, first_seen, numbered, running_uplink, wait_until
from tests.support.mosquitto import Mosquitto


async def test_delivers_over_tls_verified_by_the_ca(
    tmp_path: Path, tls_broker: Mosquitto, pki: Pki
) -> None:
    cfg = config(tls_broker.tls_url, tls_ca=pki.ca)
    async with (
        collecting(config(tls_broker.url), "data/#") as got,
        running_uplink(cfg, tmp_path / "outbox.db") as h,
    ):
        await h.put("data/x", numbered(0, 50))
        await wait_until(lambda: len(first_seen([p for _, p in got])) == 50)
        assert h.uplink.connects == 1
    assert first_seen([p for _, p in got]) == list(range(50))


async def test_delivers_with_a_client_certificate(
    tmp_path: Path, mtls_broker: Mosquitto, pki: Pki
) -> None:
    cfg = config(
        mtls_broker.tls_url, tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key
    )
    async with (
        collecting(config(mtls_broker.url), "data/#") as got,
        running_uplink(cfg, tmp_path / "outbox.db") as h,
    ):
        await h.put("data/x", numbered(0, 20))
        await wait_until(lambda: len(first_seen([p for _, p in got])) == 20)
    assert first_seen([p for _, p in got]) == list(range(20))


async def test_wrong_ca_is_reported_once_and_retried_with_backoff(
    tmp_path: Path, tls_broker: Mosquitto, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cfg = config(tls_broker.tls_url, tls_ca=pki.other_ca, reconnect_max=0.2)
    async with running_uplink(cfg, tmp_path / "outbox.db") as h:
        await h.put("data/x", numbered(0, 3))
        await wait_until(lambda: h.uplink.failures >= 3)
        assert not h.run.done()  # still trying, no crash
        assert h.uplink.connects == 0
        assert h.uplink.published == 0
        error = h.uplink.last_error or ""
        assert "certificate" in error
        assert "tls_ca" in error
        # A refusal waits at the cap (jittered into its upper half), not from 0.5 s up.
        assert h.uplink.last_delay is not None
        assert 0.1 <= h.uplink.last_delay <= 0.2
        await h.stop(grace=0)
    warnings = [r for r in caplog.records if "certificate was rejected" in r.getMessage()]
    assert len(warnings) == 1, "the same failure is logged once, not per attempt"
    assert h.outbox.stats().depth == 3  # nothing was lost


async def test_tls_insecure_still_verifies_the_chain(
    tmp_path: Path, tls_broker: Mosquitto, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    cfg = config(tls_broker.tls_url, tls_ca=pki.other_ca, tls_insecure=True)
    async with running_uplink(cfg, tmp_path / "outbox.db") as h:
        await wait_until(lambda: h.uplink.failures >= 1)
        assert "certificate" in (h.uplink.last_error or "")
        await h.stop(grace=0)
    assert any("tls_insecure" in r.getMessage() for r in caplog.records)


def test_tls_context_settings(pki: Pki) -> None:
    strict = tls_context(config("mqtts://127.0.0.1:1", tls_ca=pki.ca))
    assert strict is not None
    assert strict.verify_mode == ssl.CERT_REQUIRED
    assert strict.check_hostname
    insecure = tls_context(config("mqtts://127.0.0.1:1", tls_ca=pki.ca, tls_insecure=True))
    assert insecure is not None
    assert insecure.verify_mode == ssl.CERT_REQUIRED
    assert not insecure.check_hostname
    assert tls_context(config("mqtt://127.0.0.1:1")) is None


def test_mismatched_key_is_a_config_error(pki: Pki) -> None:
    cfg = config(
        "mqtts://127.0.0.1:1", tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.server_key
    )
    with pytest.raises(ConfigError) as err:
        tls_context(cfg)
    assert err.value.problems[0].path == "mqtt.tls_cert"


def test_a_file_that_is_no_ca_is_a_config_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError) as err:
        tls_context(config("mqtts://127.0.0.1:1", tls_ca=junk))
    assert err.value.problems[0].path == "mqtt.tls_ca"
