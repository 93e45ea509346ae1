"""Serial sensors on a pseudo-terminal: line, NMEA and binary-frame protocols."""

from firmware_stubs.serial.device import SentRecord, SerialStub
from firmware_stubs.serial.sensors import PROTOCOLS, FlowMeter, GpsWind, WeatherStation

__all__ = ["PROTOCOLS", "FlowMeter", "GpsWind", "SentRecord", "SerialStub", "WeatherStation"]
