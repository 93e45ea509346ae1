"""Three simulated serial sensors: small seeded physics, and the bytes each one sends.

Every emission records the values a correct parser decodes from its bytes, exactly as sent
(rounded as printed, float32 as packed), so a test can compare what a driver reports with
what went over the wire.

- ``line``: a weather station printing ``T=21.4;H=45.2;P=1013.2\\r\\n`` (degC, %RH, hPa).
- ``nmea``: a GPS and wind sensor sending GPGGA, GPRMC, GPVTG, WIMWV and WIXDR sentences.
- ``binary``: a flow meter frame ``AA 55 | addr | len | flow f32 | total u32 | temp i16 |
  status u8 | CRC-16/MODBUS (low byte first)``, big-endian fields, temp in 0.01 degC.
"""

from __future__ import annotations

import math
import random
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

from edgetwin.protocols.serial.binary import BinaryLayout, LengthField
from edgetwin.protocols.serial.crc import crc16_modbus
from edgetwin.protocols.serial.nmea import nmea_checksum, nmea_sentence

Protocol = Literal["line", "nmea", "binary"]
PROTOCOLS: tuple[Protocol, ...] = ("line", "nmea", "binary")

#: Longer than the gateway's default max_frame (256), so the overlong fault is seen as such.
OVERLONG = 600


@dataclass(frozen=True)
class Emission:
    """Bytes to send and the values a correct parser gets from them (empty: none)."""

    data: bytes
    values: dict[str, float] = field(default_factory=dict)


def _noise(rng: random.Random, n: int, avoid: bytes) -> bytes:
    """n random bytes, none of them in ``avoid``."""
    allowed = [b for b in range(256) if b not in avoid]
    return bytes(rng.choice(allowed) for _ in range(n))


class SensorModel(ABC):
    """Physics plus encoding of one simulated sensor."""

    protocol: Protocol
    #: Bytes noise must not contain, so that noise never looks like the start of a frame.
    avoid: bytes = b""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.t = 0.0

    @abstractmethod
    def step(self, dt: float) -> None:
        """Advance the physics by dt seconds."""

    @abstractmethod
    def frame(self) -> Emission:
        """The intact frame (or burst of sentences) for the current state."""

    @abstractmethod
    def bad_value(self) -> Emission:
        """A frame, valid in form, with one field that does not parse."""

    @abstractmethod
    def overlong(self) -> Emission:
        """A frame longer than the gateway accepts."""

    def bad_checksum(self) -> Emission:
        """A frame whose checksum is wrong."""
        raise NotImplementedError(f"the {self.protocol} protocol has no checksum")

    def partial(self) -> Emission:
        """The first part of an intact frame, cut after its start and before its end."""
        data = self.frame().data
        lo, hi = self._cut_range(data)
        return Emission(data[: self.rng.randint(lo, hi)])

    def garbage(self, n: int) -> Emission:
        """n bytes of line noise."""
        return Emission(_noise(self.rng, n, self.avoid))

    def _cut_range(self, data: bytes) -> tuple[int, int]:
        return 1, len(data) - 3


# -- line: weather station --------------------------------------------------------------


class WeatherStation(SensorModel):
    """Air temperature, humidity and pressure as one key=value line."""

    protocol: Protocol = "line"
    avoid = b"\r\n=;"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.temperature = 21.0
        self.pressure = 1013.2

    def step(self, dt: float) -> None:
        """Mean-reverting temperature, random-walk pressure."""
        self.t += dt
        root = math.sqrt(max(dt, 0.0))
        self.temperature += -0.02 * (self.temperature - 21.0) * dt + 0.05 * root * self.rng.gauss()
        self.pressure += 0.02 * root * self.rng.gauss()

    def _values(self) -> dict[str, float]:
        t = self.temperature + self.rng.gauss(0, 0.05)
        h = min(100.0, max(0.0, 45.0 - 1.5 * (t - 21.0) + self.rng.gauss(0, 0.2)))
        return {"T": round(t, 1), "H": round(h, 1), "P": round(self.pressure, 1)}

    @staticmethod
    def _line(v: dict[str, str]) -> bytes:
        return f"T={v['T']};H={v['H']};P={v['P']}\r\n".encode("ascii")

    def frame(self) -> Emission:
        """``T=..;H=..;P=..`` with one decimal each."""
        values = self._values()
        return Emission(self._line({k: f"{x:.1f}" for k, x in values.items()}), values)

    def bad_value(self) -> Emission:
        """The humidity printed as ``4#.2``."""
        values = self._values()
        text = {k: f"{x:.1f}" for k, x in values.items()}
        text["H"] = text["H"][0] + "#" + text["H"][2:]
        del values["H"]
        return Emission(self._line(text), values)

    def overlong(self) -> Emission:
        """A line of OVERLONG characters."""
        return Emission(b"T=" + b"9" * OVERLONG + b"\r\n")

    def garbage(self, n: int) -> Emission:
        """Noise on a line of its own (noise glued to a line would only spoil that line)."""
        return Emission(_noise(self.rng, n, self.avoid) + b"\r\n")


# -- NMEA: GPS and wind ------------------------------------------------------------------


