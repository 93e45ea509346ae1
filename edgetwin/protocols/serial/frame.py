"""What every serial parser yields (frames) and counts (errors by kind)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Frame:
    """One valid message: parsed values by field name, and fields present but unparseable."""

    values: Mapping[str, float]
    bad: frozenset[str] = frozenset()
    tag: str = ""  # NMEA address (e.g. "GPGGA"); empty for line and binary frames
    raw: bytes = field(default=b"", repr=False)


@dataclass(slots=True)
class ErrorCounts:
    """Frames decoded and errors by kind since the parser was made.

    ``garbage_bytes`` counts bytes skipped outside any frame; ``partial`` frames cut short
    (a new frame started, the line was incomplete, or the stream was reset mid-frame);
    ``overlong`` frames longer than the maximum (or a binary length field out of bounds);
    ``bad_checksum`` frames whose CRC or NMEA checksum failed; ``bad_field`` values in
    otherwise valid frames that could not be parsed; ``ignored`` valid frames of a kind not
    asked for (other NMEA sentences or talkers).
    """

    frames: int = 0
    garbage_bytes: int = 0
    partial: int = 0
    overlong: int = 0
    bad_checksum: int = 0
    bad_field: int = 0
    ignored: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return asdict(self)

    @property
    def errors(self) -> int:
        """Sum of the error counters (everything but frames and ignored)."""
        return (
            self.garbage_bytes + self.partial + self.overlong + self.bad_checksum + self.bad_field
        )


class FrameParser(Protocol):
    """An incremental parser: feed it any chunks of a byte stream, get the frames completed."""

    counts: ErrorCounts

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data``; return the frames it completed, in stream order. Never raises."""
        ...

    def reset(self) -> None:
        """Drop a frame in progress (counted as partial): the stream was interrupted."""
        ...


def parse_number(text: str) -> float:
    """A decimal number as devices print it; ValueError for anything else."""
    text = text.strip()
    if not text or "_" in text:  # float() would take "1_000"
        raise ValueError(f"not a number: {text!r}")
    return float(text)
