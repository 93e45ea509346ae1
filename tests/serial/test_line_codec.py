"""Line protocol codec: regex and key=value lines, resynchronisation, error kinds."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from edgetwin.protocols.serial.line import KeyValueFormat, LineParser, RegexFormat
from tests.serial.streams import cuts, feed_chunks, interleave, split_invariant

KV = KeyValueFormat(("T", "H", "P"))
RX = RegexFormat(re.compile(r"(?P<t>-?\d+\.\d)C (?P<rh>\d+)%(?: (?P<flag>\w+))?"))


def kv(**kw: int) -> LineParser:
    return LineParser(KV, terminator=b"\r\n", **kw)  # type: ignore[arg-type]


def test_key_value_lines_decode_in_order() -> None:
    p = kv()
    frames = p.feed(b"T=21.4;H=45.2;P=1013.2\r\nP=990;T=-3.5;H=80\r\n")
    assert [dict(f.values) for f in frames] == [
        {"T": 21.4, "H": 45.2, "P": 1013.2},
        {"T": -3.5, "H": 80.0, "P": 990.0},
    ]
    assert p.counts.frames == 2
    assert p.counts.errors == 0


def test_a_value_that_is_not_a_number_is_a_bad_field_and_the_rest_is_kept() -> None:
    p = kv()
    (frame,) = p.feed(b"T=21.4;H=4#.2;P=1013.2\r\n")
    assert dict(frame.values) == {"T": 21.4, "P": 1013.2}
    assert frame.bad == {"H"}
    assert p.counts.bad_field == 1


def test_a_line_cut_short_by_the_next_is_partial_and_none_of_it_is_used() -> None:
    for cut in range(1, len("T=21.4;H=45.2;P=1013.2")):
        p = kv()
        stream = b"T=21.4;H=45.2;P=1013.2"[:cut] + b"T=1;H=2;P=3\r\nT=4;H=5;P=6\r\n"
        frames = p.feed(stream)
        assert [dict(f.values) for f in frames] == [{"T": 4.0, "H": 5.0, "P": 6.0}], cut
        assert p.counts.partial == 1, cut


def test_noise_lines_are_garbage_and_overlong_lines_are_dropped() -> None:
    p = LineParser(KV, terminator=b"\n", max_frame=40)
    stream = b"\x00\xff noise\n#### \n" + b"T=" + b"9" * 100 + b"\nT=1;H=2;P=3\n"
    frames = p.feed(stream)
    assert [dict(f.values) for f in frames] == [{"T": 1.0, "H": 2.0, "P": 3.0}]
    assert p.counts.garbage_bytes == len(b"\x00\xff noise\n#### \n")
    assert p.counts.overlong == 1
    assert p.counts.partial == 0


def test_crlf_works_with_an_lf_terminator_and_blank_lines_are_skipped() -> None:
    p = LineParser(KV, terminator=b"\n")
    frames = p.feed(b"\r\n\nT=1;H=2;P=3\r\n")
    assert [dict(f.values) for f in frames] == [{"T": 1.0, "H": 2.0, "P": 3.0}]
    assert p.counts.errors == 0


def test_whitespace_separated_pairs() -> None:
    p = LineParser(KeyValueFormat(("ws", "wd"), " ", ":"), terminator=b"\r")
    (frame,) = p.feed(b"ws:3.5   wd:270\r")
    assert dict(frame.values) == {"ws": 3.5, "wd": 270.0}


def test_regex_lines_take_named_groups_and_an_absent_optional_group_is_left_out() -> None:
    p = LineParser(RX, terminator=b"\n")
    frames = p.feed(b"21.5C 40% ok\n-2.0C 99%\n21.5 C 40%\n")
    assert [dict(f.values) for f in frames] == [{"t": 21.5, "rh": 40.0}, {"t": -2.0, "rh": 99.0}]
    assert frames[0].bad == {"flag"}  # "ok" matched the group but is not a number
    assert p.counts.garbage_bytes == len(b"21.5 C 40%\n")


def test_reset_counts_a_line_in_progress_as_partial() -> None:
    p = kv()
    assert p.feed(b"T=21.4;H=4") == []
    p.reset()
    assert p.counts.partial == 1
    assert [dict(f.values) for f in p.feed(b"T=1;H=2;P=3\r\n")] == [{"T": 1, "H": 2, "P": 3}]


@given(st.binary(max_size=400), cuts())
def test_any_byte_stream_parses_without_raising_and_chunking_does_not_matter(
    data: bytes, points: list[int]
) -> None:
    split_invariant(lambda: kv(max_frame=32), data, points)
    split_invariant(lambda: LineParser(RX, terminator=b"\n", max_frame=16), data, points)


numbers = st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False)
noise_line = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"").replace(b"=", b""))


@given(
    st.lists(st.tuples(numbers, numbers, numbers), min_size=1, max_size=10),
    st.lists(noise_line.map(lambda b: b + b"\n"), max_size=5),
    cuts(),
)
def test_every_line_between_noise_lines_is_recovered(
    rows: list[tuple[object, object, object]], noise: list[bytes], points: list[int]
) -> None:
    lines = [f"H={h};T={t};P={p}\n".encode() for t, h, p in rows]
    p = LineParser(KV, terminator=b"\n")
    frames = feed_chunks(p, interleave(lines, noise), points)
    want = [{"T": float(t), "H": float(h), "P": float(pr)} for t, h, pr in rows]  # type: ignore[arg-type]
    assert [dict(f.values) for f in frames] == want
    assert p.counts.partial == p.counts.bad_field == p.counts.overlong == 0
