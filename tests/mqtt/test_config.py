"""MqttConfig: TLS files, sessions and the window are checked once, at the boundary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edgetwin.config import load_config_text
from edgetwin.config.schema import MqttConfig
from edgetwin.errors import ConfigError

BASE = """\
[gateway]
id = "edge-01"

[mqtt]
{mqtt}

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


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "some.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def error_of(**kw: Any) -> str:
    with pytest.raises(ValidationError) as err:
        MqttConfig(**kw)
    return str(err.value)


def test_defaults_are_a_clean_plain_session() -> None:
    cfg = MqttConfig()
    assert (cfg.tls, cfg.clean_start, cfg.session_expiry, cfg.inflight) == (False, True, 0, 32)
    assert cfg.tls_ca is cfg.tls_cert is cfg.tls_key is None
    assert cfg.tls_insecure is False


def test_mqtts_without_a_ca_uses_the_system_store() -> None:
    cfg = MqttConfig(url="mqtts://broker.example")
    assert cfg.tls
    assert cfg.port == 8883


def test_tls_settings_need_mqtts(pem: Path) -> None:
    assert "tls_ca needs an mqtts:// url" in error_of(tls_ca=pem)
    assert "tls_insecure needs an mqtts:// url" in error_of(tls_insecure=True)


def test_key_and_cert_come_together(pem: Path) -> None:
    url = "mqtts://broker.example"
    assert "tls_key needs tls_cert" in error_of(url=url, tls_key=pem)
    assert "tls_cert needs tls_key" in error_of(url=url, tls_cert=pem)
    both = MqttConfig(url=url, tls_cert=pem, tls_key=pem)  # one PEM file holding both
    assert both.tls_cert == both.tls_key == pem


def test_tls_files_must_exist_be_absolute_and_regular(tmp_path: Path, pem: Path) -> None:
    url = "mqtts://broker.example"
    assert "does not exist" in error_of(url=url, tls_ca=tmp_path / "missing.pem")
    assert "absolute" in error_of(url=url, tls_ca=Path("relative.pem"))
    assert "not a regular file" in error_of(url=url, tls_ca=tmp_path)


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"clean_start": False}, "needs session_expiry > 0"),
        ({"protocol": "3.1.1", "session_expiry": 60}, "MQTT 5 only"),
        ({"inflight": 0}, "inflight"),
        ({"inflight": 1001}, "inflight"),
        ({"session_expiry": -1}, "session_expiry"),
        ({"client_id": "has space"}, "client_id"),
        ({"client_id": ""}, "client_id"),
    ],
)
def test_session_settings_are_checked(kw: dict[str, Any], expected: str) -> None:
    assert expected in error_of(**kw)


def test_persistent_sessions_of_both_versions_are_accepted() -> None:
    v5 = MqttConfig(clean_start=False, session_expiry=3600, client_id="gw-1")
    assert (v5.clean_start, v5.session_expiry) == (False, 3600)
    v311 = MqttConfig(protocol="3.1.1", clean_start=False)
    assert not v311.clean_start


def test_the_loader_locates_tls_problems(tmp_path: Path) -> None:
    missing = tmp_path / "ca.pem"
    text = BASE.format(mqtt=f'url = "mqtts://broker.example"\ntls_ca = "{missing}"')
    with pytest.raises(ConfigError) as err:
        load_config_text(text, filename="gw.toml")
    (problem,) = err.value.problems
    assert problem.path == "mqtt.tls_ca"
    assert problem.line == 6
    assert "does not exist" in problem.message


def test_the_loader_reports_a_lonely_key_at_the_mqtt_table(pem: Path) -> None:
    text = BASE.format(mqtt=f'url = "mqtts://broker.example"\ntls_key = "{pem}"')
    with pytest.raises(ConfigError) as err:
        load_config_text(text, filename="gw.toml")
    (problem,) = err.value.problems
    assert problem.path == "mqtt"
    assert "tls_key needs tls_cert" in problem.message


def test_a_full_tls_and_session_table_loads(pem: Path) -> None:
    mqtt = "\n".join(
        [
            'url = "mqtts://broker.example:8883"',
            f'tls_ca = "{pem}"',
            f'tls_cert = "{pem}"',
            f'tls_key = "{pem}"',
            'client_id = "edge-01"',
            "clean_start = false",
            "session_expiry = 86400",
            "inflight = 64",
        ]
    )
    cfg = load_config_text(BASE.format(mqtt=mqtt), filename="gw.toml").mqtt
    assert (cfg.tls_ca, cfg.inflight, cfg.session_expiry, cfg.clean_start) == (
        pem,
        64,
        86400,
        False,
    )
