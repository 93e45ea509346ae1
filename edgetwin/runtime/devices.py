"""Builds the links (one per bus) and the device drivers on them from the configuration."""

from __future__ import annotations

from typing import Protocol

from edgetwin.config.modbus import (
    ModbusDeviceConfig,
    ModbusRtuBusConfig,
    ModbusRtuTcpBusConfig,
    ModbusTcpBusConfig,
)
from edgetwin.config.schema import BusConfig, DeviceConfig
from edgetwin.drivers.base import Device
from edgetwin.drivers.modbus import ModbusDevice
from edgetwin.errors import FatalError
from edgetwin.transports.modbus_serial import ModbusRtuLink, ModbusRtuTcpLink
from edgetwin.transports.modbus_tcp import ModbusLink, ModbusTcpLink


class Link(Protocol):
    """A bus connection the gateway closes at shutdown."""

    def close(self) -> None:
        """Release the port or socket."""
        ...


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
    raise FatalError(f"bus {bus.name!r}: kind {bus.kind!r} is not supported yet")


def make_device(dev: DeviceConfig, link: Link) -> Device:
    """The driver for one device on its bus's link."""
    if isinstance(dev, ModbusDeviceConfig) and isinstance(link, ModbusLink):
        return ModbusDevice(dev, link)
    raise FatalError(f"device {dev.name!r}: driver {dev.driver!r} is not supported yet")
