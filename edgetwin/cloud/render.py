"""Text and JSON lines for point updates, as `edgetwin tail` prints them."""

from __future__ import annotations

import json
import math
import time

from edgetwin.cloud.mirror import PointUpdate


def update_dict(u: PointUpdate) -> dict[str, object]:
    """A JSON-ready dict of one update; a value that could not be read is null."""
    return {
        "gateway": u.gateway,
        "session": u.session,
        "seq": u.seq,
        "device": u.device,
        "point": u.point,
        "ts": u.ts,
        "value": None if math.isnan(u.value) else u.value,
        "estimate": u.estimate,
        "score": u.score,
        "alarm": u.alarm.name.lower(),
        "quality": int(u.quality),
        "unit": u.unit,
        "replay": u.replay,
    }


def update_json(u: PointUpdate) -> str:
    """One compact JSON object."""
    return json.dumps(update_dict(u), separators=(",", ":"), allow_nan=False)


def update_text(u: PointUpdate) -> str:
    """One human-readable line."""
    when = time.strftime("%H:%M:%S", time.localtime(u.ts)) + f".{int(u.ts % 1 * 1000):03d}"
    value = "n/a" if math.isnan(u.value) else f"{u.value:.6g}"
    unit = f" {u.unit}" if u.unit else ""
    quality = (
        "good"
        if not u.quality
        else "|".join(
            f.name.lower() for f in type(u.quality) if f.value and f in u.quality and f.name
        )
    )
    return (
        f"{when} {u.gateway} {u.device}/{u.point} value={value}{unit} est={u.estimate:.6g} "
        f"score={u.score:.2f} alarm={u.alarm.name.lower()} quality={quality} seq={u.seq}"
    )
