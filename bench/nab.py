"""NAB realKnownCause: edgetwin's univariate twin models (level, trend), scored with the NAB score.

Every ``*.csv`` under ``DIR/data`` that ``DIR/labels/combined_windows.json`` labels is streamed row
by row through a one-point estimator, one ``update`` per sample with quality GOOD, as the daemon
feeds a point. Models: ``level`` (``edgetwin.twin.LevelEstimator``) and ``trend``
(``edgetwin.twin.trend.TrendEstimator``, skipped with a note when it cannot be imported).

Parameters are global, never per file: the twin defaults of an edgetwin config (``TwinConfig()``:
NIS bound 10.83 = chi2 1 dof 99.9 %, CUSUM k 0.5 / h 8 sigmas, 3 samples to raise, 5 to clear),
except ``commissioning``, which is NAB's probationary period of each file (min(15 % of the rows,
750)): the rows a NAB detector may learn from without being scored. They were fixed before
looking at any score on these files.

Detections are the alarm onsets: the rows where a point's alarm rises into ALARM. Scores
(bench/_nabscore.py, written from numenta/NAB's sweeper and normaliser) are printed per file
(normalised on that file alone) and for all files together, for the standard, reward-low-FP and
reward-low-FN profiles, beside NAB's published scoreboard, which covers the whole 58-file corpus.

    .venv/bin/python bench/nab.py [--data DIR]
"""

from __future__ import annotations

import argparse
import csv
import importlib
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import _nabscore as nabscore  # bench/ is on sys.path when this file runs as a script
import numpy as np
import numpy.typing as npt

from edgetwin.config.schema import TwinConfig
from edgetwin.core.types import Alarm, Quality
from edgetwin.twin import LevelEstimator

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "nab"
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
# numenta/NAB README scoreboard, "As of NAB v1.0", whole corpus (58 files), not this subset.
SCOREBOARD = [
    ("Perfect", "100.0", "100.0", "100.0"),
    ("Numenta HTM", "70.5-69.7", "62.6-61.7", "75.2-74.2"),
    ("CAD OSE", "69.9", "67.0", "73.2"),
    ("Relative Entropy", "54.6", "47.6", "58.8"),
    ("Twitter ADVec v1.0.0", "47.1", "33.6", "53.5"),
    ("Windowed Gaussian", "39.6", "20.9", "47.4"),
    ("Etsy Skyline", "35.7", "27.1", "44.5"),
    ("Bayesian Changepoint", "17.7", "3.2", "32.2"),
    ("Random (mean of seeds)", "11.0", "1.2", "19.5"),
    ("Null", "0.0", "0.0", "0.0"),
]


class _Output(Protocol):
    @property
    def alarm(self) -> npt.NDArray[np.uint8]: ...


class _Estimator(Protocol):
    def update(self, values: npt.ArrayLike, quality: npt.ArrayLike) -> _Output: ...


Factory = Callable[[int], _Estimator]


def models(twin: TwinConfig) -> tuple[dict[str, Factory], list[str]]:
    """One-point estimator factories (by commissioning length), and notes on missing models."""
    classes: dict[str, Any] = {"level": LevelEstimator}
    notes: list[str] = []
    try:  # written in parallel; its API mirrors LevelEstimator's
        classes["trend"] = importlib.import_module("edgetwin.twin.trend").TrendEstimator
    except (ImportError, AttributeError) as exc:
        notes.append(f"trend: not run, edgetwin.twin.trend.TrendEstimator unavailable ({exc})")

    def factory(cls: Any) -> Factory:
        def make(commissioning: int) -> _Estimator:
            estimator: _Estimator = cls(
                1,
                commissioning=commissioning,
                threshold=twin.threshold,
                cusum_k=twin.cusum_k,
                cusum_h=twin.cusum_h,
                alarm_on=twin.alarm_on,
                alarm_off=twin.alarm_off,
            )
            return estimator

        return make

    return {name: factory(cls) for name, cls in classes.items()}, notes


def read_series(path: Path) -> tuple[list[datetime], npt.NDArray[np.float64]]:
    """Timestamps and values of a NAB ``timestamp,value`` file."""
    times: list[datetime] = []
    values: list[float] = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if [h.strip() for h in header[:2]] != ["timestamp", "value"]:
            raise ValueError(f"{path}: expected a timestamp,value header, got {header}")
        for row in reader:
            times.append(nabscore.parse_time(row[0]))
            values.append(float(row[1]))
    return times, np.asarray(values, dtype=np.float64)


