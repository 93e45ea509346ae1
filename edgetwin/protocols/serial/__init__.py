"""Serial sensor codecs: incremental, resynchronising parsers for line, NMEA and binary frames."""

from edgetwin.protocols.serial.binary import BinaryLayout, BinaryParser, LengthField
from edgetwin.protocols.serial.crc import (
    CRC_SIZE,
    CrcKind,
    crc,
    crc8_maxim_dow,
    crc8_sensirion,
    crc16_modbus,
)
from edgetwin.protocols.serial.frame import ErrorCounts, Frame, FrameParser
from edgetwin.protocols.serial.line import KeyValueFormat, LineParser, RegexFormat
from edgetwin.protocols.serial.nmea import NmeaParser, nmea_checksum, nmea_sentence

__all__ = [
    "CRC_SIZE",
    "BinaryLayout",
    "BinaryParser",
    "CrcKind",
    "ErrorCounts",
    "Frame",
    "FrameParser",
    "KeyValueFormat",
    "LengthField",
    "LineParser",
    "NmeaParser",
    "RegexFormat",
    "crc",
    "crc8_maxim_dow",
    "crc8_sensirion",
    "crc16_modbus",
    "nmea_checksum",
    "nmea_sentence",
]
