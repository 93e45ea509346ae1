"""Binary frames: start marker, header (with an optional length field), payload, CRC, end.

Layout on the wire, offsets from the first byte of the start marker::

    start | header (header_size bytes, may hold the length) | payload | CRC | end

The payload is a list of ``(name, struct format char)`` fields read in order with the
layout's byte order; ``x`` is a pad byte. Without a length field the payload is exactly the
fields; with one, the payload is ``value + adjust`` bytes and must hold at least the fields.
The CRC covers ``crc_from`` up to the CRC itself.

Resynchronisation: the parser looks for the start marker; a candidate whose length field is
out of bounds is overlong; a complete candidate whose end marker or CRC fails is partial if
another start marker begins inside it (a frame cut short by the next one: parsing resumes
there), else a bad checksum (parsing resumes after it). With a CRC-16, while a candidate is
incomplete, a complete, valid frame starting at a later marker ends it as partial (parsing
resumes at the next marker), so a false start in noise with a large length field does not
hold back the frames behind it. A CRC-8 or no CRC is too weak evidence for that (a marker
inside a real payload would pass one time in 256, or always): such a false start is
resolved once its claimed length has arrived.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from edgetwin.protocols.serial.crc import CRC_SIZE, CrcKind, crc
from edgetwin.protocols.serial.frame import ErrorCounts, Frame

StructChar = Literal["b", "B", "h", "H", "i", "I", "q", "Q", "e", "f", "d", "?", "x"]
Endian = Literal["big", "little"]
_PREFIX = {"big": ">", "little": "<"}


@dataclass(frozen=True)
class LengthField:
    """Where the payload length is: offset from the frame start, size, byte order, adjust."""

    offset: int
    size: Literal[1, 2] = 1
    endian: Endian = "big"
    adjust: int = 0  # payload bytes = value + adjust (e.g. -2 if the value counts the CRC)


@dataclass(frozen=True)
class BinaryLayout:
    """How one device's binary frames are laid out."""

    start: bytes
    fields: tuple[tuple[str, StructChar], ...]
    header_size: int = 0
    length: LengthField | None = None
    byte_order: Endian = "big"
    crc: CrcKind | None = "crc16_modbus"
    crc_from: int = 0
    crc_order: Endian = "little"
    end: bytes = b""
    _struct: struct.Struct = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.start:
            raise ValueError("the start marker must not be empty")
        fmt = _PREFIX[self.byte_order] + "".join(c for _, c in self.fields)
        object.__setattr__(self, "_struct", struct.Struct(fmt))
        head = len(self.start) + self.header_size
        if self.length is not None and not (
            len(self.start) <= self.length.offset <= head - self.length.size
        ):
            raise ValueError("the length field must lie in the header, after the start marker")
        if self.crc is not None and not 0 <= self.crc_from <= head:
            raise ValueError("the CRC must cover from a byte before the payload")

    @property
    def names(self) -> tuple[str, ...]:
        """The value fields (pads excluded)."""
        return tuple(n for n, c in self.fields if c != "x")

    @property
    def payload_size(self) -> int:
        """Bytes the fields occupy."""
        return self._struct.size

    @property
    def crc_size(self) -> int:
        """Bytes of the CRC (0 without one)."""
        return 0 if self.crc is None else CRC_SIZE[self.crc]

    @property
    def min_frame(self) -> int:
        """Bytes of the shortest valid frame."""
        head = len(self.start) + self.header_size
        return head + self.payload_size + self.crc_size + len(self.end)

    def decode_payload(self, payload: bytes) -> dict[str, float]:
        """The field values of a payload; ValueError if it is too short."""
        if len(payload) < self.payload_size:
            raise ValueError(f"payload of {len(payload)} bytes, fields need {self.payload_size}")
        raw = self._struct.unpack_from(payload)
        names = self.names
        return {name: float(v) for name, v in zip(names, raw, strict=True)}

    def encode(
        self, values: Mapping[str, float], header: bytes = b"", *, extra: bytes = b""
    ) -> bytes:
        """A whole frame carrying ``values`` (ints for integer fields), e.g. for a device stub.

        ``header`` fills the header (its length field is overwritten); ``extra`` is appended
        to the payload (only meaningful with a length field).
        """
        if len(header) != self.header_size:
            header = header.ljust(self.header_size, b"\0")[: self.header_size]
        args = [(values[n] if c in "efd" else int(values[n])) for n, c in self.fields if c != "x"]
        payload = self._struct.pack(*args) + extra
        frame = bytearray(self.start + header)
        if self.length is not None:
            lf = self.length
            size = len(payload) - lf.adjust
            frame[lf.offset : lf.offset + lf.size] = size.to_bytes(lf.size, lf.endian)
        frame += payload
        if self.crc is not None:
            frame += crc(self.crc, bytes(frame[self.crc_from :])).to_bytes(
                self.crc_size, self.crc_order
            )
        return bytes(frame + self.end)


