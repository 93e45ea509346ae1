"""NMEA 0183 sentences: framing, checksum and the fields of GGA, RMC, VTG, XDR and MWV.

A sentence runs from ``$`` to CR or LF and ends in ``*hh``, the XOR of the bytes between
``$`` and ``*``. Fields are named ``TYPE.field`` whatever the talker (``GPGGA`` and ``GNGGA``
both give ``GGA.altitude``). Latitudes and longitudes are signed decimal degrees (north and
east positive), times are seconds since midnight UTC, flags are 1.0 or 0.0, and an empty
field (the device has no value) is left out rather than counted as an error. XDR carries
``(type, value, unit, name)`` quadruples; each named transducer is a field ``XDR.<name>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal, get_args

from edgetwin.protocols.serial.frame import ErrorCounts, Frame, parse_number

SentenceType = Literal["GGA", "RMC", "VTG", "XDR", "MWV"]
SENTENCE_TYPES: tuple[str, ...] = get_args(SentenceType)

# A field decoder gets the data fields (after the address); None means "no value sent".
Decoder = Callable[[list[str]], float | None]

_KNOT = 1852.0 / 3600.0
_SPEED_UNITS = {"K": 1 / 3.6, "M": 1.0, "N": _KNOT, "S": 0.44704}


def _at(fields: list[str], i: int) -> str:
    return fields[i].strip() if i < len(fields) else ""


def _num(i: int) -> Decoder:
    def decode(fields: list[str]) -> float | None:
        text = _at(fields, i)
        return parse_number(text) if text else None

    return decode


def _angle(i: int, positive: str, negative: str, max_degrees: int) -> Decoder:
    """(d)ddmm.mmmm plus hemisphere → signed decimal degrees."""

    def decode(fields: list[str]) -> float | None:
        text, hemi = _at(fields, i), _at(fields, i + 1)
        if not text:
            return None
        dot = text.find(".")
        split = (dot if dot >= 0 else len(text)) - 2
        deg_text, min_text = text[:split], text[split:]
        if not deg_text.isdigit() or not min_text[:2].isdigit():
            raise ValueError(f"bad angle {text!r}")
        degrees, minutes = int(deg_text), parse_number(min_text)
        if not 0 <= minutes < 60 or degrees > max_degrees or hemi not in {positive, negative}:
            raise ValueError(f"bad angle {text!r} {hemi!r}")
        value = degrees + minutes / 60.0
        return value if hemi == positive else -value

    return decode


def _time(i: int) -> Decoder:
    """hhmmss(.sss) → seconds since midnight."""

    def decode(fields: list[str]) -> float | None:
        text = _at(fields, i)
        if not text:
            return None
        if len(text) < 6 or not text[:4].isdigit():
            raise ValueError(f"bad time {text!r}")
        hours, minutes, seconds = int(text[:2]), int(text[2:4]), parse_number(text[4:])
        if hours > 23 or minutes > 59 or not 0 <= seconds < 61:
            raise ValueError(f"bad time {text!r}")
        return hours * 3600.0 + minutes * 60.0 + seconds

    return decode


def _flag(i: int, true: str, false: str) -> Decoder:
    def decode(fields: list[str]) -> float | None:
        text = _at(fields, i)
        if not text:
            return None
        if text not in {true, false}:
            raise ValueError(f"bad flag {text!r}")
        return 1.0 if text == true else 0.0

    return decode


def _signed(i: int, positive: str, negative: str) -> Decoder:
    def decode(fields: list[str]) -> float | None:
        text, sign = _at(fields, i), _at(fields, i + 1)
        if not text:
            return None
        if sign not in {positive, negative}:
            raise ValueError(f"bad direction {sign!r}")
        value = parse_number(text)
        return value if sign == positive else -value

    return decode


def _speed_ms(i: int) -> Decoder:
    def decode(fields: list[str]) -> float | None:
        text, unit = _at(fields, i), _at(fields, i + 1)
        if not text:
            return None
        if unit not in _SPEED_UNITS:
            raise ValueError(f"bad speed unit {unit!r}")
        return parse_number(text) * _SPEED_UNITS[unit]

    return decode


#: Fixed-position fields of each sentence type (XDR's are named by the device).
SENTENCE_FIELDS: dict[str, dict[str, Decoder]] = {
    "GGA": {
        "time": _time(0),
        "latitude": _angle(1, "N", "S", 90),
        "longitude": _angle(3, "E", "W", 180),
        "fix_quality": _num(5),
        "satellites": _num(6),
        "hdop": _num(7),
        "altitude": _num(8),
        "geoid_separation": _num(10),
    },
    "RMC": {
        "time": _time(0),
        "valid": _flag(1, "A", "V"),
        "latitude": _angle(2, "N", "S", 90),
        "longitude": _angle(4, "E", "W", 180),
        "speed_knots": _num(6),
        "course": _num(7),
        "magnetic_variation": _signed(9, "E", "W"),
    },
    "VTG": {
        "course_true": _num(0),
        "course_magnetic": _num(2),
        "speed_knots": _num(4),
        "speed_kmh": _num(6),
    },
    "MWV": {
        "wind_angle": _num(0),
        "relative": _flag(1, "R", "T"),
        "wind_speed": _num(2),
        "wind_speed_ms": _speed_ms(2),
        "valid": _flag(4, "A", "V"),
    },
    "XDR": {},
}


def known_field(name: str, sentences: Iterable[str] = SENTENCE_TYPES) -> bool:
    """Whether ``TYPE.field`` is a field of one of ``sentences`` (any ``XDR.<name>``)."""
    kind, dot, field = name.partition(".")
    if not dot or kind not in set(sentences):
        return False
    if kind == "XDR":
        return bool(field) and all(c.isalnum() or c in "_-." for c in field)
    return field in SENTENCE_FIELDS.get(kind, {})


def field_names(sentences: Iterable[str] = SENTENCE_TYPES) -> list[str]:
    """Every fixed ``TYPE.field`` name of ``sentences``, plus ``XDR.<name>`` if XDR is on."""
    names = [f"{k}.{f}" for k in sentences for f in SENTENCE_FIELDS.get(k, {})]
    return [*names, "XDR.<name>"] if "XDR" in set(sentences) else names


def nmea_checksum(body: bytes) -> int:
    """XOR of the bytes between ``$`` and ``*``."""
    value = 0
    for b in body:
        value ^= b
    return value


def nmea_sentence(body: str) -> bytes:
    """``$body*hh\\r\\n`` for a body such as ``GPGGA,123519,...``."""
    raw = body.encode("ascii")
    return b"$" + raw + b"*%02X\r\n" % nmea_checksum(raw)


_OUT, _IN, _SKIP = 0, 1, 2


class NmeaParser:
    """Incremental NMEA 0183 parser that decodes the sentence types asked for."""

    def __init__(
        self,
        *,
        sentences: Iterable[str] = SENTENCE_TYPES,
        talkers: Iterable[str] | None = None,
        require_checksum: bool = True,
        max_frame: int = 82,
    ) -> None:
        self.sentences = frozenset(sentences)
        unknown = self.sentences - set(SENTENCE_TYPES)
        if unknown:
            raise ValueError(f"unsupported sentence types: {sorted(unknown)}")
        self.talkers = None if talkers is None else frozenset(talkers)
        self.require_checksum = require_checksum
        self.max_frame = max_frame
        self.counts = ErrorCounts()
        self._state = _OUT
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data``; return the sentences it completed, decoded."""
        out: list[Frame] = []
        i, n = 0, len(data)
        while i < n:
            if self._state != _IN:
                dollar = data.find(b"$", i)
                stop = n if dollar < 0 else dollar
                seg = data[i:stop]
                if self._state == _SKIP:
                    # The rest of an overlong sentence, up to its CR/LF, is not garbage.
                    ends = [k for k in (seg.find(b"\r"), seg.find(b"\n")) if k >= 0]
                    if ends:
                        self._state = _OUT
                        i += min(ends)
                        continue
                else:
                    self.counts.garbage_bytes += len(seg) - seg.count(b"\r") - seg.count(b"\n")
                if dollar < 0:
                    break
                self._start()
                i = dollar + 1
                continue
            stop = min(
                (k for k in (data.find(c, i) for c in (b"$", b"\r", b"\n")) if k >= 0), default=n
            )
            self._buf += data[i:stop]
            i = stop
            if len(self._buf) > self.max_frame:
                self.counts.overlong += 1
                self._buf.clear()
                self._state = _SKIP
                continue
            if stop == n:
                break
            if data[stop] == ord("$"):
                self.counts.partial += 1
                self._start()
            else:
                self._state = _OUT
                frame = self._sentence(bytes(self._buf))
                if frame is not None:
                    out.append(frame)
            i = stop + 1
        return out

    def reset(self) -> None:
        """Drop a sentence in progress (counted as partial)."""
        if self._state == _IN:
            self.counts.partial += 1
        self._state = _OUT
        self._buf.clear()

    def _start(self) -> None:
        self._state = _IN
        self._buf = bytearray(b"$")

    def _sentence(self, raw: bytes) -> Frame | None:
        body = raw[1:]
        star = body.rfind(b"*")
        if star >= 0:
            given, body = body[star + 1 :], body[:star]
            try:
                ok = len(given) == 2 and int(given, 16) == nmea_checksum(body)
            except ValueError:
                ok = False
            if not ok:
                self.counts.bad_checksum += 1
                return None
        elif self.require_checksum:
            self.counts.bad_checksum += 1
            return None
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError:
            self.counts.garbage_bytes += len(raw)
            return None
        address, *fields = text.split(",")
        talker, kind = address[:2], address[2:]
        wanted = kind in self.sentences and (self.talkers is None or talker in self.talkers)
        if len(address) != 5 or not address.isalnum() or not wanted:
            self.counts.ignored += 1
            return None
        values: dict[str, float] = {}
        bad: set[str] = set()
        if kind == "XDR":
            for j in range(0, len(fields) - 3, 4):
                name = fields[j + 3].strip()
                if name and known_field(f"XDR.{name}"):
                    self._decode(f"XDR.{name}", _num(j + 1), fields, values, bad)
        else:
            for field, decoder in SENTENCE_FIELDS[kind].items():
                self._decode(f"{kind}.{field}", decoder, fields, values, bad)
        self.counts.bad_field += len(bad)
        self.counts.frames += 1
        return Frame(values, frozenset(bad), tag=address, raw=raw)

    @staticmethod
    def _decode(
        name: str, decoder: Decoder, fields: list[str], values: dict[str, float], bad: set[str]
    ) -> None:
        try:
            value = decoder(fields)
        except ValueError:
            bad.add(name)
            return
        if value is not None:
            values[name] = value
