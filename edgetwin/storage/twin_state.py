"""Twin state on disk: every model group's estimator state, so a restart resumes the twin.

One SQLite file (``twin.sqlite`` in the state directory), one row per group: its key, the
parameters its estimator was built with, its point names and its state arrays (msgpack of
name → dtype, shape, bytes). ``save`` replaces all rows in one transaction with
``synchronous = FULL``, so a crash leaves the previous save or this one, never a mix. ``restore``
loads a row only into a group with the same key and parameters (other parameters describe
another model: it recommissions) and, point by point, only the points it still has. A file that
cannot be read is moved aside and the twin starts fresh: a bad state file must never stop the
gateway.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgpack
import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_DTYPES = frozenset({"<f8", "<i8", "|u1", "|b1", "<u2", "<f4", "<i4"})


class Persistable(Protocol):
    """A model group as the store sees it."""

    @property
    def key(self) -> str: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def names(self) -> list[str]: ...
    def state(self) -> dict[str, npt.NDArray[Any]]: ...
    def restore(self, names: list[str], state: Mapping[str, npt.NDArray[Any]]) -> int: ...


@dataclass
class RestoreReport:
    """What ``restore`` did: points resumed per group key, and groups that start fresh, why."""

    resumed: dict[str, int] = field(default_factory=dict)
    fresh: dict[str, str] = field(default_factory=dict)
    saved_at: float | None = None


def pack_arrays(state: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """Encode named arrays (little-endian, C order)."""
    doc = {}
    for name, arr in state.items():
        a = np.ascontiguousarray(arr)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        doc[name] = [a.dtype.str, list(a.shape), a.tobytes()]
    return bytes(msgpack.packb(doc, use_bin_type=True))


def unpack_arrays(blob: bytes) -> dict[str, npt.NDArray[Any]]:
    """Decode ``pack_arrays`` output; ValueError if it is not well formed."""
    try:
        doc = msgpack.unpackb(blob, raw=False)
    except (msgpack.UnpackException, ValueError) as exc:
        raise ValueError(f"state blob does not decode: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError("state blob is not a map")  # noqa: TRY004 - callers catch ValueError
    out: dict[str, npt.NDArray[Any]] = {}
    for name, item in doc.items():
        if not (isinstance(item, list) and len(item) == 3 and item[0] in _DTYPES):
            raise ValueError(f"state field {name!r} is malformed")
        dtype, shape, data = np.dtype(item[0]), item[1], item[2]
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise ValueError(f"state field {name!r} has a bad shape")
        if not isinstance(data, bytes) or len(data) != dtype.itemsize * int(np.prod(shape)):
            raise ValueError(f"state field {name!r} has {len(data)} bytes for shape {shape}")
        out[str(name)] = (
            np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
        )
    return out


class TwinStateStore:
    """The twin state file; methods are blocking (call them off the event loop)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        con.execute("PRAGMA synchronous = FULL")
        return con

    def save(self, groups: Iterable[Persistable]) -> int:
        """Replace the saved state with ``groups``' current state; return the rows written."""
        rows = [
            (
                g.key,
                json.dumps(g.params, sort_keys=True),
                json.dumps(g.names),
                pack_arrays(g.state()),
            )
            for g in groups
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute(
                "CREATE TABLE IF NOT EXISTS twin_state (key TEXT PRIMARY KEY, params TEXT NOT "
                "NULL, names TEXT NOT NULL, saved REAL NOT NULL, state BLOB NOT NULL)"
            )
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            con.execute("DELETE FROM twin_state")
            now = time.time()
            con.executemany(
                "INSERT INTO twin_state VALUES (?, ?, ?, ?, ?)",
                [(k, p, n, now, s) for k, p, n, s in rows],
            )
            con.execute("COMMIT")
        finally:
            con.close()
        return len(rows)

    def restore(self, groups: Iterable[Persistable]) -> RestoreReport:
        """Load saved state into matching groups; never raises for a bad or missing file."""
        report = RestoreReport()
        groups = list(groups)
        try:
            saved = self._read()
        except (sqlite3.Error, ValueError) as exc:
            aside = self.path.with_name(f"{self.path.name}.bad-{int(time.time())}")
            try:
                self.path.replace(aside)
            except OSError as move:
                aside = Path(f"nowhere ({move.strerror})")
            log.warning("twin state %s is unreadable (%s); moved to %s", self.path, exc, aside)
            saved = {}
        for g in groups:
            row = saved.get(g.key)
            if row is None:
                report.fresh[g.key] = "no saved state"
                continue
            params, names, ts, blob = row
            if params != json.loads(json.dumps(g.params, sort_keys=True)):
                report.fresh[g.key] = "model parameters changed"
                continue
            try:
                n = g.restore(names, unpack_arrays(blob))
            except ValueError as exc:
                report.fresh[g.key] = f"saved state rejected: {exc}"
                continue
            if n:
                report.resumed[g.key] = n
                report.saved_at = ts if report.saved_at is None else min(report.saved_at, ts)
            else:
                report.fresh[g.key] = "none of its points were saved"
        return report

    def _read(self) -> dict[str, tuple[Any, list[str], float, bytes]]:
        if not self.path.exists():
            return {}
        con = self._connect()
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise ValueError(f"schema version {version}, expected {SCHEMA_VERSION}")
            rows = con.execute("SELECT key, params, names, saved, state FROM twin_state").fetchall()
        finally:
            con.close()
        out: dict[str, tuple[Any, list[str], float, bytes]] = {}
        for key, params, names, ts, blob in rows:
            try:
                decoded_names = json.loads(names)
                decoded_params = json.loads(params)
            except json.JSONDecodeError as exc:
                raise ValueError(f"row {key!r}: {exc}") from exc
            if not (
                isinstance(decoded_names, list) and all(isinstance(n, str) for n in decoded_names)
            ):
                raise ValueError(f"row {key!r}: names is not a list of strings")
            out[str(key)] = (decoded_params, decoded_names, float(ts), bytes(blob))
        return out
