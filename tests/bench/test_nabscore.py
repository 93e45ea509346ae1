"""NAB scorer (bench/_nabscore.py): perfect and null detectors, hand-computed cases, NAB's rules."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.support.data import shared_data

ROOT = Path(__file__).resolve().parents[2]
NAB_DATA = shared_data("nab")


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_nabscore", ROOT / "bench" / "_nabscore.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


nab = _load()
STANDARD = nab.Profile("standard", 1.0, 0.11, 1.0)
LOW_FP = nab.Profile("reward_low_FP_rate", 1.0, 0.22, 1.0)
LOW_FN = nab.Profile("reward_low_FN_rate", 1.0, 0.11, 2.0)
PROFILES = [STANDARD, LOW_FP, LOW_FN]

# Scaled sigmoid values, computed by hand: 2 / (1 + exp(5 x)) - 1.
SIG_START = 0.9866142981514305  # x = -1, a window's first row
SIG_HALF = 0.8482836399575131  # x = -0.5, half way in
SIG_ONE_AFTER = -0.9866142981514303  # x = 1, one window width after its end


def detections(n: int, rows: list[int]) -> np.ndarray:
    det = np.zeros(n, dtype=bool)
    det[rows] = True
    return det


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_perfect_detector_scores_100(profile: Any) -> None:
    files = [(100, [(40, 49)]), (300, [(60, 80), (150, 151), (290, 299)])]
    scores = []
    for n, windows in files:
        det = detections(n, [start for start, _ in windows])
        scores.append(nab.score_file(det, windows, profile, nab.probation_rows(n)))
    assert nab.normalised(scores) == pytest.approx(100.0, abs=1e-12)
    assert [s.detected for s in scores] == [1, 3]
    assert [s.false_positives for s in scores] == [0, 0]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_null_detector_scores_0(profile: Any) -> None:
    windows = [(40, 49), (70, 80)]
    score = nab.score_file(np.zeros(100, dtype=bool), windows, profile, 15)
    assert score.score == score.null == -2 * profile.fn
    assert score.perfect == 2 * profile.tp
    assert nab.normalised([score]) == 0.0
    assert (score.detected, score.missed, score.false_positives) == (0, 2, 0)


def test_hand_computed_true_and_false_positives() -> None:
    # 100 rows, probation 15, one window at rows 40..49 (10 rows wide). Detections:
    #   5  in the probation: ignored
    #   20 before any window: -A_fp
    #   45 in the window, position -(49 - 45 + 1)/10 = -0.5: A_tp * sig(-0.5) / sig(-1)
    #   47 a later detection in the same window: ignored
    #   58 after the window, position (58 - 49)/(10 - 1) = 1: A_fp * sig(1)
    det = detections(100, [5, 20, 45, 47, 58])
    expected = {
        "standard": SIG_HALF / SIG_START - 0.11 + 0.11 * SIG_ONE_AFTER,
        "reward_low_FP_rate": SIG_HALF / SIG_START - 0.22 + 0.22 * SIG_ONE_AFTER,
        "reward_low_FN_rate": SIG_HALF / SIG_START - 0.11 + 0.11 * SIG_ONE_AFTER,
    }
    for profile in PROFILES:
        score = nab.score_file(det, [(40, 49)], profile, nab.probation_rows(100))
        assert score.score == pytest.approx(expected[profile.name], abs=1e-12)
        assert (score.detected, score.missed, score.false_positives) == (1, 0, 2)
    standard = nab.score_file(det, [(40, 49)], STANDARD, 15)
    assert standard.score == pytest.approx(0.6412649941131263, abs=1e-12)
    assert nab.normalised([standard]) == pytest.approx(82.06324970565632, abs=1e-9)
    low_fn = nab.score_file(det, [(40, 49)], LOW_FN, 15)
    assert nab.normalised([low_fn]) == pytest.approx(100 * (0.6412649941131263 + 2) / 3)


def test_nab_all_metrics_case() -> None:
    # NAB's own tests/unit/scorer_test.py testScoringAllMetrics: all weights 1, two windows of
    # five rows, a TP at the first window's start, another TP, an FP two rows after its end
    # and a missed second window: 1 + sig(3/4) - 1 = -0.9540.
    unit = nab.Profile("unit", 1.0, 1.0, 1.0)
    score = nab.score_file(detections(100, [30, 31, 37]), [(30, 34), (60, 64)], unit, 0)
    assert score.score == pytest.approx(-0.9540, abs=1e-4)
    assert score.score == pytest.approx(nab.scaled_sigmoid(0.75), abs=1e-12)


def test_only_the_first_detection_in_a_window_counts_and_earlier_is_better() -> None:
    windows = [(40, 59)]
    first = nab.score_file(detections(100, [40]), windows, STANDARD, 0).score
    assert first == 1.0
    assert nab.score_file(detections(100, [40, 45, 59]), windows, STANDARD, 0).score == first
    later = [nab.score_file(detections(100, [i]), windows, STANDARD, 0).score for i in (45, 59)]
    assert first > later[0] > later[1] > 0.0
    # the last row: position -(59 - 59 + 1)/20, about 0.12
    assert later[1] == pytest.approx((2 / (1 + math.exp(-5 / 20)) - 1) / SIG_START, abs=1e-12)


def test_false_positives_weigh_by_distance_from_the_last_window() -> None:
    windows = [(40, 49), (200, 209)]

    def fp(row: int) -> float:
        score = nab.score_file(detections(300, [row]), windows, STANDARD, 0)
        assert score.false_positives == 1
        return score.score - score.null

    assert fp(10) == pytest.approx(-0.11, abs=1e-15)  # before any window: the full A_fp
    assert fp(50) > fp(55) > fp(70)  # closer to the window just ended costs less
    assert fp(50) == pytest.approx(0.11 * nab.scaled_sigmoid(1 / 9), abs=1e-15)
    assert fp(90) == pytest.approx(-0.11, abs=1e-15)  # more than 3 widths after: the full A_fp
    assert fp(210) == pytest.approx(0.11 * nab.scaled_sigmoid(1 / 9), abs=1e-15)


def test_probation() -> None:
    assert nab.probation_rows(100) == 15
    assert nab.probation_rows(1882) == 282
    assert nab.probation_rows(5000) == 750
    assert nab.probation_rows(18050) == 750  # NAB caps it at 15 % of 5000 rows
    # A window entirely in the probation is not scored, not even as a miss.
    score = nab.score_file(detections(100, [3, 12]), [(2, 5), (40, 49)], STANDARD, 15)
    assert (score.detected, score.missed, score.false_positives) == (0, 1, 0)
    assert score.null == -1.0
    assert score.perfect == 2.0  # NAB's perfect counts every labelled window
    # A window that straddles the probation end scores a detection in its scored rows only.
    straddle = nab.score_file(detections(100, [12, 16]), [(10, 19)], STANDARD, 15)
    assert straddle.score == pytest.approx(nab.scaled_sigmoid(-4 / 10) / SIG_START)


def test_window_rows() -> None:
    t0 = datetime(2014, 7, 1)
    ts = [t0 + timedelta(minutes=5 * i) for i in range(50)]
    assert nab.window_rows(ts, [(ts[3], ts[8]), (ts[20], ts[21])]) == [(3, 8), (20, 21)]
    with pytest.raises(ValueError, match="timestamps of the file"):
        nab.window_rows(ts, [(ts[3], t0 + timedelta(minutes=1))])
    with pytest.raises(ValueError, match="at least two rows"):
        nab.window_rows(ts, [(ts[3], ts[3])])
    with pytest.raises(ValueError, match="overlaps"):
        nab.window_rows(ts, [(ts[3], ts[8]), (ts[8], ts[9])])
    with pytest.raises(ValueError, match="beyond"):
        nab.score_file(np.zeros(10, dtype=bool), [(3, 12)], STANDARD, 0)


def test_load_profiles_and_windows(tmp_path: Path) -> None:
    profiles = {"standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11}}}
    (tmp_path / "profiles.json").write_text(json.dumps(profiles))
    assert nab.load_profiles(tmp_path / "profiles.json") == {"standard": STANDARD}
    windows = {"realKnownCause/x.csv": [["2014-07-15 04:35:00.000000", "2014-07-15 13:25:00"]]}
    (tmp_path / "windows.json").write_text(json.dumps(windows))
    assert nab.load_windows(tmp_path / "windows.json") == {
        "x.csv": [(datetime(2014, 7, 15, 4, 35), datetime(2014, 7, 15, 13, 25))]
    }


@pytest.mark.skipif(not NAB_DATA.is_dir(), reason="shared NAB data not present")
def test_shared_labels_fit_the_shared_files() -> None:
    profiles = nab.load_profiles(NAB_DATA / "labels" / "profiles.json")
    assert set(profiles) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    windows = nab.load_windows(NAB_DATA / "labels" / "combined_windows.json")
    for path in sorted((NAB_DATA / "data").glob("*.csv")):
        lines = path.read_text().splitlines()[1:]
        ts = [nab.parse_time(line.split(",")[0]) for line in lines]
        rows = nab.window_rows(ts, windows[path.name])
        assert rows
        assert rows[0][0] >= nab.probation_rows(len(ts))
