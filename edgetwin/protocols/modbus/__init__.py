"""Modbus register codecs and request planning."""
