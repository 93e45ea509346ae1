"""Serial sensor buses and devices: the config fragment of the serial sensor driver.

A serial device names its protocol in a ``protocol`` table, chosen by ``kind``: ``line``
(ASCII lines read by a regex or as key=value pairs), ``nmea`` (NMEA 0183 sentences) or
``binary`` (framed binary records with a CRC). Each point's ``field`` must be one of the
fields the protocol defines. With ``poll`` (or ``poll_hex``) the driver sends that request
every interval and reads the answer; without, the device is free-running.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edgetwin.config.common import DeviceBase, Model, Name, PointBase
from edgetwin.protocols.serial.binary import BinaryLayout, LengthField, StructChar
from edgetwin.protocols.serial.crc import CrcKind
from edgetwin.protocols.serial.line import KeyValueFormat, RegexFormat
from edgetwin.protocols.serial.nmea import SentenceType, field_names, known_field

FieldName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
KeyName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.+-]{1,64}$")]
Endian = Literal["big", "little"]


def _hex_bytes(text: str) -> bytes:
    """Bytes written as hex digits: ``"AA55"``, ``"AA 55"`` or ``"0xAA55"``."""
    digits = text.strip()
    digits = digits[2:] if digits[:2].lower() == "0x" else digits
    try:
        value = bytes.fromhex(digits)
    except ValueError:
        value = b""
    if not value:
        raise ValueError(
            f"{text!r} is not a hex byte string: write bytes as pairs of hex digits, "
            "e.g. 'AA55' or 'AA 55'"
        )
    return value


def _all_sentences() -> list[SentenceType]:
    return ["GGA", "RMC", "VTG", "XDR", "MWV"]


def _quoted(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(repr(n) for n in names) or "none"


class SerialBusConfig(Model):
    """A serial port (RS-232/RS-485/USB-serial) with one sensor on it."""

    kind: Literal["serial"]
    name: Name
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...")
    baudrate: int = Field(9600, ge=50, le=4_000_000)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: float = Field(1, description="1, 1.5 or 2")
    timeout: float = Field(1.0, gt=0, le=60)

    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, v: float) -> float:
        if v not in {1, 1.5, 2}:
            raise ValueError("must be 1, 1.5 or 2")
        return v


class LineProtocolConfig(Model):
    """ASCII lines: a regex with named groups, or key=value pairs (give exactly one)."""

    kind: Literal["line"]
    regex: str | None = Field(None, description="must match the whole line; groups are fields")
    keys: list[KeyName] | None = Field(None, min_length=1, description="keys of a full line")
    pair_separator: str = Field(";", min_length=1, description="between pairs; ' ' = blanks")
    key_separator: str = Field("=", min_length=1)
    encoding: Literal["ascii", "utf-8", "latin-1"] = "ascii"
    terminator: str = Field("\n", min_length=1, max_length=4, description="ends each line")

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            pattern = re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid regex: {exc}") from None
        if not pattern.groupindex:
            raise ValueError("the regex has no named groups, e.g. (?P<temperature>[-0-9.]+)")
        return v

    @model_validator(mode="after")
    def _one_format(self) -> LineProtocolConfig:
        if (self.regex is None) == (self.keys is None):
            raise ValueError("give either 'regex' (named groups) or 'keys' (key=value pairs)")
        if self.keys is not None and len(set(self.keys)) != len(self.keys):
            raise ValueError("keys must not repeat")
        if self.key_separator in self.pair_separator or self.pair_separator in self.key_separator:
            raise ValueError("pair_separator and key_separator must differ")
        return self

    @property
    def format(self) -> RegexFormat | KeyValueFormat:
        """The line format for the codec."""
        if self.regex is not None:
            return RegexFormat(re.compile(self.regex))
        assert self.keys is not None
        return KeyValueFormat(tuple(self.keys), self.pair_separator, self.key_separator)

    def field_names(self) -> list[str]:
        """The field names lines carry."""
        return list(self.format.fields)

    def knows(self, field: str) -> bool:
        """Whether ``field`` is one of :meth:`field_names`."""
        return field in self.field_names()


class NmeaProtocolConfig(Model):
    """NMEA 0183 sentences; a point's field is ``TYPE.field``, e.g. ``GGA.altitude``."""

    kind: Literal["nmea"]
    sentences: list[SentenceType] = Field(default_factory=_all_sentences, min_length=1)
    talkers: list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]] | None = Field(
        None, description="accept only these talker ids (e.g. GP, GN); default: any"
    )
    require_checksum: bool = True

    def field_names(self) -> list[str]:
        """The field names of the enabled sentences."""
        return field_names(self.sentences)

    def knows(self, field: str) -> bool:
        """Whether ``field`` is a field of an enabled sentence."""
        return known_field(field, self.sentences)


class LengthConfig(Model):
    """The length field of a binary frame."""

    offset: int = Field(ge=0, le=255, description="from the first byte of the start marker")
    size: Literal[1, 2] = 1
    endian: Endian = "big"
    adjust: int = Field(0, ge=-255, le=255, description="payload bytes = value + adjust")


class CrcConfig(Model):
    """The CRC of a binary frame: it follows the payload and covers ``start`` up to itself."""

    kind: CrcKind
    start: int = Field(0, ge=0, le=255, description="first covered byte, from the frame start")
    byte_order: Endian = Field("little", description="of a CRC-16 (Modbus sends low first)")


