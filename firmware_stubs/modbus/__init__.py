"""Modbus devices served with pymodbus' SimDevice server API."""

from firmware_stubs.modbus.pump import PumpDevice, PumpServer

__all__ = ["PumpDevice", "PumpServer"]