def _ddmm(value: float, degree_digits: int) -> tuple[str, float]:
    """Unsigned degrees → (d)ddmm.mmmm text and the degrees that text means."""
    degrees = int(value)
    minutes = round((value - degrees) * 60.0, 4)
    if minutes >= 60.0:
        degrees, minutes = degrees + 1, 0.0
    text = f"{degrees:0{degree_digits}d}{minutes:07.4f}"
    return text, degrees + float(f"{minutes:07.4f}") / 60.0


class GpsWind(SensorModel):
    """A boat's GPS (position, speed, course) and masthead wind and weather sensor."""

    protocol: Protocol = "nmea"
    avoid = b"$"
    _MAGVAR = 1.5  # degrees east

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.lat, self.lon = 48.1173, 11.5167
        self.speed = 5.0  # knots
        self.course = 45.0
        self.altitude = 545.4
        self.wind_angle, self.wind_speed = 30.0, 6.0  # degrees relative, m/s
        self.air_temp, self.baro = 15.0, 1.0132  # degC, bar
        self.clock0 = 12 * 3600.0

    def step(self, dt: float) -> None:
        """Sail on the current course; wind and weather wander."""
        self.t += dt
        root = math.sqrt(max(dt, 0.0))
        g = self.rng.gauss
        self.speed = max(0.0, self.speed + 0.1 * root * g() - 0.05 * (self.speed - 5.0) * dt)
        self.course = (self.course + 0.5 * root * g()) % 360.0
        nm = self.speed * dt / 3600.0
        self.lat += nm * math.cos(math.radians(self.course)) / 60.0
        self.lon += nm * math.sin(math.radians(self.course)) / (60.0 * math.cos(math.radians(48)))
        self.altitude += 0.1 * root * g()
        self.wind_angle = (self.wind_angle + 2.0 * root * g()) % 360.0
        self.wind_speed = max(0.0, self.wind_speed + 0.3 * root * g() - 0.1 * (self.wind_speed - 6))
        self.air_temp += 0.01 * root * g()
        self.baro += 0.00002 * root * g()

    def _sentences(self, *, bad_altitude: bool = False) -> tuple[list[str], dict[str, float]]:
        secs = (self.clock0 + self.t) % 86400.0
        hh, rest = divmod(secs, 3600.0)
        mm, ss = divmod(rest, 60.0)
        ss = math.floor(ss * 100) / 100
        time_text = f"{int(hh):02d}{int(mm):02d}{ss:05.2f}"
        time_value = int(hh) * 3600.0 + int(mm) * 60.0 + float(f"{ss:05.2f}")
        lat_text, lat = _ddmm(abs(self.lat), 2)
        lon_text, lon = _ddmm(abs(self.lon), 3)
        ns, ew = ("N" if self.lat >= 0 else "S"), ("E" if self.lon >= 0 else "W")
        lat, lon = (lat if ns == "N" else -lat), (lon if ew == "E" else -lon)
        sats = 8 + self.rng.randint(0, 3)
        hdop = round(0.9 + 0.1 * self.rng.random(), 1)
        alt = round(self.altitude + self.rng.gauss(0, 0.3), 1)
        knots = round(self.speed + self.rng.gauss(0, 0.05), 2)
        kmh = round(knots * 1.852, 2)
        course = round(self.course, 1)
        course_mag = round((course - self._MAGVAR) % 360.0, 1)
        angle = round(self.wind_angle, 1)
        wind = round(self.wind_speed + self.rng.gauss(0, 0.2), 1)
        air = round(self.air_temp, 1)
        baro = round(self.baro, 5)
        alt_text = f"{alt:.1f}"
        if bad_altitude:
            alt_text = alt_text[0] + "x" + alt_text[2:]
        sentences = [
            f"GPGGA,{time_text},{lat_text},{ns},{lon_text},{ew},1,{sats:02d},{hdop:.1f},"
            f"{alt_text},M,46.9,M,,",
            f"GPRMC,{time_text},A,{lat_text},{ns},{lon_text},{ew},{knots:.2f},{course:.1f},"
            f"230394,{self._MAGVAR:.1f},E",
            f"GPVTG,{course:.1f},T,{course_mag:.1f},M,{knots:.2f},N,{kmh:.2f},K",
            f"WIMWV,{angle:.1f},R,{wind:.1f},M,A",
            f"WIXDR,C,{air:.1f},C,AirTemp,P,{baro:.5f},B,Barometer",
        ]
        values = {
            "GGA.time": time_value,
            "GGA.latitude": lat,
            "GGA.longitude": lon,
            "GGA.fix_quality": 1.0,
            "GGA.satellites": float(sats),
            "GGA.hdop": hdop,
            "GGA.altitude": alt,
            "GGA.geoid_separation": 46.9,
            "RMC.time": time_value,
            "RMC.valid": 1.0,
            "RMC.latitude": lat,
            "RMC.longitude": lon,
            "RMC.speed_knots": knots,
            "RMC.course": course,
            "RMC.magnetic_variation": self._MAGVAR,
            "VTG.course_true": course,
            "VTG.course_magnetic": course_mag,
            "VTG.speed_knots": knots,
            "VTG.speed_kmh": kmh,
            "MWV.wind_angle": angle,
            "MWV.relative": 1.0,
            "MWV.wind_speed": wind,
            "MWV.wind_speed_ms": wind,
            "MWV.valid": 1.0,
            "XDR.AirTemp": air,
            "XDR.Barometer": baro,
        }
        if bad_altitude:
            del values["GGA.altitude"]
        return sentences, values

    def frame(self) -> Emission:
        """One burst: GGA, RMC, VTG, MWV and XDR."""
        sentences, values = self._sentences()
        return Emission(b"".join(nmea_sentence(s) for s in sentences), values)

    def bad_value(self) -> Emission:
        """A burst whose GGA altitude reads ``5x5.4`` (with a correct checksum)."""
        sentences, values = self._sentences(bad_altitude=True)
        return Emission(b"".join(nmea_sentence(s) for s in sentences), values)

    def bad_checksum(self) -> Emission:
        """A GGA sentence whose checksum is off by one bit."""
        body = self._sentences()[0][0].encode("ascii")
        return Emission(b"$" + body + b"*%02X\r\n" % (nmea_checksum(body) ^ 0x01))

    def overlong(self) -> Emission:
        """A GPTXT sentence of OVERLONG characters, with a correct checksum."""
        return Emission(nmea_sentence("GPTXT,01,01,02," + "X" * OVERLONG))

    def partial(self) -> Emission:
        """The first part of a GGA sentence."""
        data = nmea_sentence(self._sentences()[0][0])
        return Emission(data[: self.rng.randint(2, len(data) - 3)])


