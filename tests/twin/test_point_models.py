"""What the three point models share: the alarm and noise_floor arguments."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from edgetwin.twin import LagEstimator, LevelEstimator, TrendEstimator

MODELS = [LevelEstimator, TrendEstimator, LagEstimator]
Model = type[LevelEstimator] | type[TrendEstimator] | type[LagEstimator]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_points": 0},
        {"n_points": 2.0},
        {"n_points": True},
        {"threshold": 0.0},
        {"threshold": math.nan},
        {"threshold": "10"},
        {"cusum_k": -0.1},
        {"cusum_h": math.inf},
        {"cusum_h": 0.0},
        {"alarm_on": 0},
        {"alarm_off": 1.5},
    ],
)
def test_invalid_alarm_arguments_raise(model: Model, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        model(**{"n_points": 3, **kwargs})


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "floor",
    [
        np.zeros(4),
        np.zeros((3, 1)),
        0.5,
        [0.1, -0.1, 0.0],
        [0.1, math.nan, 0.0],
        [0.1, math.inf, 0.0],
        [0.1, 2e100, 0.0],
        ["0.1", "0", "0"],
        np.zeros(3, np.bool_),
        np.zeros(3, np.complex128),
    ],
)
def test_invalid_noise_floor_raises(model: Model, floor: Any) -> None:
    with pytest.raises(ValueError, match="noise_floor"):
        model(3, noise_floor=floor)


@pytest.mark.parametrize("model", MODELS)
def test_noise_floor_is_copied_and_converted(model: Model) -> None:
    floors = np.array([1, 0, 2], dtype=np.int32)
    est = model(3, noise_floor=floors)
    floors[0] = 7
    got = est.noise_floor
    got[1] = 9.0
    np.testing.assert_array_equal(est.noise_floor, [1.0, 0.0, 2.0])
    assert est.noise_floor.dtype == np.float64
    np.testing.assert_array_equal(model(2).noise_floor, [0.0, 0.0])


@pytest.mark.parametrize("model", MODELS)
def test_calibrated_turns_true_per_point_when_its_commissioning_ends(model: Model) -> None:
    n, commissioning = 3, 6
    est = model(n, commissioning=commissioning)
    rng = np.random.default_rng(3)
    quality = np.array([0, 0, 1], dtype=np.uint16)  # the last point never has a good sample
    seen = []
    for _ in range(commissioning + 4):
        values = rng.normal(size=n)
        if isinstance(est, LagEstimator):
            est.update(values, rng.normal(size=n), quality, np.zeros(n, np.uint16))
        else:
            est.update(values, quality)
        seen.append(est.calibrated.copy())
    assert seen[0].dtype == np.bool_
    assert not seen[0].any()
    assert seen[-1].tolist() == [True, True, False]
