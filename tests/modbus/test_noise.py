"""Corrupted frames and line noise are counted and dropped; nothing crashes, the link goes on."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU

from edgetwin.errors import DeviceTimeoutError, ProtocolError
from edgetwin.transports.modbus_serial import ModbusRtuTcpLink
from edgetwin.transports.modbus_tcp import CorruptFrame, ModbusLink, ModbusTcpLink, checked_framer


@given(data=st.binary(max_size=300), unit=st.integers(0, 247), rtu=st.booleans())
def test_any_bytes_give_a_frame_a_corrupt_marker_or_a_wait(
    data: bytes, unit: int, rtu: bool
) -> None:
    seen: list[int] = []
    framer = checked_framer(rtu, lambda: seen.append(1))
    used, pdu = framer.handleFrame(data, unit, 0)
    assert 0 <= used <= len(data)
    assert isinstance(pdu, CorruptFrame) == bool(seen)
    if isinstance(pdu, CorruptFrame):
        assert pdu.dev_id == unit  # so pymodbus hands it to the waiting request


def rtu_frame(pdu: bytes) -> bytes:
    return pdu + FramerRTU.compute_CRC(pdu).to_bytes(2, "big")


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(bytes.fromhex("01 03 04 00 2A 00 2B 00 00"), id="wrong-crc"),
        pytest.param(rtu_frame(bytes.fromhex("01 03 04 00 2A 00 2B"))[:-3], id="cut-short"),
        pytest.param(bytes.fromhex("FF FF FF FF FF FF FF"), id="noise"),
    ],
)
def test_rtu_corruption_kinds_are_recognised(answer: bytes) -> None:
    seen: list[int] = []
    framer = checked_framer(True, lambda: seen.append(1))
    _, pdu = framer.handleFrame(answer, 1, 0)
    assert pdu is None or isinstance(pdu, CorruptFrame)
    _, good = framer.handleFrame(rtu_frame(bytes.fromhex("01 03 04 00 2A 00 2B")), 1, 0)
    assert good is not None
    assert list(good.registers) == [42, 43]


class NoisyGateway:
    """A TCP peer that answers each request with noise, or correctly when ``good`` is set."""

    def __init__(self, rtu: bool, seed: int) -> None:
        self.rtu = rtu
        self.rng = random.Random(seed)
        self.good = False
        self.server: asyncio.Server | None = None

    def answer(self, request: bytes) -> bytes:
        if not self.good:
            return self.rng.randbytes(self.rng.randint(1, 40))
        pdu = bytes.fromhex("03 04 00 2A 00 2B")
        if self.rtu:
            return rtu_frame(request[:1] + pdu)
        return request[:4] + (len(pdu) + 1).to_bytes(2, "big") + request[6:7] + pdu

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request := await reader.read(260):
                writer.write(self.answer(request))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@pytest.fixture(params=[True, False], ids=["rtu-over-tcp", "mbap"])
async def noisy(request: pytest.FixtureRequest) -> AsyncIterator[tuple[NoisyGateway, ModbusLink]]:
    gateway = NoisyGateway(request.param, seed=7)
    gateway.server = await asyncio.start_server(gateway.handle, "127.0.0.1", 0)
    port = gateway.server.sockets[0].getsockname()[1]
    link: ModbusLink = (
        ModbusRtuTcpLink("127.0.0.1", port, timeout=0.1)
        if gateway.rtu
        else ModbusTcpLink("127.0.0.1", port, timeout=0.1)
    )
    try:
        yield gateway, link
    finally:
        link.close()
        gateway.server.close()
        await gateway.server.wait_closed()


async def test_noise_answers_are_counted_and_the_next_good_answer_decodes(
    noisy: tuple[NoisyGateway, ModbusLink],
) -> None:
    gateway, link = noisy
    outcomes = []
    for _ in range(12):
        try:
            await link.read("holding", 0, 2, 1)
        except (ProtocolError, DeviceTimeoutError) as exc:
            outcomes.append(type(exc))
        else:
            outcomes.append(None)
    assert outcomes == [ProtocolError] * 12  # bytes came back every time: never a timeout
    assert link.corrupt_frames == 12
    assert link.timeouts == 0
    gateway.good = True
    assert await link.read("holding", 0, 2, 1) == [42, 43]