class BinaryProtocolConfig(Model):
    """Binary frames: start marker, header, payload of typed fields, CRC, optional end."""

    kind: Literal["binary"]
    start: str = Field(description="start marker, hex, e.g. 'AA55'")
    header_size: int = Field(0, ge=0, le=64, description="bytes between marker and payload")
    length: LengthConfig | None = Field(None, description="absent: the fields' fixed size")
    fields: list[tuple[FieldName, StructChar]] = Field(min_length=1)
    byte_order: Endian = "big"
    crc: CrcConfig | None = None
    end: str | None = Field(None, description="end marker, hex")

    @field_validator("start", "end")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        return None if v is None else _hex_bytes(v).hex(" ").upper()

    @model_validator(mode="after")
    def _layout_ok(self) -> BinaryProtocolConfig:
        names = [n for n, c in self.fields if c != "x"]
        if not names:
            raise ValueError("fields has only pad bytes ('x'): nothing to read")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"field names repeat: {_quoted(dupes)}")
        marker = len(_hex_bytes(self.start))
        head = marker + self.header_size
        if self.length is not None:
            end = self.length.offset + self.length.size
            if self.length.offset < marker or end > head:
                raise ValueError(
                    f"the length field (bytes {self.length.offset}..{end - 1}) must lie in the "
                    f"header, bytes {marker}..{head - 1} (after the {marker}-byte start marker; "
                    "raise header_size?)"
                )
        if self.crc is not None and self.crc.start > head:
            raise ValueError(f"crc.start {self.crc.start} is past the payload start ({head})")
        return self

    @cached_property
    def layout(self) -> BinaryLayout:
        """The frame layout for the codec."""
        length = None
        if self.length is not None:
            lf = self.length
            length = LengthField(lf.offset, lf.size, lf.endian, lf.adjust)
        return BinaryLayout(
            start=_hex_bytes(self.start),
            fields=tuple(self.fields),
            header_size=self.header_size,
            length=length,
            byte_order=self.byte_order,
            crc=None if self.crc is None else self.crc.kind,
            crc_from=0 if self.crc is None else self.crc.start,
            crc_order="little" if self.crc is None else self.crc.byte_order,
            end=b"" if self.end is None else _hex_bytes(self.end),
        )

    def field_names(self) -> list[str]:
        """The value field names (pads excluded)."""
        return [n for n, c in self.fields if c != "x"]

    def knows(self, field: str) -> bool:
        """Whether ``field`` is a value field."""
        return field in self.field_names()


SerialProtocolConfig = Annotated[
    LineProtocolConfig | NmeaProtocolConfig | BinaryProtocolConfig, Field(discriminator="kind")
]


class SerialPointConfig(PointBase):
    """One value a serial sensor reports."""

    field: str = Field(description="the named group, key or frame field the value comes from")
    scale: float = 1.0
    offset: float = 0.0

    @model_validator(mode="after")
    def _scale(self) -> SerialPointConfig:
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self


class SerialDeviceConfig(DeviceBase):
    """A sensor that speaks a line, NMEA or binary-frame protocol on a serial bus."""

    driver: Literal["serial"]
    protocol: SerialProtocolConfig
    poll: str | None = Field(None, description="request text sent each interval; absent: free")
    poll_hex: str | None = Field(None, description="request as hex bytes, instead of poll")
    max_frame: int = Field(256, ge=8, le=65536, description="longest frame or line, bytes")
    points: list[SerialPointConfig] = Field(min_length=1)

    @field_validator("poll_hex")
    @classmethod
    def _poll_hex(cls, v: str | None) -> str | None:
        return None if v is None else _hex_bytes(v).hex(" ").upper()

    @model_validator(mode="after")
    def _consistent(self) -> SerialDeviceConfig:
        if self.poll is not None and self.poll_hex is not None:
            raise ValueError("give 'poll' (text) or 'poll_hex' (bytes), not both")
        if self.poll is not None:
            if not self.poll:
                raise ValueError("poll must not be empty (leave it out for a free-running device)")
            encoding = self.protocol.encoding if self.protocol.kind == "line" else "ascii"
            try:
                self.poll.encode(encoding)
            except UnicodeEncodeError:
                raise ValueError(f"poll {self.poll!r} cannot be sent as {encoding}") from None
        protocol = self.protocol
        for i, point in enumerate(self.points):
            if not protocol.knows(point.field):
                known = protocol.field_names()
                raise ValueError(
                    f"point {point.name!r} (points[{i}]): unknown field {point.field!r}; "
                    f"the {protocol.kind} protocol defines {_quoted(known)}"
                )
        if isinstance(protocol, BinaryProtocolConfig):
            shortest = protocol.layout.min_frame
            if shortest > self.max_frame:
                raise ValueError(
                    f"a frame is at least {shortest} bytes, more than max_frame ({self.max_frame})"
                )
        return self

    @property
    def poll_bytes(self) -> bytes | None:
        """The request sent each interval (None: the device is free-running)."""
        if self.poll_hex is not None:
            return _hex_bytes(self.poll_hex)
        if self.poll is None:
            return None
        encoding = self.protocol.encoding if self.protocol.kind == "line" else "ascii"
        return self.poll.encode(encoding)
