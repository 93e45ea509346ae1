"""`scan_units` finds the unit ids that answer on a line, and only those."""

from __future__ import annotations

import pytest

from edgetwin.errors import ConnectionLostError
from edgetwin.scan.modbus import scan_units
from edgetwin.transports.modbus_tcp import ModbusTcpLink
from firmware_stubs.modbus.pump import PumpDevice
from tests.modbus.lines import KINDS, pump_line
from tests.support.mosquitto import free_port


@pytest.mark.parametrize("kind", KINDS)
async def test_scan_finds_the_units_on_the_line(kind: str) -> None:
    units = [PumpDevice(u, seed=u) for u in (2, 5, 9)]
    async with pump_line(kind, units) as (_, link):
        found = await scan_units(link, range(1, 13), answer_within=0.1)
        assert found == [2, 5, 9]
        # Holding 0 does not exist on the pump: exception 02 still proves the unit is there.
        assert await scan_units(link, [5, 6], probe=("input", 0), answer_within=0.1) == [5]
        assert link.corrupt_frames == 0


@pytest.mark.parametrize("kind", ["rtu", "tcp"])
async def test_a_silent_unit_is_not_found(kind: str) -> None:
    units = [PumpDevice(u, seed=u) for u in (1, 2)]
    async with pump_line(kind, units) as (_, link):
        units[1].inject("no_answer")
        assert await scan_units(link, [1, 2, 3], answer_within=0.1) == [1]
        await units[1].close_pending()


async def test_a_garbled_answer_still_counts_as_present() -> None:
    units = [PumpDevice(3, seed=3)]
    async with pump_line("rtu", units) as (_, link):
        units[0].inject("garbage")
        assert await scan_units(link, [2, 3, 4], probe=("input", 0), answer_within=0.1) == [3]
        assert link.corrupt_frames == 1


async def test_a_dead_link_raises_rather_than_reporting_nobody() -> None:
    link = ModbusTcpLink("127.0.0.1", free_port(), timeout=0.2)
    with pytest.raises(ConnectionLostError):
        await scan_units(link, [1, 2])
    with pytest.raises(ValueError, match="unit id"):
        await scan_units(link, [300])
