"""SKAB leaderboard metrics: per-row outlier scores and the changepoint NAB score.

Outlier detection, pooled over every file's scored rows: F1 = TP / (TP + (FN + FP) / 2),
FAR % = 100 FP / (FP + TN), MAR % = 100 FN / (FN + TP).

Changepoint NAB, as the SKAB leaderboard computes it (tsad ``chp_score`` with a 60 s window to
the right of each true changepoint, "cut right window" overlap rule, "improved" scale function):

- predicted changepoints are the rows where the binary prediction flips, ``cp[0] = pred[0]``;
- each true changepoint ``c`` opens the window ``[t_c, t_c + 60 s]`` (both ends inclusive);
  taken in order, when a window's right edge reaches the next window's left edge
  (``right_i >= left_i+1``) the next window starts at that right edge instead;
- in each window only the first predicted changepoint ``p`` in it counts and scores
  ``y[e]`` with ``e = min(int((t_p - left) / (right - left) * 1000), 999)`` and
  ``y = (A_tp - A_fp) / 2 * (-tanh(x) / tanh(pi / 2)) + (A_tp - A_fp) / 2 + A_fp`` on
  ``x = linspace(-pi / 2, pi / 2, 1000)``; a window without a prediction scores ``A_fn``;
- every predicted changepoint before the first window, strictly between two windows or after
  the last one scores ``A_fp`` (one on a shared edge belongs to both windows, and is no FP);
- summed over files, ``score = 100 (S - S_null) / (S_perfect - S_null)`` with
  ``S_null = A_fn * #windows`` and ``S_perfect = A_tp * #windows``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

WINDOW_S = 60.0
DETAIL = 1000
PROFILES: dict[str, tuple[float, float, float]] = {
    # name: (A_tp, A_fp, A_fn)
    "standard": (1.0, -0.11, -1.0),
    "lowfp": (1.0, -0.22, -1.0),
    "lowfn": (1.0, -0.11, -2.0),
}

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Binary:
    """Pooled confusion counts and the leaderboard's outlier metrics."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def f1(self) -> float:
        """TP / (TP + (FN + FP) / 2); 0 when there is nothing to count."""
        den = self.tp + 0.5 * (self.fn + self.fp)
        return self.tp / den if den else 0.0

    @property
    def far(self) -> float:
        """False alarm rate, % of normal rows flagged."""
        n = self.fp + self.tn
        return 100.0 * self.fp / n if n else 0.0

    @property
    def mar(self) -> float:
        """Missed alarm rate, % of anomalous rows not flagged."""
        n = self.fn + self.tp
        return 100.0 * self.fn / n if n else 0.0


def binary_counts(truth: npt.ArrayLike, pred: npt.ArrayLike) -> Binary:
    """Confusion counts of 0/1 predictions against 0/1 labels."""
    t = np.asarray(truth) == 1
    p = np.asarray(pred) == 1
    if t.shape != p.shape:
        raise ValueError(f"truth {t.shape} and prediction {p.shape} differ in shape")
    return Binary(
        tp=int((t & p).sum()),
        fp=int((~t & p).sum()),
        tn=int((~t & ~p).sum()),
        fn=int((t & ~p).sum()),
    )


def pooled(parts: Iterable[Binary]) -> Binary:
    """Sum confusion counts over files."""
    tp = fp = tn = fn = 0
    for b in parts:
        tp, fp, tn, fn = tp + b.tp, fp + b.fp, tn + b.tn, fn + b.fn
    return Binary(tp, fp, tn, fn)


def predicted_changepoints(pred: npt.ArrayLike) -> IntArray:
    """Row indexes where the 0/1 prediction flips; row 0 counts when it is 1."""
    p = (np.asarray(pred) == 1).astype(np.int64)
    flips = np.abs(np.diff(p, prepend=0))
    return np.flatnonzero(flips).astype(np.int64)


def windows(cp_times: Sequence[float], width: float = WINDOW_S) -> list[tuple[float, float]]:
    """Scoring windows of the true changepoints (sorted times), with the overlap rule."""
    out = [(float(t), float(t) + width) for t in sorted(cp_times)]
    for i in range(len(out) - 1):
        if out[i][1] >= out[i + 1][0]:
            out[i + 1] = (out[i][1], out[i + 1][1])
    return out


def reward(profile: tuple[float, float, float], position: float) -> float:
    """Score of a first detection at ``position`` in [0, 1] of its window."""
    a_tp, a_fp, _ = profile
    e = min(int(position * DETAIL), DETAIL - 1)
    x = -math.pi / 2 + e * math.pi / (DETAIL - 1)
    half = (a_tp - a_fp) / 2
    return half * (-math.tanh(x) / math.tanh(math.pi / 2)) + half + a_fp


@dataclass(frozen=True, slots=True)
class NabFile:
    """One file's changepoint outcome: detection positions (None = missed) and stray flips."""

    positions: tuple[float | None, ...]
    false_positives: int

    def score(self, profile: tuple[float, float, float]) -> float:
        """Sum of this file's rewards under ``profile``."""
        _, a_fp, a_fn = profile
        s = a_fp * self.false_positives
        for pos in self.positions:
            s += a_fn if pos is None else reward(profile, pos)
        return s


def nab_file(times: npt.ArrayLike, truth_cp: npt.ArrayLike, pred: npt.ArrayLike) -> NabFile:
    """Match one file's predicted changepoints (from 0/1 ``pred``) with its true ones."""
    t = np.asarray(times, dtype=np.float64)
    true_idx = np.flatnonzero(np.asarray(truth_cp) == 1)
    pred_t = t[predicted_changepoints(pred)]
    wins = windows(t[true_idx].tolist())
    positions: list[float | None] = []
    inside = np.zeros(len(pred_t), dtype=bool)
    for left, right in wins:
        hit = (pred_t >= left) & (pred_t <= right)
        inside |= hit
        first = np.flatnonzero(hit)
        positions.append(None if not len(first) else (pred_t[first[0]] - left) / (right - left))
    return NabFile(tuple(positions), int((~inside).sum()))


def nab_scores(files: Iterable[NabFile]) -> dict[str, float]:
    """Normalised changepoint NAB score per profile, summed over files (perfect 100, null 0)."""
    files = list(files)
    n_windows = sum(len(f.positions) for f in files)
    out: dict[str, float] = {}
    for name, profile in PROFILES.items():
        a_tp, _, a_fn = profile
        s = sum(f.score(profile) for f in files)
        null, perfect = a_fn * n_windows, a_tp * n_windows
        out[name] = 100.0 * (s - null) / (perfect - null) if n_windows else 0.0
    return out