# -- binary: flow meter ------------------------------------------------------------------

FLOW_LAYOUT = BinaryLayout(
    start=b"\xaa\x55",
    header_size=2,
    length=LengthField(offset=3, size=1),
    fields=(("flow", "f"), ("total", "I"), ("temp", "h"), ("status", "B")),
    byte_order="big",
    crc="crc16_modbus",
    crc_from=0,
    crc_order="little",
)
FLOW_ADDRESS = 0x01
STATUS_MEASURING = 0x01


class FlowMeter(SensorModel):
    """Volumetric flow (m3/h, float32), totaliser (L, uint32), temperature (0.01 degC)."""

    protocol: Protocol = "binary"
    avoid = FLOW_LAYOUT.start[:1]

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.flow = 12.5
        self.total = 1000.0
        self.temperature = 18.0

    def step(self, dt: float) -> None:
        """Flow wanders around 12.5 m3/h; the totaliser integrates it."""
        self.t += dt
        root = math.sqrt(max(dt, 0.0))
        self.flow = max(
            0.0, self.flow - 0.1 * (self.flow - 12.5) * dt + 0.2 * root * self.rng.gauss()
        )
        self.total += self.flow * dt / 3.6  # m3/h -> L/s
        self.temperature += 0.01 * root * self.rng.gauss()

    def _values(self) -> dict[str, float]:
        flow = self.flow + self.rng.gauss(0, 0.05)
        (flow32,) = struct.unpack(">f", struct.pack(">f", flow))
        return {
            "flow": flow32,
            "total": float(int(self.total) & 0xFFFFFFFF),
            "temp": float(round(self.temperature * 100)),
            "status": float(STATUS_MEASURING),
        }

    def frame(self) -> Emission:
        """One frame of the current values."""
        values = self._values()
        return Emission(FLOW_LAYOUT.encode(values, bytes([FLOW_ADDRESS, 0])), values)

    def bad_value(self) -> Emission:
        """A frame with a valid CRC whose length leaves the payload 3 bytes short."""
        data = bytearray(FLOW_LAYOUT.encode(self._values(), bytes([FLOW_ADDRESS, 0])))
        short = FLOW_LAYOUT.payload_size - 3
        head = len(FLOW_LAYOUT.start) + FLOW_LAYOUT.header_size
        body = data[:head] + data[head : head + short]
        body[3] = short
        return Emission(self._with_crc(bytes(body)))

    def bad_checksum(self) -> Emission:
        """A frame whose CRC is off by one bit."""
        data = bytearray(self.frame().data)
        data[-1] ^= 0x01
        return Emission(bytes(data))

    def overlong(self) -> Emission:
        """A header announcing a 255-byte payload (more than max_frame allows), then noise."""
        head = FLOW_LAYOUT.start + bytes([FLOW_ADDRESS, 255])
        return Emission(head + _noise(self.rng, 8, self.avoid))

    def _cut_range(self, data: bytes) -> tuple[int, int]:
        head = len(FLOW_LAYOUT.start) + FLOW_LAYOUT.header_size
        return head + 1, len(data) - 1

    @staticmethod
    def _with_crc(body: bytes) -> bytes:
        return body + crc16_modbus(body).to_bytes(2, "little")


def make_sensor(protocol: Protocol, seed: int = 0) -> SensorModel:
    """The simulated sensor for a protocol."""
    if protocol == "line":
        return WeatherStation(seed)
    if protocol == "nmea":
        return GpsWind(seed)
    return FlowMeter(seed)
