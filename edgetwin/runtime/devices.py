"""Builds the links (one per bus) and the device drivers on them from the configuration."""

from __future__ import annotations

import inspect
from typing import Protocol

from edgetwin.config.i2c import I2cBusConfig, I2cDeviceConfig
from edgetwin.config.modbus import (
    ModbusDeviceConfig,
    ModbusRtuBusConfig,
    ModbusRtuTcpBusConfig,
    ModbusTcpBusConfig,
)
from edgetwin.config.schema import BusConfig, DeviceConfig
from edgetwin.config.serial import SerialBusConfig, SerialDeviceConfig
from edgetwin.drivers.base import Device
from edgetwin.drivers.i2c import make_chip
from edgetwin.drivers.modbus import ModbusDevice
from edgetwin.drivers.serial_sensor import SerialSensor
from edgetwin.errors import FatalError
from edgetwin.transports.i2c import I2cBus
from edgetwin.transports.modbus_serial import ModbusRtuLink, ModbusRtuTcpLink
from edgetwin.transports.modbus_tcp import ModbusLink, ModbusTcpLink


class Link(Protocol):
    """A bus connection the gateway closes at shutdown."""

    def close(self) -> None:
        """Release the port or socket."""
        ...


class SerialLine:
    """A serial sensor's bus: the driver opens and owns the port itself (one sensor a port)."""

    def __init__(self, cfg: SerialBusConfig) -> None:
        self.cfg = cfg

    def close(self) -> None:
        """Nothing to release here: the sensor's close() releases its port."""


async def call_optional(obj: object, method: str) -> None:
    """Call ``obj.method()`` if the driver has it (start/close), awaiting it if async."""
    fn = getattr(obj, method, None)
    if fn is not None:
        result = fn()
        if inspect.isawaitable(result):
            await result


def open_link(bus: BusConfig) -> Link:
    """The transport for one bus (nothing is opened until the first transaction)."""
    if isinstance(bus, ModbusTcpBusConfig):
        return ModbusTcpLink(bus.host, bus.port, timeout=bus.timeout)
    if isinstance(bus, ModbusRtuBusConfig):
        return ModbusRtuLink(
            bus.port,
            baudrate=bus.baudrate,
            bytesize=bus.bytesize,
            parity=bus.parity,
            stopbits=bus.stopbits,
            timeout=bus.timeout,
        )
    if isinstance(bus, ModbusRtuTcpBusConfig):
        return ModbusRtuTcpLink(bus.host, bus.port, timeout=bus.timeout)
    if isinstance(bus, SerialBusConfig):
        return SerialLine(bus)
    if isinstance(bus, I2cBusConfig):
        return I2cBus.from_config(bus)
    raise FatalError(f"bus {bus.name!r}: kind {bus.kind!r} is not supported")


def make_device(dev: DeviceConfig, link: Link) -> Device:
    """The driver for one device on its bus's link."""
    if isinstance(dev, ModbusDeviceConfig) and isinstance(link, ModbusLink):
        return ModbusDevice(dev, link)
    if isinstance(dev, SerialDeviceConfig) and isinstance(link, SerialLine):
        return SerialSensor(dev, link.cfg)
    if isinstance(dev, I2cDeviceConfig) and isinstance(link, I2cBus):
        return make_chip(dev, link)
    raise FatalError(f"device {dev.name!r}: driver {dev.driver!r} does not fit its bus")
