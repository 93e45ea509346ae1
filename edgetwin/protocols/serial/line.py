"""Line-oriented ASCII sensors: one message per line, read by a regex or as key=value pairs.

A line is everything up to the terminator, with stray CR/LF stripped from both ends (so a
device sending CRLF works with terminator "\\n"); empty lines are skipped. A line longer than
``max_frame`` bytes is counted overlong and dropped up to the next terminator.

Regex format: the pattern must match the whole line; each named group is a field. A line
that does not match (noise, or a line cut short) counts its bytes as garbage.

Key=value format: the line is split into pairs; ``keys`` lists every key a complete line
carries. A line in which no pair has a listed key is garbage; one with a malformed pair, an
unlisted or repeated key, or a listed key missing is partial (cut short, or two lines run
together) and none of its values are used, since the last of them may be truncated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgetwin.protocols.serial.frame import ErrorCounts, Frame, parse_number

_CRLF = "\r\n"


@dataclass(frozen=True)
class RegexFormat:
    """Lines matched by a regex whose named groups are the fields."""

    pattern: re.Pattern[str]

    @property
    def fields(self) -> tuple[str, ...]:
        """The named groups."""
        return tuple(self.pattern.groupindex)


@dataclass(frozen=True)
class KeyValueFormat:
    """Lines of ``key=value`` pairs separated by ``pair_separator``; whitespace splits on runs."""

    keys: tuple[str, ...]
    pair_separator: str = ";"
    key_separator: str = "="

    @property
    def fields(self) -> tuple[str, ...]:
        """The keys a complete line carries."""
        return self.keys


class LineParser:
    """Incremental parser for a line protocol."""

    def __init__(
        self,
        fmt: RegexFormat | KeyValueFormat,
        *,
        terminator: bytes = b"\n",
        encoding: str = "ascii",
        max_frame: int = 256,
    ) -> None:
        if not terminator:
            raise ValueError("terminator must not be empty")
        self.fmt = fmt
        self.terminator = terminator
        self.encoding = encoding
        self.max_frame = max_frame
        self.counts = ErrorCounts()
        self._buf = bytearray()
        self._skipping = False  # inside an overlong line, dropping up to the next terminator

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data``; return the frames of the lines it completed."""
        self._buf += data
        term, keep = self.terminator, len(self.terminator) - 1
        out: list[Frame] = []
        while True:
            end = self._buf.find(term)
            if self._skipping:
                if end < 0:
                    del self._buf[: max(0, len(self._buf) - keep)]
                    break
                del self._buf[: end + len(term)]
                self._skipping = False
                continue
            if end < 0:
                # Without a terminator the line is at least this long (a terminator may be
                # starting in the last ``keep`` bytes).
                if len(self._buf) - keep > self.max_frame:
                    self.counts.overlong += 1
                    self._skipping = True
                    continue
                break
            line = bytes(self._buf[:end])
            del self._buf[: end + len(term)]
            if len(line) > self.max_frame:
                self.counts.overlong += 1
                continue
            frame = self._line(line)
            if frame is not None:
                out.append(frame)
        return out

    def reset(self) -> None:
        """Drop a line in progress (counted as partial)."""
        if self._buf.strip(b"\r\n") and not self._skipping:
            self.counts.partial += 1
        self._buf.clear()
        self._skipping = False

    def _line(self, raw: bytes) -> Frame | None:
        skipped = len(raw) + len(self.terminator)
        try:
            text = raw.decode(self.encoding).strip(_CRLF)
        except UnicodeDecodeError:
            self.counts.garbage_bytes += skipped
            return None
        if not text:
            return None
        if isinstance(self.fmt, RegexFormat):
            match = self.fmt.pattern.fullmatch(text)
            if match is None:
                self.counts.garbage_bytes += skipped
                return None
            texts = {k: v for k, v in match.groupdict().items() if v is not None}
        else:
            pairs = self._pairs(text, skipped)
            if pairs is None:
                return None
            texts = pairs
        values: dict[str, float] = {}
        bad: set[str] = set()
        for name, value in texts.items():
            if not value.strip():
                continue
            try:
                values[name] = parse_number(value)
            except ValueError:
                bad.add(name)
        self.counts.bad_field += len(bad)
        self.counts.frames += 1
        return Frame(values, frozenset(bad), raw=raw)

    def _pairs(self, text: str, skipped: int) -> dict[str, str] | None:
        assert isinstance(self.fmt, KeyValueFormat)
        fmt = self.fmt
        items = text.split() if not fmt.pair_separator.strip() else text.split(fmt.pair_separator)
        known = set(fmt.keys)
        pairs: dict[str, str] = {}
        malformed = False
        for item in items:
            if not item.strip():
                continue
            key, sep, value = item.partition(fmt.key_separator)
            key = key.strip()
            if not sep or fmt.key_separator in value or key not in known or key in pairs:
                malformed = True
                continue
            pairs[key] = value
        if not pairs:
            self.counts.garbage_bytes += skipped
            return None
        if malformed or len(pairs) != len(known):
            self.counts.partial += 1
            return None
        return pairs