def alarm_onsets(estimator: _Estimator, values: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Stream ``values`` one sample per update; True where the alarm rises into ALARM."""
    good = np.zeros(1, dtype=np.uint16) + int(Quality.GOOD)
    onsets = np.zeros(values.size, dtype=bool)
    before = int(Alarm.NORMAL)
    for i in range(values.size):
        now = int(estimator.update(values[i : i + 1], good).alarm[0])
        onsets[i] = now == Alarm.ALARM and before != Alarm.ALARM
        before = now
    return onsets


def main(args: argparse.Namespace) -> int:
    data: Path = args.data
    profiles = nabscore.load_profiles(data / "labels" / "profiles.json")
    windows = nabscore.load_windows(data / "labels" / "combined_windows.json")
    files = [p for p in sorted((data / "data").rglob("*.csv")) if p.name in windows]
    if not files:
        print(f"no labelled NAB files under {data / 'data'}", file=sys.stderr)
        return 1
    twin = TwinConfig()
    found, notes = models(twin)
    print(f"NAB data: {data} ({len(files)} labelled files)")
    print(
        f"twin defaults: threshold {twin.threshold}, cusum k {twin.cusum_k} h {twin.cusum_h}, "
        f"alarm on {twin.alarm_on} off {twin.alarm_off}; commissioning = NAB probation per file"
    )
    series = {p.name: read_series(p) for p in files}
    failed = False
    for name, factory in found.items():
        print(f"\nmodel {name}: detections = alarm onsets; scores normalised per file / in total")
        print(
            f"{'file':<40} {'rows':>6} {'prob':>5} {'win':>3} {'TP':>3} {'FN':>3} {'FP':>4}"
            f" {'standard':>9} {'low FP':>8} {'low FN':>8}"
        )
        per_profile: dict[str, list[nabscore.FileScore]] = {p: [] for p in PROFILES}
        for path in files:
            times, values = series[path.name]
            probation = nabscore.probation_rows(len(times))
            try:
                rows = nabscore.window_rows(times, windows[path.name])
                det = alarm_onsets(factory(max(probation, 5)), values)
            except Exception as exc:  # noqa: BLE001 - report every file, fail at the end
                print(f"{path.name:<40} FAILED: {type(exc).__name__}: {exc}")
                failed = True
                continue
            scores = [nabscore.score_file(det, rows, profiles[p], probation) for p in PROFILES]
            for p, s in zip(PROFILES, scores, strict=True):
                per_profile[p].append(s)
            std = scores[0]
            figures = " ".join(
                f"{nabscore.normalised([s]):>{w}.1f}"
                for s, w in zip(scores, (9, 8, 8), strict=True)
            )
            print(
                f"{path.name:<40} {len(times):>6} {probation:>5} {len(rows):>3} {std.detected:>3}"
                f" {std.missed:>3} {std.false_positives:>4} {figures}"
            )
        totals = " ".join(
            f"{nabscore.normalised(per_profile[p]):>{w}.1f}"
            for p, w in zip(PROFILES, (9, 8, 8), strict=True)
        )
        std_all = per_profile["standard"]
        print(
            f"{'total (normalised over all files)':<40} {'':>6} {'':>5}"
            f" {sum(len(windows[p.name]) for p in files):>3}"
            f" {sum(s.detected for s in std_all):>3} {sum(s.missed for s in std_all):>3}"
            f" {sum(s.false_positives for s in std_all):>4} {totals}"
        )
    for note in notes:
        print(f"\n{note}")
    print("\nPublished NAB scoreboard (numenta/NAB README, NAB v1.0): whole 58-file corpus,")
    print("optimised threshold per detector and profile; not this subset, so only a rough guide:")
    print(f"{'detector':<24} {'standard':>10} {'low FP':>10} {'low FN':>10}")
    for row in SCOREBOARD:
        print(f"{row[0]:<24} {row[1]:>10} {row[2]:>10} {row[3]:>10}")
    return 1 if failed else 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="NAB folder with data/ and labels/ (default: ../shared/data/nab beside the repo)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(parse()))
