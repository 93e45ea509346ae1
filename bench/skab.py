"""SKAB: edgetwin's asset model on the Skoltech Anomaly Benchmark, with the leaderboard protocol.

Every SKAB experiment CSV under each ``--data`` directory (any subset, folders as in
shared/data/skab; ``anomaly-free`` and files without ``anomaly``/``changepoint`` columns are
skipped and named) is streamed row by row, one poll of device ``pump`` per row, through a fresh
twin built from ``--config`` (bench/skab.toml, an ordinary edgetwin config). The twin is the
daemon's own: ``edgetwin.config.loader`` + ``TwinStage.step(DeviceReading)``, once the config
schema knows every asset key in the file; until then a small adapter (:class:`DirectTwin`, the
only place that differs) builds the same ``AssetEstimator`` from the same keys, and the run
says which one it used. A second missing from a file is fed as a failed poll (NaN, STALE), as
the daemon sees one.

Protocol (SKAB leaderboard): rows 0-399 of each file calibrate (the asset's commissioning) and
are predicted 0; rows 400... are scored, the prediction of a row being whether the asset is in
ALARM after that row. Labels are read only to score, after the file has been streamed.
Predictions are pooled over all files: F1, FAR, MAR, and the changepoint NAB scores
(bench/_skab_metrics.py), beside the published leaderboard (34 files; this folder holds 16).
Targets: F1 >= 0.80 with FAR <= 13.5 % and NAB standard >= 33; exit 0 on PASS, 1 on FAIL,
2 when nothing could be scored. ``--predictions OUT`` writes ``OUT/<folder>/<name>.csv``
(``datetime,anomaly`` for every row) for an independent scorer.

    .venv/bin/python bench/skab.py [--data DIR ...] [--predictions OUT] [--config FILE]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import _skab_metrics as metrics  # bench/ is on sys.path when this file runs as a script
import numpy as np
import numpy.typing as npt

from edgetwin.core.types import Alarm, DeviceReading, Quality
from edgetwin.errors import ConfigError
from edgetwin.twin.asset import AssetEstimator

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "skab"
DEFAULT_CONFIG = HERE / "skab.toml"
CALIBRATION_ROWS = 400
# CSV column -> point name in bench/skab.toml
COLUMNS = {
    "Accelerometer1RMS": "accelerometer1",
    "Accelerometer2RMS": "accelerometer2",
    "Current": "current",
    "Pressure": "pressure",
    "Temperature": "motor_temperature",
    "Thermocouple": "fluid_temperature",
    "Voltage": "voltage",
    "Volume Flow RateRMS": "flow",
}
TARGET_F1, TARGET_FAR, TARGET_NAB = 0.80, 13.5, 33.0
# SKAB README, current leaderboard (all 34 files): F1, FAR %, MAR %, NAB standard
LEADERBOARD = [
    ("Conv-AE", 0.78, 13.55, 28.02, 23.61),
    ("MSET", 0.78, 39.73, 14.13, 13.84),
    ("T-squared+Q (PCA)", 0.76, 26.62, 24.92, 25.35),
    ("LSTM-AE", 0.74, 29.96, 25.92, 23.51),
    ("T-squared", 0.66, 19.21, 42.6, 19.54),
    ("MSCRED", 0.36, 49.94, 69.88, 32.42),
    ("Isolation forest", 0.29, 2.56, 82.89, 26.16),
]
_NOT_ESTIMATOR_KEYS = ("name", "device", "points")
STALE = int(Quality.STALE)


@dataclass(frozen=True, slots=True)
class Experiment:
    """One labelled SKAB file."""

    folder: str
    name: str
    stamps: list[str]  # datetime column as written
    times: npt.NDArray[np.float64]  # unix seconds
    values: npt.NDArray[np.float64]  # rows x columns, in COLUMNS order
    anomaly: npt.NDArray[np.int64]
    changepoint: npt.NDArray[np.int64]


class Twin(Protocol):
    def step(self, ts: float, values: npt.NDArray[np.float64], quality: npt.NDArray[Any]) -> bool:
        """Feed one poll of the device (all its points); True when the asset is in ALARM."""
        ...


class DaemonTwin:
    """The daemon's path: the loaded config and TwinStage, alarm state from its changes."""

    def __init__(self, cfg: Any, asset: str, device: str) -> None:
        from edgetwin.runtime.twin_stage import TwinStage  # noqa: PLC0415 - optional path

        self.stage = TwinStage(cfg)
        self.asset = asset
        self.device = device
        self.alarm = Alarm.NORMAL

    def step(self, ts: float, values: npt.NDArray[np.float64], quality: npt.NDArray[Any]) -> bool:
        reading = DeviceReading(device=self.device, ts=ts, values=values, quality=quality)
        _, _, changes = self.stage.step(reading)
        for change in changes:
            if getattr(change, "asset", None) == self.asset:
                self.alarm = change.after
        return self.alarm == Alarm.ALARM


