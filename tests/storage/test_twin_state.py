"""Twin state on disk: a restart resumes every model exactly; changes and damage recommission."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgpack
import numpy as np
import pytest

from edgetwin.config import load_config_text
from edgetwin.core.types import DeviceReading
from edgetwin.runtime.twin_stage import TwinStage
from edgetwin.storage.twin_state import TwinStateStore, pack_arrays, unpack_arrays

POINTS = """
points = [
  { name = "flow", table = "input", address = 0, type = "float32" },
  { name = "head", table = "input", address = 2, type = "float32", model = "trend" },
  { name = "temp", table = "input", address = 4, type = "float32", model = "lag", input = "amps" },
  { name = "amps", table = "input", address = 6, type = "float32" },
  { name = "mode", table = "input", address = 8, type = "uint16", model = "none" },
  {extra}
]
"""


def config(commissioning: int = 20, extra: str = "", asset: bool = True) -> str:
    text = f"""
[gateway]
id = "gw"

[twin]
commissioning = {commissioning}

[[buses]]
name = "plant"
kind = "modbus_tcp"
host = "127.0.0.1"

[[devices]]
name = "pump"
bus = "plant"
{POINTS.replace("{extra}", extra)}
"""
    if asset:
        text += """
[[assets]]
name = "hydraulics"
device = "pump"
points = ["flow", "head", "amps"]
commissioning = 30
smoothing = 0.0
"""
    return text


def stage(text: str) -> TwinStage:
    return TwinStage(load_config_text(text, filename="t.toml"))


def rows(seed: int, n: int, width: int = 5) -> list[DeviceReading]:
    rng = np.random.default_rng(seed)
    base = np.array([10.0, 5.0, 40.0, 2.0, 1.0, 7.0][:width])
    out = []
    for k in range(n):
        v = base + rng.normal(scale=0.1, size=width)
        v[1] += 0.01 * k  # head drifts
        out.append(DeviceReading("pump", float(k), v, np.zeros(width, np.uint16)))
    return out


def feed(s: TwinStage, readings: list[DeviceReading]) -> list[np.ndarray]:
    out = []
    for r in readings:
        batch, nis, _ = s.step(r)
        out.append(np.concatenate([batch.estimate, batch.score, batch.alarm, np.nan_to_num(nis)]))
    return out


def test_restart_resumes_every_model_exactly(tmp_path: Path) -> None:
    store = TwinStateStore(tmp_path / "twin.sqlite")
    history, future = rows(1, 60), rows(2, 30)
    a = stage(config())
    feed(a, history)
    assert store.save(a.groups()) == 4  # level, trend, lag, asset
    b = stage(config())
    report = store.restore(b.groups())
    assert report.fresh == {}
    assert sum(report.resumed.values()) == 2 + 1 + 1 + 3  # level: flow, amps
    for x, y in zip(feed(a, future), feed(b, future), strict=True):
        np.testing.assert_array_equal(x, y)
    asset_a, asset_b = a.devices["pump"].assets[0], b.devices["pump"].assets[0]
    assert asset_a.score == asset_b.score


def test_a_fresh_twin_differs_from_a_resumed_one(tmp_path: Path) -> None:
    """The test above can fail: without the restore the outputs differ."""
    history, future = rows(1, 60), rows(2, 30)
    a = stage(config())
    feed(a, history)
    b = stage(config())
    diff = [not np.array_equal(x, y) for x, y in zip(feed(a, future), feed(b, future), strict=True)]
    assert any(diff)


def test_a_new_point_commissions_while_the_others_resume(tmp_path: Path) -> None:
    store = TwinStateStore(tmp_path / "twin.sqlite")
    a = stage(config())
    feed(a, rows(1, 60))
    store.save(a.groups())
    extra = '{ name = "vib", table = "input", address = 10, type = "float32" },'
    b = stage(config(extra=extra))
    report = store.restore(b.groups())
    assert report.resumed["pump:level:1"] == 2  # flow and amps; vib is new
    group = next(g for g in b.groups() if g.key == "pump:level:1")
    state = group.state()
    n_good = state["n_good"]
    assert n_good[group.names.index("vib")] == 0
    assert n_good[group.names.index("flow")] > 0


def test_changed_parameters_recommission(tmp_path: Path) -> None:
    store = TwinStateStore(tmp_path / "twin.sqlite")
    a = stage(config())
    feed(a, rows(1, 60))
    store.save(a.groups())
    b = stage(config(commissioning=25))  # the point models' commissioning, not the asset's
    report = store.restore(b.groups())
    assert set(report.resumed) == {"asset:hydraulics"}
    assert set(report.fresh) == {"pump:level:1", "pump:trend:1", "pump:lag:1"}
    assert set(report.fresh.values()) == {"model parameters changed"}


def test_a_corrupt_file_is_moved_aside_and_the_twin_starts_fresh(tmp_path: Path) -> None:
    path = tmp_path / "twin.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    report = TwinStateStore(path).restore(stage(config()).groups())
    assert report.resumed == {}
    assert not path.exists()
    assert len(list(tmp_path.glob("twin.sqlite.bad-*"))) == 1


def test_a_damaged_row_recommissions_only_its_group(tmp_path: Path) -> None:
    path = tmp_path / "twin.sqlite"
    store = TwinStateStore(path)
    a = stage(config())
    feed(a, rows(1, 60))
    store.save(a.groups())
    with sqlite3.connect(path) as con:
        con.execute("UPDATE twin_state SET state = ? WHERE key = 'pump:trend:1'", (b"\x93junk",))
    report = store.restore(stage(config()).groups())
    assert "pump:trend:1" in report.fresh
    assert report.fresh["pump:trend:1"].startswith("saved state rejected")
    assert report.resumed["pump:level:1"] == 2


def test_missing_file_means_fresh(tmp_path: Path) -> None:
    report = TwinStateStore(tmp_path / "none.sqlite").restore(stage(config()).groups())
    assert report.resumed == {}
    assert set(report.fresh.values()) == {"no saved state"}


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(5, dtype=np.float64),
        np.arange(6, dtype=np.int64).reshape(2, 3),
        np.array([True, False]),
        np.zeros((0,), np.uint8),
    ],
)
def test_arrays_round_trip(arr: np.ndarray) -> None:
    back = unpack_arrays(pack_arrays({"a": arr}))["a"]
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)


def test_truncated_array_is_rejected() -> None:
    blob = pack_arrays({"a": np.arange(4.0)})
    doc = msgpack.unpackb(blob)
    doc["a"][2] = doc["a"][2][:-8]
    with pytest.raises(ValueError, match="bytes for shape"):
        unpack_arrays(msgpack.packb(doc))
