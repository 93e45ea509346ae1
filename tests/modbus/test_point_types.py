"""Every point type and order, end to end on each kind of line, against a pymodbus peer.

The register map is built here from the values with the byte layouts written out in
tests/modbus/lines.py, not with edgetwin's codec. Each cycle must take exactly the requests
of the coalescing plan, counted both by the link and by the peer.
"""

from __future__ import annotations

import math

import pytest

from edgetwin.config.modbus import ModbusDeviceConfig
from edgetwin.core.types import Quality
from edgetwin.drivers.modbus import ModbusDevice
from tests.modbus.lines import KINDS, MapServer
from tests.modbus.pointmap import COILS, F32_PI, build_map
from tests.support.wire import wire_words


@pytest.mark.parametrize("kind", KINDS)
async def test_every_type_and_order_decodes_in_the_planned_requests(kind: str) -> None:
    words, points, expect, texts = build_map()
    inputs = [0, 0, 0, *wire_words(F32_PI, "float32", "CDAB")]
    server = MapServer(kind, holding=words, inputs=inputs, coils=COILS, discrete=COILS)
    cfg = ModbusDeviceConfig(name="dev", bus="line", points=points, max_gap=2, max_registers=64)
    async with server as link:
        dev = ModbusDevice(cfg, link)
        # holding: more than 64 registers in all → two requests; one coil read, one input read
        assert len(dev.plan) == 4
        for cycle in (1, 2):
            result = await dev.poll()
            assert link.transactions == server.requests == cycle * len(dev.plan)
            assert result.requests == result.ok == len(dev.plan)
            got = {p.name: result.values[i] for i, p in enumerate(points)}
            for name, value in expect.items():
                assert got[name] == pytest.approx(value, rel=1e-15), name
            assert (result.quality == Quality.GOOD).all()
            by_name = {points[i].name: text for i, text in dev.texts.items()}
            assert by_name == texts
            assert math.isnan(got["serial"])  # a string has no number


@pytest.mark.parametrize("kind", ["tcp", "rtu"])
async def test_a_subset_poll_reads_only_its_requests(kind: str) -> None:
    words, points, expect, _ = build_map()
    server = MapServer(kind, holding=words, coils=COILS)
    points = [p for p in points if p.table in {"holding", "coil"}]
    cfg = ModbusDeviceConfig(name="dev", bus="line", points=points)
    wanted = [i for i, p in enumerate(points) if p.name in {"coil3", "float64_DCBA"}]
    async with server as link:
        result = await ModbusDevice(cfg, link).poll(wanted)
        assert server.requests == link.transactions == 2
    for i, p in enumerate(points):
        if i in wanted:
            assert result.values[i] == pytest.approx(expect[p.name])
            assert result.quality[i] == Quality.GOOD
        else:
            assert result.quality[i] == Quality.STALE
            assert math.isnan(result.values[i])
