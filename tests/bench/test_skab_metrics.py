"""SKAB metrics (bench/_skab_metrics.py): outlier scores and the changepoint NAB windows rule."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.support.data import shared_data

ROOT = Path(__file__).resolve().parents[2]
SKAB_DATA = shared_data("skab")


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "_skab_metrics", ROOT / "bench" / "_skab_metrics.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


M = _load()
STANDARD = (1.0, -0.11, -1.0)


def y(profile: tuple[float, float, float], e: int) -> float:
    """The reward curve of the README, written out: x = linspace(-pi/2, pi/2, 1000)[e]."""
    a_tp, a_fp, _ = profile
    x = np.linspace(-math.pi / 2, math.pi / 2, 1000)[e]
    return (a_tp - a_fp) / 2 * (-math.tanh(x) / math.tanh(math.pi / 2)) + (a_tp - a_fp) / 2 + a_fp


def standard(times: list[float], truth_cp: list[int], pred: list[int]) -> float:
    return float(M.nab_scores([M.nab_file(times, truth_cp, pred)])["standard"])


def one_cp_file(n: int = 200, cp: int = 50) -> tuple[list[float], list[int]]:
    times = [float(t) for t in range(n)]
    truth = [0] * n
    truth[cp] = 1
    return times, truth


# ---------------------------------------------------------------------------------------------
# Outlier metrics
# ---------------------------------------------------------------------------------------------


def test_binary_metrics_from_hand_counts() -> None:
    truth = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    pred = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    b = M.binary_counts(truth, pred)
    assert (b.tp, b.fp, b.tn, b.fn) == (3, 2, 4, 1)
    assert b.f1 == pytest.approx(3 / (3 + (1 + 2) / 2))
    assert b.far == pytest.approx(100 * 2 / 6)
    assert b.mar == pytest.approx(100 * 1 / 4)


def test_binary_metrics_pool_counts_not_ratios() -> None:
    a = M.binary_counts([1, 0], [1, 1])
    b = M.binary_counts([1, 1, 1, 0], [0, 0, 0, 0])
    p = M.pooled([a, b])
    assert (p.tp, p.fp, p.tn, p.fn) == (1, 1, 1, 3)
    assert p.f1 == pytest.approx(1 / (1 + 2))


def test_everything_anomalous_and_nothing_anomalous() -> None:
    truth = [0, 1, 1, 0]
    every = M.binary_counts(truth, [1, 1, 1, 1])
    assert (every.far, every.mar) == (100.0, 0.0)
    none = M.binary_counts(truth, [0, 0, 0, 0])
    assert (none.f1, none.far, none.mar) == (0.0, 0.0, 100.0)


def test_binary_counts_reject_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="shape"):
        M.binary_counts([0, 1], [0])


# ---------------------------------------------------------------------------------------------
# Changepoint NAB
# ---------------------------------------------------------------------------------------------


def test_predicted_changepoints_are_flips_and_a_leading_one() -> None:
    assert M.predicted_changepoints([0, 0, 1, 1, 0]).tolist() == [2, 4]
    assert M.predicted_changepoints([1, 1, 0, 1]).tolist() == [0, 2, 3]
    assert M.predicted_changepoints([0, 0]).tolist() == []


def test_no_detection_scores_zero() -> None:
    times, truth = one_cp_file()
    scores = M.nab_scores([M.nab_file(times, truth, [0] * len(times))])
    assert scores == {"standard": 0.0, "lowfp": 0.0, "lowfn": 0.0}


def test_detection_at_the_changepoint_scores_100() -> None:
    times, truth = one_cp_file()
    pred = [0] * 50 + [1] * 150
    scores = M.nab_scores([M.nab_file(times, truth, pred)])
    assert scores == pytest.approx({"standard": 100.0, "lowfp": 100.0, "lowfn": 100.0})


def test_perfect_labels_with_distant_changepoints_score_100() -> None:
    n = 600
    times = [float(t) for t in range(n)]
    labels = [1 if 200 <= t < 400 else 0 for t in range(n)]
    truth = [1 if t in (200, 400) else 0 for t in range(n)]
    assert standard(times, truth, labels) == pytest.approx(100.0)


@pytest.mark.parametrize("delay", [1, 15, 30, 45, 59, 60])
def test_late_detection_follows_the_reward_curve(delay: int) -> None:
    times, truth = one_cp_file()
    pred = [0] * (50 + delay) + [1] * (150 - delay)
    e = min(int(delay / 60 * 1000), 999)
    want = 100 * (y(STANDARD, e) - (-1.0)) / (1.0 - (-1.0))
    assert standard(times, truth, pred) == pytest.approx(want)


def test_half_way_reward_by_hand() -> None:
    # e = 500: x = -pi/2 + 500 pi / 999, a little past the middle of the curve
    x = -math.pi / 2 + 500 * math.pi / 999
    reward = 0.555 * (-math.tanh(x) / math.tanh(math.pi / 2)) + 0.555 - 0.11
    times, truth = one_cp_file()
    pred = [0] * 80 + [1] * 120
    assert standard(times, truth, pred) == pytest.approx(100 * (reward + 1) / 2)


def test_stray_flip_outside_windows_costs_a_false_positive() -> None:
    times, truth = one_cp_file()
    pred = [0] * 10 + [1] * 5 + [0] * 185  # flips at 10 and 15, both before the window
    f = M.nab_file(times, truth, pred)
    assert f.positions == (None,)
    assert f.false_positives == 2
    # S = 2 A_fp + A_fn, S_null = A_fn, S_perfect = A_tp
    assert standard(times, truth, pred) == pytest.approx(100 * (2 * -0.11) / 2)
    lowfp = M.nab_scores([f])["lowfp"]
    assert lowfp == pytest.approx(100 * (2 * -0.22) / 2)


def test_only_the_first_flip_in_a_window_counts_and_later_ones_are_free() -> None:
    times, truth = one_cp_file()
    pred = [0] * 50 + [1] * 10 + [0] * 10 + [1] * 130  # flips at 50, 60, 70: all in [50, 110]
    f = M.nab_file(times, truth, pred)
    assert f.positions == (0.0,)
    assert f.false_positives == 0


def test_overlapping_windows_start_at_the_previous_right_edge() -> None:
    times = [float(t) for t in range(300)]
    truth = [1 if t in (100, 130) else 0 for t in range(300)]
    assert M.windows([100.0, 130.0]) == [(100.0, 160.0), (160.0, 190.0)]
    # flips exactly at both changepoints: the second lies in the first window, so the second
    # window has none: S = A_tp + A_fn = 0, null -2, perfect 2 -> 50
    pred = [1 if 100 <= t < 130 else 0 for t in range(300)]
    f = M.nab_file(times, truth, pred)
    assert f.positions == (0.0, None)
    assert standard(times, truth, pred) == pytest.approx(50.0)


def test_a_flip_on_a_shared_edge_belongs_to_both_windows() -> None:
    times = [float(t) for t in range(300)]
    truth = [1 if t in (100, 130) else 0 for t in range(300)]
    pred = [1 if t >= 160 else 0 for t in range(300)]  # one flip at 160
    f = M.nab_file(times, truth, pred)
    assert f.positions == (1.0, 0.0)
    assert f.false_positives == 0
    s = y(STANDARD, 999) + y(STANDARD, 0)
    assert standard(times, truth, pred) == pytest.approx(100 * (s + 2) / 4)


def test_windows_are_in_seconds_not_rows() -> None:
    # rows 2 s apart: the 60 s window after row 10 (t = 20) ends at t = 80, row 40
    times = [2.0 * t for t in range(100)]
    truth = [1 if t == 10 else 0 for t in range(100)]
    inside = [1 if t >= 40 else 0 for t in range(100)]
    outside = [1 if t >= 41 else 0 for t in range(100)]
    assert M.nab_file(times, truth, inside).positions == (1.0,)
    g = M.nab_file(times, truth, outside)
    assert (g.positions, g.false_positives) == ((None,), 1)


def test_files_are_summed_before_normalising() -> None:
    times, truth = one_cp_file()
    hit = M.nab_file(times, truth, [0] * 50 + [1] * 150)
    miss = M.nab_file(times, truth, [0] * 200)
    none = M.nab_file(times, [0] * 200, [0] * 20 + [1] * 180)  # no windows: a flip is an FP
    assert none.false_positives == 1
    # S = 1 + (-1) - 0.11 over 2 windows: 100 (S + 2) / 4
    want = 100 * (1 - 1 - 0.11 + 2) / 4
    assert M.nab_scores([hit, miss, none])["standard"] == pytest.approx(want)


def test_lowfn_profile_weighs_misses_double() -> None:
    times, truth = one_cp_file()
    pred = [0] * 80 + [1] * 120
    f = M.nab_file(times, truth, pred)
    reward = y((1.0, -0.11, -2.0), 500)
    assert M.nab_scores([f])["lowfn"] == pytest.approx(100 * (reward + 2) / 3)


def _skab_files() -> list[Path]:
    if not SKAB_DATA.is_dir():
        return []
    return sorted(p for p in SKAB_DATA.glob("*/*.csv") if p.parent.name != "anomaly-free")


@pytest.mark.skipif(not _skab_files(), reason="shared SKAB data not present")
def test_a_perfect_changepoint_detector_loses_only_to_the_window_rule() -> None:
    """Flips exactly at every scored changepoint: overlapping windows stay empty, so < 100."""
    files = []
    for path in _skab_files():
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter=";"))[400:]
        times = [np.datetime64(r["datetime"].replace(" ", "T"), "s").astype(float) for r in rows]
        truth = [int(float(r["changepoint"])) for r in rows]
        pred = (np.cumsum(truth) % 2).tolist()
        files.append(M.nab_file(times, truth, pred))
    scores = M.nab_scores(files)
    # 92.91 on the 34 leaderboard files (README); the shared subset has fewer clashes
    assert 90.0 < scores["standard"] < 100.0
    missed = sum(p is None for f in files for p in f.positions)
    assert missed > 0
    assert all(p in {None, 0.0} for f in files for p in f.positions)
    n = sum(len(f.positions) for f in files)
    assert scores["standard"] == pytest.approx(100 * (n - missed) / n)


# ---------------------------------------------------------------------------------------------
# bench/skab.py end to end: the daemon's code path, predictions an outside scorer can check
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not (SKAB_DATA / "valve2").is_dir(), reason="shared SKAB data not present")
def test_bench_streams_through_the_daemon_and_writes_checkable_predictions(tmp_path: Path) -> None:
    import subprocess  # noqa: PLC0415 - only this test runs a child

    out = tmp_path / "pred"
    script = str(ROOT / "bench" / "skab.py")
    proc = subprocess.run(
        [sys.executable, script, "--data", str(SKAB_DATA / "valve2"), "--predictions", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert "twin: daemon (edgetwin.config.loader + TwinStage.step)" in proc.stdout
    parts = []
    for source in sorted((SKAB_DATA / "valve2").glob("*.csv")):
        with source.open() as fh:
            rows = list(csv.DictReader(fh, delimiter=";"))
        with (out / "valve2" / source.name).open() as fh:
            pred = list(csv.DictReader(fh))
        assert [p["datetime"] for p in pred] == [r["datetime"] for r in rows]
        flags = [int(p["anomaly"]) for p in pred]
        assert set(flags) <= {0, 1}
        assert not any(flags[:400]), "calibration rows are never predicted anomalous"
        truth = [int(float(r["anomaly"])) for r in rows]
        parts.append(M.binary_counts(truth[400:], flags[400:]))
    rescored = M.pooled(parts)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("edgetwin valve2"))
    assert f"{rescored.f1:.2f}" == line.split()[3]  # "edgetwin valve2 (2) F1 ..."
    assert rescored.f1 > 0.5  # the twin finds the valve faults, not an empty prediction
