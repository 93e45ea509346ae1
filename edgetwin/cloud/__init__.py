"""Subscriber side of the uplink: decode what gateways publish and mirror their twins."""

from __future__ import annotations

from edgetwin.cloud.mirror import Mirror, MirrorStats, PointUpdate, Seen, SeqWindow

__all__ = ["Mirror", "MirrorStats", "PointUpdate", "Seen", "SeqWindow"]
