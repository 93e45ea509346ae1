"""A throwaway PKI made with the `openssl` CLI, and Mosquitto brokers that use it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto, TlsListener

OPENSSL = shutil.which("openssl")

_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def _openssl(cwd: Path, *args: str) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def _new_ca(d: Path, name: str) -> tuple[Path, Path]:
    key, cert = d / f"{name}.key", d / f"{name}.crt"
    _openssl(
        d,
        *("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
        *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2"),
        *("-subj", f"/CN=edgetwin test {name}", "-config", "openssl.cnf", "-extensions", "ca"),
    )
    return cert, key


def _issue(d: Path, name: str, ca: tuple[Path, Path], ext: str, serial: int) -> tuple[Path, Path]:
    key, csr, cert = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt"
    _openssl(
        d,
        *("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
        *("-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}", "-config", "openssl.cnf"),
    )
    _openssl(
        d,
        *("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1])),
        *("-set_serial", str(serial), "-days", "2", "-out", str(cert)),
        *("-extfile", "openssl.cnf", "-extensions", ext),
    )
    return cert, key


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Certificates for this test run (skip if the openssl CLI is missing)."""
    if OPENSSL is None:
        pytest.skip("the openssl CLI is not installed (apt-get install openssl)")
    d = tmp_path_factory.mktemp("pki")
    (d / "openssl.cnf").write_text(_OPENSSL_CNF)
    ca = _new_ca(d, "ca")
    other, _ = _new_ca(d, "other-ca")
    server = _issue(d, "localhost", ca, "server", 2)
    client = _issue(d, "gateway-1", ca, "client", 3)
    for key in d.glob("*.key"):
        key.chmod(0o600)
    return Pki(ca[0], server[0], server[1], client[0], client[1], other)


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    """Mosquitto with a TLS listener that needs no client certificate."""
    broker = Mosquitto(
        tmp_path / "mosquitto", tls=TlsListener(pki.ca, pki.server_cert, pki.server_key)
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mtls_broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    """Mosquitto with a TLS listener that requires a client certificate signed by the CA."""
    tls = TlsListener(pki.ca, pki.server_cert, pki.server_key, require_certificate=True)
    broker = Mosquitto(tmp_path / "mosquitto", tls=tls)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
