"""Which Modbus unit ids answer on a link: one short probe read per unit.

A unit is present when it answers at all, with data or with a Modbus exception (a probe
address it does not implement still proves it is there), or with a frame too corrupt to
decode (something answered; two units sharing an id look like that). It is absent when it
stays silent within the probe's timeout, or when a TCP gateway answers for it with exception 0x0A
or 0x0B (path unavailable, target did not respond).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from edgetwin.errors import DeviceExceptionError, DeviceTimeoutError, ProtocolError
from edgetwin.transports.modbus_tcp import GATEWAY_EXCEPTIONS, ModbusLink, Table

log = logging.getLogger(__name__)


async def probe_unit(
    link: ModbusLink,
    unit: int,
    *,
    probe: tuple[Table, int] = ("holding", 0),
    answer_within: float,
    pause: float = 0.0,
) -> bool:
    """Whether ``unit`` answers a read of ``probe`` (table, address) within ``answer_within``."""
    table, address = probe
    try:
        await link.read(table, address, 1, unit, answer_within=answer_within, pause=pause)
    except DeviceTimeoutError:
        return False
    except DeviceExceptionError as exc:
        return exc.code not in GATEWAY_EXCEPTIONS
    except ProtocolError as exc:
        log.warning("unit %d: %s", unit, exc)
        return True
    return True


async def scan_units(
    link: ModbusLink,
    units: Iterable[int] = range(1, 248),
    *,
    probe: tuple[Table, int] = ("holding", 0),
    answer_within: float = 0.2,
    pause: float = 0.0,
) -> list[int]:
    """The unit ids among ``units`` that answer, in ascending order.

    ``answer_within`` bounds each probe, in seconds (at most the link's own timeout); a lost
    link raises ConnectionLostError, since nothing more can be learnt. ``pause`` keeps the
    line quiet that long before each probe, for units that go deaf for a while after hearing
    a frame for another address (libmodbus 3.1 servers do, for about 0.5 s).
    """
    found = []
    for unit in sorted(set(units)):
        if not 0 <= unit <= 255:
            raise ValueError(f"unit id {unit} is not 0..255")
        if await probe_unit(link, unit, probe=probe, answer_within=answer_within, pause=pause):
            found.append(unit)
    return found
