"""An offline stand-in for `pip wheel .`: the checkout packed as a py3-none-any wheel.

Building with setuptools would need network access for the isolated build environment; this
packs the same files (the packages pyproject.toml names, its dependencies and entry point)
so install.sh's `pip install WHEEL` runs without an index.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sysconfig
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_SKIP_SUFFIXES = {".pyc", ".nbi", ".nbc"}
# What install.sh's venv must not find outside itself: the package under test and pip's own
# tooling (the venv has its own).
_NOT_SHARED = re.compile(r"^(edgetwin|__editable__|_?_?editable|pip|setuptools|_distutils_hack)")


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(out: Path, extra: dict[str, bytes] | None = None) -> Path:
    """Write edgetwin-VERSION-py3-none-any.whl into ``out`` and return its path.

    ``extra`` adds files (wheel path → content), standing in for a changed checkout.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    init = (ROOT / "edgetwin" / "__init__.py").read_text()
    match = re.search(r'__version__ = "([^"]+)"', init)
    assert match, "edgetwin/__init__.py has no __version__"
    version = match.group(1)
    dist_info = f"edgetwin-{version}.dist-info"
    files: dict[str, bytes] = {}
    for package in ("edgetwin", "firmware_stubs"):
        for path in sorted((ROOT / package).rglob("*")):
            rel = path.relative_to(ROOT)
            skip = "__pycache__" in rel.parts or path.suffix in _SKIP_SUFFIXES
            if path.is_file() and not skip:
                files[rel.as_posix()] = path.read_bytes()
    files.update(extra or {})
    metadata = [
        "Metadata-Version: 2.1",
        "Name: edgetwin",
        f"Version: {version}",
        f"Requires-Python: {project['requires-python']}",
        *(f"Requires-Dist: {dep}" for dep in project["dependencies"]),
    ]
    files[f"{dist_info}/METADATA"] = ("\n".join(metadata) + "\n").encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: tests/deploy\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    scripts = "".join(f"{k} = {v}\n" for k, v in project["scripts"].items())
    files[f"{dist_info}/entry_points.txt"] = f"[console_scripts]\n{scripts}".encode()
    record = [_record_line(name, data) for name, data in files.items()]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()

    wheel = out / f"edgetwin-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            # A fixed date keeps the wheel, and so install.sh's fingerprint, reproducible.
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, data, zipfile.ZIP_DEFLATED)
    return wheel


def shared_site_packages(out: Path) -> Path:
    """A directory of links to this interpreter's dependencies, for PYTHONPATH.

    With it, pip in the throwaway venv finds every dependency already installed (no network)
    while edgetwin itself must come from the wheel.
    """
    out.mkdir()
    paths = sysconfig.get_paths()
    for site in dict.fromkeys((paths["purelib"], paths["platlib"])):
        for entry in Path(site).iterdir():
            if _NOT_SHARED.match(entry.name) or entry.suffix == ".pth":
                continue
            if not (out / entry.name).exists():
                (out / entry.name).symlink_to(entry)
    return out