class BinaryParser:
    """Incremental parser for one binary layout."""

    def __init__(self, layout: BinaryLayout, *, max_frame: int = 256) -> None:
        self.layout = layout
        self.max_frame = max_frame
        self.counts = ErrorCounts()
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data``; return the frames it completed."""
        self._buf += data
        out: list[Frame] = []
        buf, start = self._buf, self.layout.start
        pos = 0
        while True:
            at = buf.find(start, pos)
            if at < 0:
                keep = self._marker_prefix(pos)
                self.counts.garbage_bytes += len(buf) - keep - pos
                pos = len(buf) - keep
                break
            self.counts.garbage_bytes += at - pos
            pos = at
            size, status = self._check(pos)
            if status == "ok":
                out.append(self._frame(pos, size))
                pos += size
            elif status == "overlong":
                self.counts.overlong += 1
                pos += 1
            elif status == "bad":
                inner = self._next_start(pos + 1, pos + size)
                if inner is None:
                    break  # a start marker may straddle the end of the buffer: wait
                if inner < pos + size:
                    self.counts.partial += 1
                else:
                    self.counts.bad_checksum += 1
                pos = inner
            else:  # incomplete
                if self.layout.crc_size < 2 or self._later_valid(pos + 1) is None:
                    break
                # Resume at the next marker, as if the candidate had failed its CRC.
                self.counts.partial += 1
                pos = buf.find(start, pos + 1)
        del buf[:pos]
        return out

    def reset(self) -> None:
        """Drop a frame in progress (partial) and any marker prefix (garbage)."""
        if self._buf.startswith(self.layout.start):
            self.counts.partial += 1
        else:
            self.counts.garbage_bytes += len(self._buf)
        self._buf.clear()

    # -- helpers ------------------------------------------------------------------------

    def _marker_prefix(self, pos: int) -> int:
        """Length of the longest tail of the buffer (after pos) that begins the marker."""
        start, buf = self.layout.start, self._buf
        for k in range(min(len(start) - 1, len(buf) - pos), 0, -1):
            if buf.endswith(start[:k]):
                return k
        return 0

    def _next_start(self, lo: int, end: int) -> int | None:
        """First marker starting in [lo, end), else ``end``; None if one may straddle the
        buffer's end (its first bytes are the buffer's last ones)."""
        start, buf = self.layout.start, self._buf
        at = buf.find(start, lo, end + len(start) - 1)
        if at >= 0 and at < end:
            return at
        tail = len(buf) - end
        if tail < len(start) - 1:
            for q in range(max(lo, end - (len(start) - 1)), end):
                if start.startswith(bytes(buf[q:])):
                    return None
        return end

    def _check(self, pos: int) -> tuple[int, str]:
        """(frame size, "ok" | "bad" | "overlong" | "incomplete") for a candidate at pos."""
        lay, buf = self.layout, self._buf
        head = len(lay.start) + lay.header_size
        if len(buf) - pos < head:
            return 0, "incomplete"
        payload = lay.payload_size
        if lay.length is not None:
            lf = lay.length
            raw = bytes(buf[pos + lf.offset : pos + lf.offset + lf.size])
            payload = int.from_bytes(raw, lf.endian) + lf.adjust
        size = head + payload + lay.crc_size + len(lay.end)
        if payload < 0 or size > self.max_frame:
            return 0, "overlong"
        if len(buf) - pos < size:
            return size, "incomplete"
        return size, "ok" if self._valid(pos, size) else "bad"

    def _valid(self, pos: int, size: int) -> bool:
        lay, buf = self.layout, self._buf
        if lay.end and buf[pos + size - len(lay.end) : pos + size] != lay.end:
            return False
        if lay.crc is None:
            return True
        at = pos + size - len(lay.end) - lay.crc_size
        given = int.from_bytes(buf[at : at + lay.crc_size], lay.crc_order)
        return given == crc(lay.crc, bytes(buf[pos + lay.crc_from : at]))

    def _later_valid(self, lo: int) -> int | None:
        """Position of the first later marker with a complete, valid frame, if any."""
        start, buf = self.layout.start, self._buf
        at = buf.find(start, lo)
        while at >= 0:
            if self._check(at)[1] == "ok":
                return at
            at = buf.find(start, at + 1)
        return None

    def _frame(self, pos: int, size: int) -> Frame:
        lay = self.layout
        raw = bytes(self._buf[pos : pos + size])
        head = len(lay.start) + lay.header_size
        payload = raw[head : size - lay.crc_size - len(lay.end)]
        self.counts.frames += 1
        try:
            values = lay.decode_payload(payload)
        except ValueError:
            self.counts.bad_field += len(lay.names)
            return Frame({}, frozenset(lay.names), raw=raw)
        return Frame(values, raw=raw)
