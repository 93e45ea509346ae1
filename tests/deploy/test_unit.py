"""The service unit: its systemd-analyze rating, syntax, and what the sandbox must still allow."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "edgetwin.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def unit_entries(path: Path = UNIT) -> dict[str, list[str]]:
    """Every Key=value of the [Service] and [Unit] sections; repeated keys keep every value."""
    entries: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a Key=value line: {raw!r}"
        entries.setdefault(key.strip(), []).append(value.strip())
    return entries


def words(entries: dict[str, list[str]], key: str) -> list[str]:
    return " ".join(entries.get(key, [])).split()


@needs_analyze
def test_security_exposure_is_at_most_2() -> None:
    out = subprocess.run(
        [str(ANALYZE), "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for edgetwin\.service: (\d+\.\d+)", out.stdout)
    assert match, out.stdout + out.stderr
    assert float(match.group(1)) <= 2.0, out.stdout


@needs_analyze
def test_systemd_analyze_verify_reports_nothing(tmp_path: Path) -> None:
    # verify checks that ExecStart= is executable; point it at a stand-in for the venv's script.
    exe = tmp_path / "edgetwin"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    unit = tmp_path / "edgetwin.service"
    unit.write_text(UNIT.read_text().replace("/opt/edgetwin/bin/edgetwin", str(exe)))
    out = subprocess.run(
        [str(ANALYZE), "verify", "--man=no", "--generators=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice"),
    )
    if "Failed to initialize manager" in out.stderr:
        pytest.skip(f"systemd-analyze verify does not work offline here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "", out.stderr


def test_unit_keeps_what_the_gateway_needs() -> None:
    e = unit_entries()
    assert e["Type"] == ["notify"]
    assert e["Restart"] == ["on-failure"]
    assert e["WatchdogSec"], "no watchdog"
    assert e["User"] == ["edgetwin"]
    assert {"dialout", "i2c"} <= set(words(e, "SupplementaryGroups"))
    # Devices: serial adapters, Pi UARTs and I2C, through the device cgroup.
    assert e["DevicePolicy"] == ["closed"]
    allowed = {tuple(v.split()) for v in e["DeviceAllow"]}
    for major in ("char-ttyUSB", "char-ttyACM", "char-ttyAMA", "char-i2c"):
        assert (major, "rw") in allowed, major
    assert "yes" not in e.get("PrivateDevices", [])
    # Network: Modbus TCP and MQTT over IPv4/IPv6, AF_UNIX for sd_notify; never AF_PACKET.
    families = set(words(e, "RestrictAddressFamilies"))
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families
    assert "AF_PACKET" not in families
    assert "yes" not in e.get("PrivateNetwork", [])
    # Writable state, read-only configuration, kernel cache outside the read-only venv.
    assert e["ProtectSystem"] == ["strict"]
    assert e["StateDirectory"] == ["edgetwin"]
    assert e["CacheDirectory"] == ["edgetwin"]
    assert "ReadWritePaths" not in e
    env = dict(w.split("=", 1) for w in words(e, "Environment"))
    assert env["NUMBA_CACHE_DIR"].startswith("/var/cache/edgetwin/")
    # Numba cannot run with W^X memory (see the next test).
    assert "yes" not in e.get("MemoryDenyWriteExecute", [])


_MDWE_PROBE = textwrap.dedent(
    """
    import ctypes, sys
    libc = ctypes.CDLL(None, use_errno=True)
    # prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN): the kernel's MemoryDenyWriteExecute
    if libc.prctl(65, 1, 0, 0, 0) != 0:
        sys.exit(77)
    import numba
    print(numba.njit(lambda x: x + 1)(41))
    """
)


def test_numba_cannot_run_under_memory_deny_write_execute(tmp_path: Path) -> None:
    """Why MemoryDenyWriteExecute= stays off; this fails once Numba can live with it."""
    out = subprocess.run(
        [sys.executable, "-c", _MDWE_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path)),
        check=False,
    )
    if out.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3 or newer)")
    assert out.returncode != 0, "Numba now runs with W^X memory: set MemoryDenyWriteExecute=yes"
    # llvmlite's own probe, at `import numba`, before any kernel is compiled or loaded.
    assert "cannot allocate executable memory" in out.stderr, out.stderr


def _can_unshare_mounts() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


_NOEXEC_PROBE = textwrap.dedent(
    """
    import shutil, subprocess, sys
    import numba

    def twice(x):
        return 2 * x

    # The first dispatcher compiles and writes the cache; a second one loads from it.
    print(numba.njit(cache=True)(twice)(21))
    loaded = numba.njit(cache=True)(twice)
    print(loaded(21), "hits", sum(loaded.stats.cache_hits.values()))
    tool = shutil.copy("/usr/bin/true", sys.argv[1])
    try:
        subprocess.run([tool], check=True)
    except PermissionError:
        print("noexec")
    """
)


@pytest.mark.skipif(not _can_unshare_mounts(), reason="needs root and mount namespaces")
def test_numba_kernels_work_with_no_exec_paths(tmp_path: Path) -> None:
    """NoExecPaths=/ with ExecPaths= the OS and the venv, emulated in a mount namespace.

    The kernel cache then lives on a noexec file system; loading from it must still work.
    """
    e = unit_entries()
    assert e["NoExecPaths"] == ["/"]
    assert "/usr" in words(e, "ExecPaths")
    assert "/opt/edgetwin" in words(e, "ExecPaths")
    # Here the interpreter and the venv play /usr and /opt/edgetwin.
    exec_paths = sorted({"/usr", sys.prefix, sys.base_prefix}, key=len)
    kept: list[str] = []
    for path in exec_paths:
        if not any(path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    script = tmp_path / "probe.py"
    script.write_text(_NOEXEC_PROBE)
    shell = "; ".join(
        [
            *(f"mount --bind {p} {p}" for p in kept),
            "mount -o remount,bind,noexec /",
            # The cache directory explicitly too, in case /tmp is a mount of its own.
            f"mount --bind {tmp_path} {tmp_path}",
            f"mount -o remount,bind,noexec {tmp_path}",
            f"{sys.executable} {script} {tmp_path / 'tool'}",
        ]
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-ec", shell],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    # Compiled into the noexec cache, then loaded from it; no executable could be dropped.
    assert out.stdout.split() == ["42", "42", "hits", "1", "noexec"], out.stdout + out.stderr
    assert list((tmp_path / "numba").rglob("*.nbc"))
