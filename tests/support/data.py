"""Where the shared, third-party data sets (SKAB, NAB) are: never copied into the repository."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shared_data(name: str) -> Path:
    """``$EDGETWIN_SHARED_DATA/name``, else ``../shared/data/name`` beside the checkout."""
    base = os.environ.get("EDGETWIN_SHARED_DATA")
    return (Path(base) if base else ROOT.parent / "shared" / "data") / name
