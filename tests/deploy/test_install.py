"""deploy/install.sh in a throwaway root (--destdir): layout, idempotence, upgrade, uninstall.

The tests share one install (it compiles the kernels, the slow part) and run in file order:
layout, second run, upgrade, uninstall. No systemd is needed: in a destdir the script must
only print the commands that would change the system, and stand-ins on PATH prove it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.wheel import ROOT, build_wheel, shared_site_packages

INSTALL = ROOT / "deploy" / "install.sh"
# The first install creates a venv and compiles the kernels: give a loaded machine time.
pytestmark = pytest.mark.timeout(600)
# Commands that change the system; none may run in a destdir install.
SYSTEM_TOOLS = (
    "systemctl",
    "systemd-sysusers",
    "systemd-tmpfiles",
    "udevadm",
    "useradd",
    "runuser",
    "chgrp",
    "chown",
    "groupadd",
    "usermod",
)


@dataclass
class Staged:
    """A destdir and what is needed to run install.sh on it."""

    destdir: Path
    wheel: Path
    env: dict[str, str]
    calls: Path
    first_output: str = ""

    def run(self, *args: str, wheel: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run install.sh with ``args`` on this destdir; fail the test on a non-zero exit."""
        cmd = [
            "bash",
            str(INSTALL),
            "--destdir",
            str(self.destdir),
            *args,
        ]
        if "--uninstall" not in args:
            cmd += [
                "--source",
                str(wheel or self.wheel),
                # The venv is made from this interpreter; its dependencies come from PYTHONPATH.
                "--python",
                sys.executable,
                "--pip-arg=--no-index",
                "--pip-arg=--no-deps",
            ]
        out = subprocess.run(
            cmd, capture_output=True, text=True, env=self.env, timeout=300, check=False
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out


def _fake_tools(bin_dir: Path, calls: Path) -> None:
    bin_dir.mkdir()
    for tool in SYSTEM_TOOLS:
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\nexit 1\n')
        script.chmod(0o755)


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Staged:
    tmp = tmp_path_factory.mktemp("install")
    wheel = build_wheel(tmp)
    deps = shared_site_packages(tmp / "deps")
    calls = tmp / "system-calls.log"
    _fake_tools(tmp / "fakebin", calls)
    env = dict(
        os.environ,
        PATH=f"{tmp / 'fakebin'}:{os.environ['PATH']}",
        PYTHONPATH=str(deps),
        PIP_NO_CACHE_DIR="1",
    )
    env.pop("NUMBA_CACHE_DIR", None)
    env.pop("DESTDIR", None)
    s = Staged(destdir=tmp / "root", wheel=wheel, env=env, calls=calls)
    s.first_output = s.run().stdout
    return s


def _snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file and directory under ``root``: content hash, mtime and mode."""
    state = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            digest = "->" + os.readlink(path)
        elif path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digest = "dir"
        state[str(path.relative_to(root))] = (digest, st.st_mtime_ns, st.st_mode)
    return state


def test_layout(staged: Staged) -> None:
    d = staged.destdir
    deploy = ROOT / "deploy"
    for installed, source in [
        ("etc/systemd/system/edgetwin.service", "edgetwin.service"),
        ("etc/sysusers.d/edgetwin.conf", "sysusers.d/edgetwin.conf"),
        ("etc/tmpfiles.d/edgetwin.conf", "tmpfiles.d/edgetwin.conf"),
        ("etc/udev/rules.d/99-edgetwin-serial.rules", "udev/99-edgetwin-serial.rules"),
        ("etc/edgetwin/edgetwin.toml", "edgetwin.example.toml"),
    ]:
        assert (d / installed).read_bytes() == (deploy / source).read_bytes(), installed
    assert (d / "etc/edgetwin/edgetwin.toml").stat().st_mode & 0o777 == 0o640
    assert (d / "opt/edgetwin/pyvenv.cfg").is_file()
    assert os.access(d / "opt/edgetwin/bin/edgetwin", os.X_OK)
    # The unit runs exactly the script the installer put into the venv.
    unit = (d / "etc/systemd/system/edgetwin.service").read_text()
    assert "ExecStart=/opt/edgetwin/bin/edgetwin run --config /etc/edgetwin/edgetwin.toml" in unit
    # ... and its Documentation= is there too.
    doc = re.search(r"^Documentation=file:(/\S+)$", unit, re.MULTILINE)
    assert doc
    assert (d / doc.group(1).lstrip("/")).read_bytes() == (ROOT / "docs/deploy.md").read_bytes()
    # `edgetwin check` and `edgetwin warmup` ran from the venv; warmup filled the kernel cache.
    assert "edgetwin.toml: OK" in staged.first_output
    assert "twin kernels ready" in staged.first_output
    assert list((d / "var/cache/edgetwin/numba").rglob("*.nbc"))
    assert (d / "var/lib/edgetwin").is_dir()
    # Nothing outside the destdir was touched; what would have run was printed.
    assert not staged.calls.exists(), staged.calls.read_text()
    for planned in (
        "systemd-sysusers",
        "systemd-tmpfiles --create",
        "systemctl daemon-reload",
        "systemctl enable edgetwin.service",
        "udevadm control --reload",
    ):
        assert f"would run: {planned}" in staged.first_output, planned


def test_second_run_changes_nothing_and_keeps_the_config(staged: Staged) -> None:
    config = staged.destdir / "etc/edgetwin/edgetwin.toml"
    site_config = config.read_text().replace('id = "edge-01"', 'id = "plant-7-gw"')
    assert site_config != config.read_text()
    config.write_text(site_config)  # the technician edits the config
    before = _snapshot(staged.destdir)

    out = staged.run()

    assert _snapshot(staged.destdir) == before
    assert config.read_text() == site_config
    assert "gateway plant-7-gw" in out.stdout  # `edgetwin check` read the technician's file
    assert "installed " not in out.stdout
    assert "try-restart" not in out.stdout
    assert not staged.calls.exists()


def test_changed_source_is_reinstalled(staged: Staged, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, {"edgetwin/_deploy_test_marker.py": b'"""A new module."""\n'})
    unit = staged.destdir / "etc/systemd/system/edgetwin.service"
    unit_mtime = unit.stat().st_mtime_ns

    out = staged.run(wheel=wheel)

    site = next((staged.destdir / "opt/edgetwin/lib").glob("python3*/site-packages"))
    assert (site / "edgetwin" / "_deploy_test_marker.py").is_file()
    assert "installed edgetwin from" in out.stdout
    assert "would run: systemctl try-restart edgetwin.service" in out.stdout
    assert unit.stat().st_mtime_ns == unit_mtime


def test_uninstall_keeps_config_and_state(staged: Staged) -> None:
    d = staged.destdir
    outbox = d / "var/lib/edgetwin/outbox.db"
    outbox.write_bytes(b"queued readings")

    out = staged.run("--uninstall")

    for gone in (
        "opt/edgetwin",
        "etc/systemd/system/edgetwin.service",
        "etc/sysusers.d/edgetwin.conf",
        "etc/tmpfiles.d/edgetwin.conf",
        "etc/udev/rules.d/99-edgetwin-serial.rules",
        "var/cache/edgetwin",
    ):
        assert not (d / gone).exists(), gone
    assert (d / "etc/edgetwin/edgetwin.toml").is_file()
    assert outbox.read_bytes() == b"queued readings"
    assert "would run: systemctl disable --now edgetwin.service" in out.stdout
    assert not staged.calls.exists()
    # Uninstalling twice is harmless.
    staged.run("--uninstall")


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    out = subprocess.run(
        ["bash", str(INSTALL), "--destdir", str(tmp_path), "--frobnicate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "unknown argument: --frobnicate" in out.stderr
    assert not any(tmp_path.iterdir())


def test_shell_syntax() -> None:
    subprocess.run(["bash", "-n", str(INSTALL)], check=True, timeout=60)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(INSTALL)], check=True, timeout=60)