class DirectTwin:
    """Adapter until the schema carries every asset key: the same estimator, the same keys."""

    def __init__(self, params: dict[str, Any], index: npt.NDArray[np.intp]) -> None:
        self.index = index
        self.estimator = AssetEstimator(1, len(index), **params)

    def step(self, ts: float, values: npt.NDArray[np.float64], quality: npt.NDArray[Any]) -> bool:
        del ts
        out = self.estimator.update(values[self.index][None, :], quality[self.index][None, :])
        return bool(out.alarm[0] == Alarm.ALARM)


class TwinFactory:
    """Reads the config once; makes a fresh twin per file, through the daemon's path if it can."""

    def __init__(self, path: Path) -> None:
        raw = tomllib.loads(path.read_text())
        assets = raw.get("assets", [])
        if len(assets) != 1:
            raise SystemExit(f"{path}: expected exactly one [[assets]] table, got {len(assets)}")
        table = assets[0]
        self.asset, self.device = table["name"], table["device"]
        device = next(d for d in raw["devices"] if d["name"] == self.device)
        self.points = [p["name"] for p in device["points"]]
        if sorted(self.points) != sorted(COLUMNS.values()):
            want = sorted(COLUMNS.values())
            raise SystemExit(f"{path}: device {self.device!r} must have the points {want}")
        pos = {name: i for i, name in enumerate(self.points)}
        self.columns = [list(COLUMNS.values()).index(p) for p in self.points]
        self.index = np.array([pos[p] for p in table["points"]], dtype=np.intp)
        self.params = {k: v for k, v in table.items() if k not in _NOT_ESTIMATOR_KEYS}
        self.cfg, self.why_not = self._daemon_config(path)

    def _daemon_config(self, path: Path) -> tuple[Any, str]:
        try:
            from edgetwin.config.loader import load_config  # noqa: PLC0415

            cfg = load_config(path)
            twin = DaemonTwin(cfg, self.asset, self.device)
        except (ConfigError, ImportError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return None, f"{type(exc).__name__}: {first}"
        group = next(a for a in twin.stage.devices[self.device].assets if a.name == self.asset)
        given = getattr(group, "params", {})
        differ = sorted(k for k, v in self.params.items() if given.get(k) != v)
        if differ:
            return None, f"the daemon's asset group does not pass on {differ}"
        return cfg, ""

    @property
    def path(self) -> str:
        """Which code the twins run."""
        if self.cfg is not None:
            return "daemon (edgetwin.config.loader + TwinStage.step)"
        return f"direct AssetEstimator adapter ({self.why_not})"

    def make(self) -> Twin:
        """A fresh twin for one file."""
        if self.cfg is not None:
            return DaemonTwin(self.cfg, self.asset, self.device)
        return DirectTwin(self.params, self.index)


def find_experiments(dirs: list[Path]) -> tuple[list[Experiment], list[str]]:
    """Every labelled SKAB CSV under ``dirs``; and the files skipped, with why."""
    found: list[Experiment] = []
    skipped: list[str] = []
    for base in dirs:
        for path in sorted(base.rglob("*.csv")):
            label = f"{path.parent.name}/{path.name}"
            if path.parent.name == "anomaly-free":
                skipped.append(f"{label} (anomaly-free: no labels, other operating point)")
                continue
            exp = read_experiment(path)
            if exp is None:
                skipped.append(f"{label} (no anomaly/changepoint columns)")
            else:
                found.append(exp)
    return found, skipped


def read_experiment(path: Path) -> Experiment | None:
    """Parse one SKAB CSV (';'-separated); None when it carries no labels."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    if not rows or "anomaly" not in rows[0] or "changepoint" not in rows[0]:
        return None
    stamps = [r["datetime"] for r in rows]
    times = np.array([np.datetime64(s.replace(" ", "T"), "s").astype(np.int64) for s in stamps])
    return Experiment(
        folder=path.parent.name,
        name=path.stem,
        stamps=stamps,
        times=times.astype(np.float64),
        values=np.array([[float(r[c]) for c in COLUMNS] for r in rows], dtype=np.float64),
        anomaly=np.array([int(float(r["anomaly"])) for r in rows], dtype=np.int64),
        changepoint=np.array([int(float(r["changepoint"])) for r in rows], dtype=np.int64),
    )


def stream(exp: Experiment, twin: Twin, columns: list[int]) -> tuple[npt.NDArray[np.int64], int]:
    """Feed the file row by row; return the 0/1 prediction per row and the polls fed."""
    n_points = len(columns)
    good = np.zeros(n_points, dtype=np.uint16)
    lost_values = np.full(n_points, np.nan)
    lost_quality = np.full(n_points, STALE, dtype=np.uint16)
    pred = np.zeros(len(exp.times), dtype=np.int64)
    polls = 0
    for row in range(len(exp.times)):
        ts = exp.times[row]
        if row:
            for k in range(1, round(float(ts - exp.times[row - 1]))):  # seconds the logger missed
                twin.step(exp.times[row - 1] + k, lost_values, lost_quality)
                polls += 1
        alarm = twin.step(ts, exp.values[row, columns], good)
        polls += 1
        pred[row] = int(alarm and row >= CALIBRATION_ROWS)
    return pred, polls


@dataclass(frozen=True, slots=True)
class Scored:
    exp: Experiment
    binary: Any
    nab: Any


def score(exp: Experiment, pred: npt.NDArray[np.int64]) -> Scored:
    """The file's scored rows against its labels."""
    s = slice(CALIBRATION_ROWS, None)
    return Scored(
        exp=exp,
        binary=metrics.binary_counts(exp.anomaly[s], pred[s]),
        nab=metrics.nab_file(exp.times[s], exp.changepoint[s], pred[s]),
    )


def write_predictions(out: Path, exp: Experiment, pred: npt.NDArray[np.int64]) -> None:
    target = out / exp.folder / f"{exp.name}.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["datetime", "anomaly"])
        w.writerows(zip(exp.stamps, pred.tolist(), strict=True))


def summary(parts: list[Scored]) -> tuple[Any, dict[str, float]]:
    return metrics.pooled(p.binary for p in parts), metrics.nab_scores(p.nab for p in parts)


def print_report(scored: list[Scored]) -> bool:
    """Per file, per folder and pooled figures, the leaderboard, and PASS/FAIL."""
    print(f"\n{'file':16} {'rows':>5} {'F1':>6} {'FAR %':>6} {'MAR %':>6}  NAB windows hit")
    for p in scored:
        b, hits = p.binary, sum(x is not None for x in p.nab.positions)
        name = f"{p.exp.folder}/{p.exp.name}"
        print(
            f"{name:16} {len(p.exp.times):5d} {b.f1:6.3f} {b.far:6.1f} {b.mar:6.1f}  "
            f"{hits}/{len(p.nab.positions)}, {p.nab.false_positives} stray flips"
        )
    groups = sorted({p.exp.folder for p in scored})
    rows = [(g, [p for p in scored if p.exp.folder == g]) for g in groups]
    if len(groups) > 1:
        rows.append(("pooled", scored))
    header = f"{'':26} {'F1':>5} {'FAR %':>6} {'MAR %':>6} {'NAB std':>8} {'LowFP':>7} {'LowFN':>7}"
    print("\n" + header)
    for label, parts in rows:
        b, nab = summary(parts)
        print(
            f"{'edgetwin ' + label + f' ({len(parts)})':26} {b.f1:5.2f} {b.far:6.2f} {b.mar:6.2f} "
            f"{nab['standard']:8.2f} {nab['lowfp']:7.2f} {nab['lowfn']:7.2f}"
        )
    print("published, all 34 files:")
    for name, f1, far, mar, nab_std in LEADERBOARD:
        print(f"  {name:24} {f1:5.2f} {far:6.2f} {mar:6.2f} {nab_std:8.2f} {'-':>7} {'-':>7}")
    b, nab = summary(scored)
    checks = [
        (f"F1 {b.f1:.4f} >= {TARGET_F1}", b.f1 >= TARGET_F1),
        (f"FAR {b.far:.2f} % <= {TARGET_FAR} %", b.far <= TARGET_FAR),
        (f"NAB standard {nab['standard']:.2f} >= {TARGET_NAB}", nab["standard"] >= TARGET_NAB),
    ]
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return all(ok for _, ok in checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, action="append", help=f"SKAB folder (repeatable); {DEFAULT_DATA}"
    )
    parser.add_argument("--predictions", type=Path, help="write OUT/<folder>/<name>.csv")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    args = parser.parse_args(argv)
    dirs = args.data or [DEFAULT_DATA]
    for d in dirs:
        if not d.is_dir():
            print(f"no such folder: {d}", file=sys.stderr)
            return 2
    factory = TwinFactory(args.config)
    experiments, skipped = find_experiments(dirs)
    for s in skipped:
        print(f"skipped {s}")
    if not experiments:
        print("no labelled SKAB files found", file=sys.stderr)
        return 2
    print(f"config {args.config}; twin: {factory.path}")
    scored: list[Scored] = []
    polls = rows = 0
    start = time.perf_counter()
    for exp in experiments:
        pred, n = stream(exp, factory.make(), factory.columns)
        polls += n
        rows += len(exp.times)
        scored.append(score(exp, pred))
        if args.predictions is not None:
            write_predictions(args.predictions, exp, pred)
    wall = time.perf_counter() - start
    ok = print_report(scored)
    print(
        f"\n{len(experiments)} files, {rows} rows ({polls} polls with the missed seconds) in "
        f"{wall:.2f} s: {rows / wall:,.0f} rows/s (first file includes compiling or loading "
        "the kernels)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
