"""Binary frame codec: known frames, layouts, resynchronisation and error kinds."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.protocols.serial.binary import BinaryLayout, BinaryParser, LengthField
from tests.serial.streams import cuts, feed_chunks, interleave, split_invariant

FLOW = BinaryLayout(
    start=b"\xaa\x55",
    header_size=2,
    length=LengthField(offset=3),
    fields=(("flow", "f"), ("total", "I"), ("temp", "h"), ("status", "B")),
    crc="crc16_modbus",
)
VALUES = {"flow": 12.5, "total": 123456.0, "temp": -250.0, "status": 1.0}


def flow_frame(**over: float) -> bytes:
    return FLOW.encode({**VALUES, **over}, b"\x01\x00")


def test_a_modbus_request_reads_as_a_frame_with_its_published_crc() -> None:
    # 01 03 00 00 00 0A C5 CD: "01 03" as the marker, two big-endian words, CRC low first.
    lay = BinaryLayout(start=b"\x01\x03", fields=(("address", "H"), ("count", "H")))
    p = BinaryParser(lay)
    (frame,) = p.feed(bytes.fromhex("01030000000AC5CD"))
    assert frame.values == {"address": 0.0, "count": 10.0}


def test_sensirion_word_with_crc8_covering_only_the_payload() -> None:
    # SHT3x datasheet: the word 0xBEEF is followed by its CRC 0x92; the marker is not covered.
    lay = BinaryLayout(start=b"\x7e", fields=(("word", "H"),), crc="crc8_sensirion", crc_from=1)
    p = BinaryParser(lay)
    assert [f.values for f in p.feed(bytes.fromhex("7EBEEF92"))] == [{"word": 0xBEEF}]
    assert p.feed(bytes.fromhex("7EBEEF93")) == []
    assert p.counts.bad_checksum == 1


def test_crc8_maxim_check_string_as_a_frame() -> None:
    # CRC-8/MAXIM-DOW("123456789") = 0xA1 (reveng); "1" is the marker, the CRC covers it.
    lay = BinaryLayout(
        start=b"1", fields=tuple((f"d{i}", "B") for i in range(8)), crc="crc8_maxim_dow"
    )
    (frame,) = BinaryParser(lay).feed(b"123456789\xa1")
    assert [frame.values[f"d{i}"] for i in range(8)] == list(b"23456789")


def test_little_endian_fields_length_adjust_and_end_marker() -> None:
    lay = BinaryLayout(
        start=b"\x02",
        header_size=2,
        length=LengthField(offset=1, size=2, endian="little", adjust=-2),
        fields=(("a", "h"), ("b", "x"), ("c", "H")),
        byte_order="little",
        crc="crc16_modbus",
        crc_from=1,
        crc_order="big",
        end=b"\x03",
    )
    frame = lay.encode({"a": -2, "c": 0x1234})
    assert frame[1:3] == (5 + 2).to_bytes(2, "little")  # the value counts payload + 2
    assert frame[3:8] == struct.pack("<hxH", -2, 0x1234)
    (decoded,) = BinaryParser(lay).feed(frame)
    assert decoded.values == {"a": -2.0, "c": 0x1234}


def test_a_bad_crc_skips_the_frame_and_the_next_one_is_read() -> None:
    bad = bytearray(flow_frame())
    bad[-1] ^= 0x40
    p = BinaryParser(FLOW)
    frames = p.feed(bytes(bad) + flow_frame(total=7))
    assert [f.values["total"] for f in frames] == [7.0]
    assert p.counts.bad_checksum == 1
    assert p.counts.partial == p.counts.garbage_bytes == 0


@pytest.mark.parametrize("cut", range(1, 17))
def test_a_frame_cut_short_by_the_next_is_partial(cut: int) -> None:
    p = BinaryParser(FLOW)
    frames = p.feed(flow_frame()[:cut] + flow_frame(total=7))
    assert [f.values["total"] for f in frames] == [7.0]
    # A cut inside the marker leaves noise, not a frame.
    assert (p.counts.partial, p.counts.garbage_bytes) == ((1, 0) if cut >= 2 else (0, 1))
    assert p.counts.bad_checksum == 0


def test_noise_is_counted_and_a_length_beyond_max_frame_is_overlong() -> None:
    p = BinaryParser(FLOW, max_frame=64)
    frames = p.feed(b"\x00\x01\x02" + b"\xaa\x55\x01\xff" + flow_frame())
    assert len(frames) == 1
    assert p.counts.overlong == 1
    assert p.counts.garbage_bytes == 3 + 3  # the noise, then the overlong header after its 0xAA


def test_a_short_payload_with_a_good_crc_is_a_bad_field_frame() -> None:
    short = FLOW.encode({**VALUES}, b"\x01\x00")
    body = bytearray(short[:4] + short[4:12])
    body[3] = 8
    from edgetwin.protocols.serial.crc import crc16_modbus  # noqa: PLC0415

    frame_bytes = bytes(body) + crc16_modbus(bytes(body)).to_bytes(2, "little")
    p = BinaryParser(FLOW)
    (frame,) = p.feed(frame_bytes)
    assert frame.values == {}
    assert frame.bad == {"flow", "total", "temp", "status"}
    assert p.counts.bad_field == 4


def test_a_false_start_in_noise_does_not_hold_back_the_next_frame() -> None:
    p = BinaryParser(FLOW)
    # noise that looks like a header announcing 200 bytes, then a real frame
    frames = p.feed(b"\xaa\x55\x09\xc8" + flow_frame())
    assert len(frames) == 1
    assert p.counts.partial == 1


def test_reset_counts_a_frame_in_progress() -> None:
    p = BinaryParser(FLOW)
    p.feed(flow_frame()[:9])
    p.reset()
    assert p.counts.partial == 1
    assert len(p.feed(flow_frame())) == 1


# -- properties over random layouts --------------------------------------------------------

_RANGES: dict[str, Any] = {
    "b": st.integers(-128, 127),
    "B": st.integers(0, 255),
    "h": st.integers(-(2**15), 2**15 - 1),
    "H": st.integers(0, 2**16 - 1),
    "i": st.integers(-(2**31), 2**31 - 1),
    "I": st.integers(0, 2**32 - 1),
    "q": st.integers(-(2**63), 2**63 - 1),
    "Q": st.integers(0, 2**64 - 1),
    "?": st.booleans().map(int),
    "e": st.floats(width=16),
    "f": st.floats(width=32),
    "d": st.floats(),
}


@st.composite
def layouts(draw: st.DrawFn) -> BinaryLayout:
    start = draw(st.binary(min_size=1, max_size=3))
    chars = draw(st.lists(st.sampled_from([*_RANGES, "x"]), min_size=1, max_size=6))
    fields = tuple((f"f{i}", c) for i, c in enumerate(chars))
    header = draw(st.integers(0, 3))
    length = None
    if header and draw(st.booleans()):
        size = draw(st.sampled_from([1, 2])) if header >= 2 else 1
        offset = len(start) + draw(st.integers(0, header - size))
        length = LengthField(offset, size, draw(st.sampled_from(["big", "little"])))
    crc = draw(st.sampled_from(["crc16_modbus", "crc8_maxim_dow", "crc8_sensirion", None]))
    return BinaryLayout(
        start=start,
        fields=fields,  # type: ignore[arg-type]
        header_size=header,
        length=length,
        byte_order=draw(st.sampled_from(["big", "little"])),
        crc=crc,  # type: ignore[arg-type]
        crc_from=draw(st.integers(0, len(start) + header)),
        crc_order=draw(st.sampled_from(["big", "little"])),
        end=draw(st.sampled_from([b"", b"\x03", b"\r\n"])),
    )


def _values(draw: st.DrawFn, lay: BinaryLayout) -> dict[str, float]:
    return {n: draw(_RANGES[c]) for n, c in lay.fields if c != "x"}


def _same(got: dict[str, float], sent: dict[str, float]) -> bool:
    """Frames carry floats: 64-bit integers beyond 2**53 arrive rounded, as float() rounds."""
    return got.keys() == sent.keys() and all(
        (math.isnan(got[k]) and math.isnan(sent[k])) or got[k] == float(sent[k]) for k in got
    )


@settings(max_examples=150)
@given(st.data(), layouts(), st.binary(max_size=300), cuts())
def test_any_byte_stream_parses_without_raising_and_chunking_does_not_matter(
    data: st.DataObject, lay: BinaryLayout, noise: bytes, points: list[int]
) -> None:
    frames = [lay.encode(_values(data.draw, lay)) for _ in range(2)]
    stream = noise[:150] + frames[0] + noise[150:] + frames[1]
    split_invariant(lambda: BinaryParser(lay, max_frame=64), stream, points)


@settings(max_examples=150)
@given(st.data(), layouts(), st.lists(st.binary(max_size=12), max_size=4), cuts())
def test_every_frame_in_noise_is_recovered_whatever_the_chunking(
    data: st.DataObject, lay: BinaryLayout, noise: list[bytes], points: list[int]
) -> None:
    # The noise holds no marker's first byte, so nothing in it can pass for a frame.
    noise = [n.replace(lay.start[:1], b"") for n in noise]
    sent = [_values(data.draw, lay) for _ in range(data.draw(st.integers(1, 5)))]
    stream = interleave([lay.encode(v) for v in sent], noise)
    p = BinaryParser(lay, max_frame=128)
    got = [dict(f.values) for f in feed_chunks(p, stream, points)]
    assert len(got) == len(sent)
    assert all(_same(g, s) for g, s in zip(got, sent, strict=True))
    noise_sent = sum(len(noise[i % len(noise)]) for i in range(len(sent))) if noise else 0
    assert p.counts.garbage_bytes == noise_sent
    assert p.counts.partial == p.counts.bad_checksum == p.counts.overlong == 0
