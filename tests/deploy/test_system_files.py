"""sysusers.d, tmpfiles.d and udev rules: applied to a throwaway root where the tools exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SYSUSERS = DEPLOY / "sysusers.d" / "edgetwin.conf"
TMPFILES = DEPLOY / "tmpfiles.d" / "edgetwin.conf"
RULES = DEPLOY / "udev" / "99-edgetwin-serial.rules"


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def _group_members(group_file: Path) -> dict[str, list[str]]:
    groups = {}
    for line in group_file.read_text().splitlines():
        name, _, _, members = line.split(":")
        groups[name] = [m for m in members.split(",") if m]
    return groups


def test_sysusers_puts_the_user_in_dialout_and_i2c() -> None:
    entries = [ln.split() for ln in _lines(SYSUSERS)]
    assert entries[0][:2] == ["u", "edgetwin"]
    assert {(e[0], e[1], e[2]) for e in entries if e[0] == "m"} == {
        ("m", "edgetwin", "dialout"),
        ("m", "edgetwin", "i2c"),
    }


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_sysusers_and_tmpfiles_apply_to_a_fresh_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    # As on Debian: dialout exists (gid 20), i2c does not (Raspberry Pi OS has it).
    (root / "etc" / "group").write_text("root:x:0:\ndialout:x:20:\n")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    subprocess.run(
        ["systemd-sysusers", f"--root={root}", str(SYSUSERS)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    user = next(
        ln.split(":")
        for ln in (root / "etc/passwd").read_text().splitlines()
        if ln.startswith("edgetwin:")
    )
    assert user[6].endswith("nologin")
    groups = _group_members(root / "etc" / "group")
    assert groups["dialout"] == ["edgetwin"]
    assert groups["i2c"] == ["edgetwin"]
    gid = {
        ln.split(":")[0]: int(ln.split(":")[2])
        for ln in (root / "etc/group").read_text().splitlines()
    }
    assert gid["dialout"] == 20  # the existing group was joined, not recreated

    if shutil.which("systemd-tmpfiles") is None:
        pytest.skip("no systemd-tmpfiles")
    subprocess.run(
        ["systemd-tmpfiles", f"--root={root}", "--create", str(TMPFILES)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    uid = int(user[2])
    for rel, owner, mode in [
        ("etc/edgetwin", (0, gid["edgetwin"]), 0o750),
        ("var/lib/edgetwin", (uid, gid["edgetwin"]), 0o750),
        ("var/cache/edgetwin/numba", (uid, gid["edgetwin"]), 0o750),
    ]:
        st = (root / rel).stat()
        assert ((st.st_uid, st.st_gid), st.st_mode & 0o7777) == (owner, mode), rel


# udev(7) rule syntax, enough to catch a typo that udevd would log and skip.
_MATCH_KEYS = {"ACTION", "KERNEL", "SUBSYSTEM", "DRIVERS", "DRIVER", "KERNELS", "SUBSYSTEMS"}
_MATCH_ONLY = re.compile(r"(ATTRS?|ENV)\{[A-Za-z0-9_.:-]+\}")
_ASSIGN_KEYS = {"GROUP", "MODE", "OWNER", "SYMLINK", "GOTO", "TAG", "RUN", "NAME"}
_PAIR = re.compile(r'\s*([A-Z_]+(?:\{[^}]+\})?)\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*(?:,|$)')


def _rule_pairs(line: str) -> list[tuple[str, str, str]]:
    pairs, pos = [], 0
    while pos < len(line):
        m = _PAIR.match(line, pos)
        assert m, f"cannot parse at {line[pos:]!r} in {line!r}"
        pairs.append((m.group(1), m.group(2), m.group(3)))
        pos = m.end()
    return pairs


def test_udev_rules_parse() -> None:
    labels, gotos, symlinks = set(), set(), []
    for line in _lines(RULES):
        pairs = _rule_pairs(line)
        if pairs[0][0] == "LABEL":
            labels.add(pairs[0][2])
            continue
        assert any(op in ("==", "!=") for _, op, _ in pairs), f"rule without a match: {line}"
        for key, op, value in pairs:
            if op in ("==", "!="):
                assert key in _MATCH_KEYS or _MATCH_ONLY.fullmatch(key), (key, line)
            else:
                base = key.split("{")[0]
                assert base in _ASSIGN_KEYS or key.startswith("ENV{"), (key, line)
                if base == "GOTO":
                    gotos.add(value)
                if base == "SYMLINK":
                    symlinks.append(value)
                if base == "MODE":
                    assert re.fullmatch(r"0[0-7]{3}", value), line
    assert gotos <= labels, f"GOTO without LABEL: {gotos - labels}"
    # Stable names live in one directory the technician can list.
    assert symlinks
    assert all(s.startswith("edgetwin/") for s in symlinks)


def test_udev_rules_cover_the_serial_and_i2c_devices() -> None:
    text = "\n".join(_lines(RULES))
    assert re.search(r'SUBSYSTEM=="i2c-dev".*GROUP="i2c"', text)
    for name in ("ttyUSB", "ttyACM", "ttyAMA"):
        assert re.search(rf'KERNEL=="[^"]*{name}[^"]*".*GROUP="dialout"', text), name


def test_udev_parser_rejects_a_broken_rule() -> None:
    with pytest.raises(AssertionError):
        _rule_pairs('KERNEL=="ttyUSB*", SYMLINK+="edgetwin/x", GROUP=dialout')
