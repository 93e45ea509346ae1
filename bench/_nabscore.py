"""The NAB score of binary detections, as the Numenta Anomaly Benchmark computes it.

Written from numenta/NAB ``nab/sweeper.py`` (``Sweeper.calcSweepScore`` and
``calcScoreByThreshold``), ``nab/util.py`` (``getProbationPeriod``) and ``nab/runner.py``
(``normalize``), for detectors whose anomaly score is 0 or 1: the detections are the rows whose
score is 1. Per file of ``n`` rows:

- Probation: rows ``i < min(floor(0.15 n), 0.15 * 5000)`` are not scored at all: a detection there
  counts for nothing, and a window none of whose rows is scored is left out (not even a miss).
- Windows ``[start, end]`` (inclusive) are given by timestamps that must be rows of the file;
  they are sorted and disjoint; a window of ``w = end - start + 1`` rows needs ``w >= 2`` (NAB
  divides by ``w - 1``).
- Scaled sigmoid: ``sig(x) = -1`` if ``x > 3``, else ``2 / (1 + exp(5 x)) - 1``.
- A window scores its best scored detection, which is its earliest: a detection at row ``i``
  is worth ``A_tp * sig(-(end - i + 1) / w) / sig(-1)``, so exactly ``A_tp`` at the first row
  and about 0 at the last. A window with no scored detection scores ``-A_fn``.
- Every scored detection outside all windows is a false positive: ``-A_fp`` when no window ends
  before it, else ``A_fp * sig((i - end) / (w - 1))`` for the last window that ended before row
  ``i`` (about ``-A_fp`` from one window length after it).
- ``S`` is the sum of these. Normalised over any set of files:
  ``100 * (sum S - sum S_null) / (sum S_perfect - sum S_null)``, where ``S_null`` is ``S`` with
  no detections and ``S_perfect = A_tp * (number of windows)``: NAB counts every labelled window
  here, so a window inside the probation keeps a perfect detector below 100.

Profiles (labels/profiles.json): ``A_tp = tpWeight``, ``A_fp = fpWeight``, ``A_fn = fnWeight``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

import numpy as np
import numpy.typing as npt

PROBATION_PERCENT = 0.15


@dataclass(frozen=True, slots=True)
class Profile:
    """One NAB cost profile."""

    name: str
    tp: float
    fp: float
    fn: float


@dataclass(frozen=True, slots=True)
class FileScore:
    """Raw NAB score of one file, its null and perfect scores, and what was counted."""

    score: float
    null: float
    perfect: float
    detected: int  # windows with a scored detection
    missed: int  # scored windows without one
    false_positives: int  # scored detections outside every window


def load_profiles(path: Path) -> dict[str, Profile]:
    """Read NAB's profiles.json."""
    raw = json.loads(path.read_text())
    return {
        name: Profile(
            name,
            float(body["CostMatrix"]["tpWeight"]),
            float(body["CostMatrix"]["fpWeight"]),
            float(body["CostMatrix"]["fnWeight"]),
        )
        for name, body in raw.items()
    }


def parse_time(text: str) -> datetime:
    """Parse a NAB timestamp (``2014-07-15 04:35:00`` with optional fraction)."""
    return datetime.fromisoformat(text.strip())


def load_windows(path: Path) -> dict[str, list[tuple[datetime, datetime]]]:
    """Read combined_windows.json, keyed by file name (``nyc_taxi.csv``)."""
    raw = json.loads(path.read_text())
    out: dict[str, list[tuple[datetime, datetime]]] = {}
    for key, limits in raw.items():
        name = PurePosixPath(key).name
        if name in out:
            raise ValueError(f"{path}: two label entries for {name}")
        out[name] = [(parse_time(a), parse_time(b)) for a, b in limits]
    return out


def probation_rows(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows at the start of a file that are not scored (NAB's ``getProbationPeriod``)."""
    return math.ceil(min(math.floor(percent * n_rows), percent * 5000))


def window_rows(
    timestamps: Sequence[datetime], limits: Iterable[tuple[datetime, datetime]]
) -> list[tuple[int, int]]:
    """Row indexes ``(start, end)`` of each window; ValueError if one does not fit NAB's rules."""
    index: dict[datetime, int] = {}
    for i, t in enumerate(timestamps):
        index.setdefault(t, i)
    rows: list[tuple[int, int]] = []
    for t1, t2 in limits:
        if t1 not in index or t2 not in index:
            raise ValueError(f"window {t1} .. {t2}: its limits must be timestamps of the file")
        start, end = index[t1], index[t2]
        if end - start + 1 < 2:
            raise ValueError(f"window {t1} .. {t2} must span at least two rows")
        if rows and start <= rows[-1][1]:
            raise ValueError(f"window {t1} .. {t2} overlaps or precedes the one before it")
        rows.append((start, end))
    return rows


def scaled_sigmoid(x: float) -> float:
    """NAB's scaled sigmoid: 1 far before a window end, 0 at it, -1 far after it."""
    if x > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def score_file(
    detections: npt.ArrayLike,
    windows: Sequence[tuple[int, int]],
    profile: Profile,
    probation: int,
) -> FileScore:
    """Score one file's 0/1 detections (one per row) against its window rows."""
    det = np.asarray(detections, dtype=bool)
    if det.ndim != 1:
        raise ValueError("detections must be one-dimensional")
    hits = [int(i) for i in np.flatnonzero(det) if i >= probation]
    max_tp = scaled_sigmoid(-1.0)
    score = null = 0.0
    detected = missed = 0
    if windows and windows[-1][1] >= det.size:
        raise ValueError(f"window rows {windows[-1]} beyond {det.size} detections")
    for start, end in windows:
        if end < probation:
            continue  # every row is in the probation: NAB does not count this window
        null -= profile.fn
        width = end - start + 1
        first = next((i for i in hits if start <= i <= end), None)
        if first is None:
            score -= profile.fn
            missed += 1
        else:
            score += scaled_sigmoid(-(end - first + 1) / width) * profile.tp / max_tp
            detected += 1
    false_positives = 0
    for i in hits:
        if any(start <= i <= end for start, end in windows):
            continue
        false_positives += 1
        before = [(start, end) for start, end in windows if end < i]
        if not before:
            score -= profile.fp
        else:
            start, end = before[-1]
            score += scaled_sigmoid((i - end) / (end - start)) * profile.fp
    return FileScore(
        score=score,
        null=null,
        perfect=profile.tp * len(windows),
        detected=detected,
        missed=missed,
        false_positives=false_positives,
    )


def normalised(scores: Iterable[FileScore]) -> float:
    """``100 (S - S_null) / (S_perfect - S_null)`` summed over files; NaN if nothing to score."""
    items = list(scores)
    s = sum(f.score for f in items)
    null = sum(f.null for f in items)
    perfect = sum(f.perfect for f in items)
    if perfect == null:
        return math.nan
    return 100.0 * (s - null) / (perfect - null)
