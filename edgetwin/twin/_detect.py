"""Detection steps every model kernel shares: the CUSUM update and the alarm state machine.

Scores are normalised so that 1.0 is the alarm threshold. ALARM is raised after ``alarm_on``
consecutive scores >= 1 and clears after ``alarm_off`` consecutive scores < ``CLEAR_LEVEL``;
outside ALARM the state is WARNING when the score is >= ``WARN_LEVEL``, else NORMAL.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from edgetwin.core.types import Alarm

NORMAL = int(Alarm.NORMAL)
WARNING = int(Alarm.WARNING)
ALARMED = int(Alarm.ALARM)
WARN_LEVEL = 0.5
CLEAR_LEVEL = 0.8
MAX_ABS = 1e100  # larger values are unusable: their squares would approach overflow

# Where the level and lag kernels find the detection parameters, at the head of their packed
# float64 parameter array (``_validate.pack_params``); the model's own follow.
PARAM_COMMISSIONING = 0
PARAM_THRESHOLD = 1
PARAM_CUSUM_K = 2
PARAM_CUSUM_H = 3
PARAM_ALARM_ON = 4
PARAM_ALARM_OFF = 5
N_DETECT_PARAMS = 6


@numba.njit(cache=True, nogil=True, inline="always")
def cusum(c: float, u: float, k: float, h: float) -> float:
    """One capped CUSUM step: ``min(h, max(0, c + u - k))``."""
    return min(max(0.0, c + u - k), h)


@numba.njit(cache=True, nogil=True, inline="always")
def alarm_step(  # noqa: PLR0917 - numba takes no keyword-only arguments
    ist: npt.NDArray[np.int64],
    alarm_row: int,
    streak_row: int,
    i: int,
    score: float,
    alarm_on: int,
    alarm_off: int,
) -> bool:
    """Advance point ``i``'s alarm state with ``score``; True when an ALARM just cleared."""
    if ist[alarm_row, i] == ALARMED:
        ist[streak_row, i] = ist[streak_row, i] + 1 if score < CLEAR_LEVEL else 0
        if ist[streak_row, i] >= alarm_off:
            ist[alarm_row, i] = WARNING if score >= WARN_LEVEL else NORMAL
            ist[streak_row, i] = 0
            return True
        return False
    ist[streak_row, i] = ist[streak_row, i] + 1 if score >= 1.0 else 0
    if ist[streak_row, i] >= alarm_on:
        ist[alarm_row, i] = ALARMED
        ist[streak_row, i] = 0
    else:
        ist[alarm_row, i] = WARNING if score >= WARN_LEVEL else NORMAL
    return False
