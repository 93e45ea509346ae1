"""Uplink codec and topic tree: round trips, known bytes, and hostile input."""

from __future__ import annotations

import io
import json
import math
import struct
import tracemalloc
from typing import Any

import msgpack
import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgetwin.core.types import TwinBatch
from edgetwin.errors import PayloadError
from edgetwin.uplink.codec import (
    MAX_DELTA,
    Birth,
    Frame,
    PointInfo,
    Status,
    WireFrame,
    decode_birth,
    decode_event,
    decode_status,
    encode_birth,
    encode_event,
    encode_frame,
    encode_status,
    pack_frame,
    pack_varints,
    quantise_score,
    unpack_frame,
    unpack_varints,
)
from edgetwin.uplink.framer import FrameDecoder
from edgetwin.uplink.topics import Topics, parse_topic, subscriptions, validate_gateway

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def batch(n: int, seed: int = 0) -> TwinBatch:
    rng = np.random.default_rng(seed)
    value = rng.normal(size=n)
    value[::7] = np.nan
    return TwinBatch(
        index=np.arange(n, dtype=np.int64),
        ts=1_700_000_000.0 + np.round(rng.uniform(0, 60, size=n), 3),
        value=value,
        estimate=rng.normal(size=n),
        score=rng.uniform(0, 3, size=n),
        alarm=rng.integers(0, 3, size=n).astype(np.uint8),
        quality=rng.integers(0, 64, size=n).astype(np.uint16),
    )


def wire(n: int = 12, *, seed: int = 0, floats: int = 3, **changes: Any) -> WireFrame:
    """A wire frame with ``floats`` float64 rows (the rest integer deltas) per value column."""
    rng = np.random.default_rng(seed)
    vf = np.zeros(n, dtype=bool)
    vf[:floats] = True
    fields: dict[str, Any] = {
        "gateway": "gw-1",
        "session": "s1",
        "seq": 7,
        "index": rng.integers(0, 50, size=n),
        "ts_ms": 1_700_000_000_000 + np.sort(rng.integers(0, 60_000, size=n)),
        "alarm": rng.integers(0, 3, size=n).astype(np.uint8),
        "quality": rng.integers(0, 64, size=n).astype(np.uint16),
        "score_q": rng.integers(0, 256, size=n).astype(np.uint8),
        "value_float": vf,
        "value_q": rng.integers(-300, 300, size=n - floats),
        "value_f": rng.normal(size=floats),
        "estimate_float": vf[::-1].copy(),
        "estimate_q": rng.integers(-3, 3, size=n - floats),
        "estimate_f": rng.normal(size=floats),
        "snapshot": True,
    }
    fields.update(changes)
    return WireFrame(**fields)


def wrap(body: Any, *, header: bytes = b"ET\x01\x00") -> bytes:
    """Build a frame by hand from any msgpack-able body."""
    return header + zstandard.ZstdCompressor().compress(msgpack.packb(body, use_bin_type=True))


def body_of(payload: bytes) -> dict[str, Any]:
    """Unpack a frame body by hand, independently of the decoder."""
    assert payload[:2] == b"ET"
    body: dict[str, Any] = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(payload[4:]))
    return body


def leb128(values: list[int]) -> bytes:
    """Zigzag LEB128, written out the slow and obvious way."""
    out = bytearray()
    for v in values:
        u = 2 * v if v >= 0 else -2 * v - 1
        while True:
            byte, u = u & 0x7F, u >> 7
            out.append(byte | (0x80 if u else 0))
            if not u:
                break
    return bytes(out)


def bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).view(np.uint64)


def decodes_or_payload_error(payload: bytes, **kw: Any) -> WireFrame | None:
    try:
        return unpack_frame(payload, **kw)
    except PayloadError:
        return None


def same_wire(a: WireFrame, b: WireFrame) -> None:
    assert (a.gateway, a.session, a.seq, a.snapshot, a.replay) == (
        b.gateway,
        b.session,
        b.seq,
        b.snapshot,
        b.replay,
    )
    for name in ("index", "ts_ms", "alarm", "quality", "score_q", "value_float", "value_q"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("estimate_float", "estimate_q"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(bits(a.value_f), bits(b.value_f))
    np.testing.assert_array_equal(bits(a.estimate_f), bits(b.estimate_f))


VALID = pack_frame(wire())


# ---------------------------------------------------------------- topics


def test_topics_of_a_gateway() -> None:
    t = Topics("edgetwin/v1", "gw-1")
    assert t.birth == "edgetwin/v1/gw-1/birth"
    assert t.status == "edgetwin/v1/gw-1/status"
    assert t.frames == "edgetwin/v1/gw-1/frames"
    assert t.events == "edgetwin/v1/gw-1/events"
    assert t.rebirth == "edgetwin/v1/gw-1/cmd/rebirth"
    for kind in ("birth", "status", "frames", "events", "rebirth"):
        assert parse_topic("edgetwin/v1", t.topic(kind)) == ("gw-1", kind)
    assert subscriptions("site/a") == [
        "site/a/+/birth",
        "site/a/+/status",
        "site/a/+/events",
        "site/a/+/frames",
    ]


@pytest.mark.parametrize(
    "topic",
    [
        "edgetwin/v2/gw/frames",
        "edgetwin/v1/gw/frames/x",
        "edgetwin/v1//frames",
        "edgetwin/v1/gw/metrics",
        "edgetwin/v1/gw",
        "edgetwin/v1",
        "edgetwin/v1/gw/cmd",
        "edgetwin/v1x/gw/frames",
    ],
)
def test_parse_topic_rejects_foreign_topics(topic: str) -> None:
    assert parse_topic("edgetwin/v1", topic) is None


@pytest.mark.parametrize("gateway", ["", "a/b", "a+", "#", "nul\0"])
def test_gateway_ids_are_one_topic_level(gateway: str) -> None:
    with pytest.raises(ValueError, match="gateway id"):
        validate_gateway(gateway)
    with pytest.raises(ValueError, match="gateway id"):
        Topics("edgetwin/v1", gateway)


@pytest.mark.parametrize("prefix", ["", "/edgetwin", "edgetwin/", "a/+/b", "a/#"])
def test_bad_prefixes_are_rejected(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Topics(prefix, "gw")


# ---------------------------------------------------------------- integer columns


@FUZZ
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=60))
def test_varints_match_the_obvious_encoding_and_round_trip(values: list[int]) -> None:
    packed = pack_varints(np.array(values, dtype=np.int64))
    assert packed == leb128(values)
    assert unpack_varints(packed, len(values), "x").tolist() == values


def test_small_deltas_take_one_byte() -> None:
    assert pack_varints(np.arange(-64, 64)) == leb128(list(range(-64, 64)))
    assert len(pack_varints(np.arange(-64, 64))) == 128
    assert len(pack_varints(np.array([64, -65]))) == 4


@pytest.mark.parametrize(
    ("data", "count"),
    [
        (b"\x80", 1),  # unterminated
        (b"\x01\x02", 1),  # more values than declared
        (b"\x01", 2),
        (b"", 1),
        (b"\x01", 0),
        (b"\xff" * 10 + b"\x01", 1),  # 11 bytes
        (b"\xff" * 9 + b"\x02", 1),  # 65 bits
    ],
)
def test_bad_varints(data: bytes, count: int) -> None:
    with pytest.raises(PayloadError, match="varint"):
        unpack_varints(data, count, "x")


@FUZZ
@given(st.binary(max_size=40), st.integers(0, 50))
def test_random_varint_bytes_decode_or_raise_payload_error(data: bytes, count: int) -> None:
    try:
        out = unpack_varints(data, count, "x")
    except PayloadError:
        return
    assert pack_varints(out) == data or len(pack_varints(out)) < len(data)  # overlong forms


def test_score_quantisation() -> None:
    scores = [0.0, 1 / 64, 3 / 64, 1.0, 0.5, 7.96875, 8.0, 1e9, -1.0, math.nan, math.inf]
    assert quantise_score(scores).tolist() == [0, 0, 2, 32, 16, 255, 255, 255, 0, 0, 255]


# ---------------------------------------------------------------- frame: known bytes


@pytest.mark.parametrize(
    ("replay", "snapshot", "flags"),
    [(False, False, 0), (True, False, 1), (False, True, 2), (True, True, 3)],
)
def test_header_bytes(replay: bool, snapshot: bool, flags: int) -> None:
    payload = pack_frame(wire(snapshot=snapshot, replay=replay))
    assert payload[:4] == b"ET\x01" + bytes([flags])
    assert payload[4:8] == ZSTD_MAGIC
    frame = unpack_frame(payload)
    assert (frame.replay, frame.snapshot) == (replay, snapshot)


def test_encoder_body_layout() -> None:
    w = WireFrame(
        gateway="gw",
        session="sess",
        seq=42,
        index=np.array([5, 0, 70000]),
        ts_ms=np.array([10_000, 10_500, 10_250]),
        alarm=np.array([0, 2, 1], dtype=np.uint8),
        quality=np.array([0, 1, 300], dtype=np.uint16),
        score_q=np.array([8, 48, 0], dtype=np.uint8),
        value_float=np.array([False, True, False]),
        value_q=np.array([150, -3]),
        value_f=np.array([math.nan]),
        estimate_float=np.array([False, False, False]),
        estimate_q=np.array([1, 0, -1]),
        estimate_f=np.zeros(0),
    )
    body = body_of(pack_frame(w))
    assert sorted(body) == sorted("gsntrfdiqcvVeE")
    assert (body["g"], body["s"], body["n"], body["t"], body["r"]) == ("gw", "sess", 42, 10000, 3)
    assert body["i"] == leb128([5, -5, 70000])
    assert body["d"] == leb128([0, 500, -250])
    assert body["f"] == bytes([0, 2 | 4, 1])
    assert body["q"] == leb128([0, 1, 300])
    assert body["c"] == bytes([8, 48, 0])
    assert body["v"] == leb128([150, -3])
    assert body["V"] == struct.pack("<d", math.nan)
    assert body["e"] == leb128([1, 0, -1])
    assert body["E"] == b""


def test_decoder_reads_hand_built_frame() -> None:
    body = {
        "g": "pump-gw",
        "s": "abc",
        "n": 3,
        "t": 1_700_000_000_000,
        "r": 2,
        "i": bytes([2, 1]),  # index 1, then 0
        "d": bytes([0xF4, 0x03, 0xC7, 0x01]),  # +250 ms, -100 ms
        "f": bytes([0x08, 0x02 | 0x04]),
        "q": bytes([0, 2]),
        "c": bytes([16, 64]),
        "v": bytes([0x03]),  # -2
        "V": struct.pack("<d", 4.5),
        "e": bytes([0x14]),  # +10
        "E": struct.pack("<d", 0.8),
        "future_key": "ignored",
    }
    frame = unpack_frame(wrap(body, header=b"ET\x01\x81"))  # bit 7: reserved, ignored
    assert (frame.gateway, frame.session, frame.seq) == ("pump-gw", "abc", 3)
    assert frame.replay
    assert not frame.snapshot
    assert frame.index.tolist() == [1, 0]
    assert frame.ts_ms.tolist() == [1_700_000_000_250, 1_700_000_000_150]
    assert frame.alarm.tolist() == [0, 2]
    assert frame.quality.tolist() == [0, 1]
    assert frame.score_q.tolist() == [16, 64]
    assert frame.value_float.tolist() == [False, True]
    assert frame.value_q.tolist() == [-2]
    assert frame.value_f.tolist() == [4.5]
    assert frame.estimate_float.tolist() == [True, False]
    assert frame.estimate_q.tolist() == [10]
    assert frame.estimate_f.tolist() == [0.8]


# ---------------------------------------------------------------- frame: round trips


@st.composite
def wire_frames(draw: st.DrawFn, max_rows: int = 40) -> WireFrame:
    n = draw(st.integers(0, max_rows))

    def col(dtype: Any, elements: st.SearchStrategy[Any], size: int = n) -> Any:
        return draw(hnp.arrays(dtype, size, elements=elements))

    vf = col(np.bool_, st.booleans())
    ef = col(np.bool_, st.booleans())
    deltas = st.integers(-MAX_DELTA, MAX_DELTA)
    floats = st.floats(allow_nan=True, allow_infinity=True)
    return WireFrame(
        gateway=draw(st.sampled_from(["gw", "pump-gw"])),
        session=draw(st.text(min_size=1, max_size=20)),
        seq=draw(st.integers(0, 2**64 - 1)),
        index=col(np.int64, st.integers(0, 2**32 - 1)),
        ts_ms=col(np.int64, st.integers(-(2**47), 2**47)),
        alarm=col(np.uint8, st.integers(0, 2)),
        quality=col(np.uint16, st.integers(0, 0xFFFF)),
        score_q=col(np.uint8, st.integers(0, 255)),
        value_float=vf,
        value_q=col(np.int64, deltas, int((~vf).sum())),
        value_f=col(np.float64, floats, int(vf.sum())),
        estimate_float=ef,
        estimate_q=col(np.int64, deltas, int((~ef).sum())),
        estimate_f=col(np.float64, floats, int(ef.sum())),
        snapshot=draw(st.booleans()),
        replay=draw(st.booleans()),
    )


@settings(FUZZ, max_examples=50)
@given(wire_frames())
def test_wire_frame_round_trip(w: WireFrame) -> None:
    same_wire(unpack_frame(pack_frame(w)), w)


def test_empty_frame_round_trip() -> None:
    w = wire(0, floats=0)
    out = unpack_frame(pack_frame(w))
    assert out.rows == 0
    assert out.seq == 7


def test_many_rows_round_trip_and_compress() -> None:
    w = wire(100_000, seed=3, floats=1000)
    payload = pack_frame(w)
    assert len(payload) < 100_000 * 8
    same_wire(unpack_frame(payload), w)


def test_decoded_arrays_are_writable_and_native() -> None:
    out = unpack_frame(VALID)
    for name in ("index", "ts_ms", "alarm", "quality", "score_q", "value_q", "value_f"):
        arr = getattr(out, name)
        assert arr.flags.writeable, name
        assert arr.dtype.isnative, name


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"index": np.array([-1] + [0] * 11)}, "index"),
        ({"index": np.array([2**32] + [0] * 11)}, "index"),
        ({"ts_ms": np.array([2**48] + [0] * 11)}, "epoch"),
        ({"alarm": np.array([3] + [0] * 11, dtype=np.uint8)}, "alarm"),
        ({"quality": np.array([70000] + [0] * 11)}, "quality"),
        ({"value_q": np.array([MAX_DELTA + 1] + [0] * 8)}, "deltas"),
        ({"value_q": np.zeros(3, dtype=np.int64)}, "float rows"),
        ({"estimate_f": np.zeros(5)}, "float rows"),
        ({"score_q": np.zeros(2, dtype=np.uint8)}, "score_q"),
        ({"gateway": "g/w"}, "gateway"),
        ({"session": ""}, "session"),
        ({"seq": -1}, "seq"),
        ({"seq": 2**64}, "seq"),
    ],
)
def test_pack_refuses_what_would_not_decode(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pack_frame(wire(**change))


def test_pack_refuses_oversized_bodies() -> None:
    with pytest.raises(ValueError, match="split"):
        pack_frame(wire(1_000_000, floats=1_000_000))


# ---------------------------------------------------------------- the stateless encoder


@settings(FUZZ, max_examples=50)
@given(
    n=st.integers(0, 30),
    seed=st.integers(0, 2**32 - 1),
    replay=st.booleans(),
    snapshot=st.booleans(),
)
def test_encode_frame_is_exact_and_needs_no_state(
    n: int, seed: int, replay: bool, snapshot: bool
) -> None:
    b = batch(n, seed)
    payload = encode_frame(Frame("gw", "s", 5, b, snapshot=snapshot, replay=replay))
    w = unpack_frame(payload)
    assert (w.seq, w.replay, w.snapshot) == (5, replay, snapshot)
    assert w.value_float.all()
    assert w.estimate_float.all()
    points = [PointInfo(i, "d", f"p{i}", "", "float64", "level", 1.0) for i in range(max(n, 1))]
    out = FrameDecoder(points).decode(w)  # a decoder that never saw seq 0..4
    assert out is not None
    np.testing.assert_array_equal(bits(out.value), bits(b.value))
    np.testing.assert_array_equal(bits(out.estimate), bits(b.estimate))
    np.testing.assert_array_equal(out.ts, np.rint(b.ts * 1000.0) / 1000.0)
    np.testing.assert_array_equal(out.score, np.rint(b.score * 32) / 32)
    np.testing.assert_array_equal(out.alarm, b.alarm)
    np.testing.assert_array_equal(out.quality, b.quality)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"ts": np.array([np.nan, 1.0, 2.0])}, "finite"),
        ({"ts": np.array([2e11, 1.0, 2.0])}, "epoch"),
        ({"index": np.array([-1, 0, 1])}, "index"),
        ({"alarm": np.array([3, 0, 0], dtype=np.uint8)}, "alarm"),
        ({"quality": np.array([70000, 0, 0])}, "quality"),
        ({"value": np.zeros(2)}, "value"),
    ],
)
def test_encode_frame_rejects_bad_batches(change: dict[str, Any], match: str) -> None:
    b = batch(3)
    fields = {name: getattr(b, name) for name in TwinBatch.__dataclass_fields__}
    fields.update(change)
    with pytest.raises(ValueError, match=match):
        encode_frame(Frame("gw", "s", 0, TwinBatch(**fields)))


# ---------------------------------------------------------------- frame: hostile input


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_payload_error(data: bytes) -> None:
    with pytest.raises(PayloadError):
        unpack_frame(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bodies_only_raise_payload_error(data: bytes) -> None:
    with pytest.raises(PayloadError):
        unpack_frame(b"ET\x01\x00" + data)
    with pytest.raises(PayloadError):
        unpack_frame(b"ET\x01\x00" + ZSTD_MAGIC + data)


def test_every_truncation_is_rejected() -> None:
    for cut in range(len(VALID)):
        with pytest.raises(PayloadError):
            unpack_frame(VALID[:cut])


def test_every_single_bit_flip_decodes_or_raises_payload_error() -> None:
    flipped_ok = 0
    for pos in range(len(VALID)):
        for bit in range(8):
            data = bytearray(VALID)
            data[pos] ^= 1 << bit
            if decodes_or_payload_error(bytes(data)) is not None:
                flipped_ok += 1
    # the checksum catches corruption of the compressed body; only header/flag flips survive
    assert flipped_ok < len(VALID)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"", "truncated"),
        (b"ET\x01", "truncated"),
        (b"XX\x01\x00" + VALID[4:], "magic"),
        (b"ET\x02\x00" + VALID[4:], "version 2"),
        (b"ET\x00\x00" + VALID[4:], "version 0"),
        (b"ET\x01\x00", "truncated"),
        (b"ET\x01\x00\x50\x2a\x4d\x18" + bytes(8), "not zstd"),  # skippable zstd frame
        (VALID + VALID[4:], "decompress"),  # two zstd frames
        (VALID + b"\x00", "decompress"),
    ],
)
def test_malformed_frames(payload: bytes, match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        unpack_frame(payload)


def test_non_bytes_payload() -> None:
    with pytest.raises(PayloadError):
        unpack_frame("ET\x01\x00")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def gib_of_zeros() -> tuple[bytes, bytes]:
    """1 GiB of zeros as zstd, with and without a declared content size."""
    cctx = zstandard.ZstdCompressor(level=1)
    chunk = bytes(1 << 20)
    sink = io.BytesIO()
    with cctx.stream_writer(sink, size=1 << 30, closefd=False) as writer:
        for _ in range(1024):
            writer.write(chunk)
    obj = cctx.compressobj()
    unsized = b"".join([*(obj.compress(chunk) for _ in range(1024)), obj.flush()])
    return sink.getvalue(), unsized


def test_zstd_bomb_is_refused_without_allocating(gib_of_zeros: tuple[bytes, bytes]) -> None:
    sized, unsized = gib_of_zeros
    assert len(sized) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(PayloadError, match="limit"):
            unpack_frame(b"ET\x01\x00" + sized)
        with pytest.raises(PayloadError, match="content size"):
            unpack_frame(b"ET\x01\x00" + unsized)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_body_over_the_limit_is_refused() -> None:
    payload = pack_frame(wire(1000, floats=10))
    assert unpack_frame(payload).rows == 1000
    with pytest.raises(PayloadError, match="limit"):
        unpack_frame(payload, max_decompressed=1_000)


def _good_body() -> dict[str, Any]:
    return body_of(VALID)


WRONG_VALUES: list[Any] = [None, "x", 1.5, [], {}, True, b"", -1, 2**64 - 1, float("nan")]
STILL_VALID = [("n", 2**64 - 1), ("g", "x"), ("s", "x"), ("t", -1)]


@pytest.mark.parametrize(
    ("key", "wrong"),
    [(k, w) for k in _good_body() for w in WRONG_VALUES if (k, w) not in STILL_VALID],
)
def test_wrong_msgpack_types(key: str, wrong: Any) -> None:
    body = _good_body()
    body[key] = wrong
    with pytest.raises(PayloadError):
        unpack_frame(wrap(body))


@pytest.mark.parametrize("key", list(_good_body()))
def test_missing_keys(key: str) -> None:
    body = _good_body()
    del body[key]
    with pytest.raises(PayloadError, match=repr(key)):
        unpack_frame(wrap(body))


def _with(**changes: Any) -> bytes:
    body = _good_body()
    body.update(changes)
    return wrap(body)


FLAGS_12 = bytes([0x04] * 5 + [0] * 4 + [0x08] * 3)  # 5 float values: 7 varints, not 9


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (wrap([1, 2, 3]), "map"),
        (wrap(7), "map"),
        (b"ET\x01\x00" + zstandard.ZstdCompressor().compress(b"\xc1"), "msgpack"),
        (b"ET\x01\x00" + zstandard.ZstdCompressor().compress(b"\x01\x02"), "msgpack"),
        (b"ET\x01\x00" + zstandard.ZstdCompressor().compress(b"\x91" * 5000), "msgpack"),
        (b"ET\x01\x00" + zstandard.ZstdCompressor().compress(b""), "msgpack"),
        (_with(r=13), "'f' has 12 rows"),
        (_with(f=bytes(11)), "'f' has 11 rows"),
        (_with(f=bytes([0x10] + [0] * 11)), "reserved"),
        (_with(f=bytes([3] + [0] * 11)), "alarm"),
        (_with(c=bytes(11)), "'c'"),
        (_with(V=bytes(16)), "'V'"),
        (_with(E=bytes(32)), "'E'"),
        (_with(f=FLAGS_12), "'v'"),
        (_with(i=leb128([1] * 11)), "'i'"),
        (_with(d=leb128([1] * 13)), "'d'"),
        (_with(q=b"\x80" * 12), "'q'"),
        (_with(q=leb128([70000] * 12)), "uint16"),
        (_with(q=leb128([-1] * 12)), "uint16"),
        (_with(v=leb128([MAX_DELTA + 1] + [0] * 8)), "'v'.*beyond"),
        (_with(v=leb128([-(2**63)] + [0] * 8)), "'v'.*beyond"),
        (_with(e=leb128([0] * 8 + [-MAX_DELTA - 1])), "'e'.*beyond"),
        (_with(i=leb128([2**32] + [0] * 11)), "index deltas"),
        (_with(i=leb128([-(2**63)] + [0] * 11)), "index deltas"),
        (_with(i=leb128([2**31] * 12)), "indexes leave"),
        (_with(i=leb128([-1] + [0] * 11)), "indexes leave"),
        (_with(t=float("nan")), "non-finite"),
        (_with(t=float("inf")), "non-finite"),
        (_with(t=1.7e12), "integer"),
        (_with(t=2**62), "outside"),
        (_with(d=leb128([2**62] * 12)), "delta"),
        (_with(d=leb128([-(2**63)] * 12)), "delta"),
        (_with(d=leb128([2**48] * 12)), "offset"),
        (_with(t=2**47, d=leb128([1] * 12)), "timestamps"),
        (_with(n=-1), "'n'"),
        (_with(n=True), "'n'"),
        (_with(r=-1), "'r'"),
        (_with(g="a/b"), "gateway"),
        (_with(s=""), "'s'"),
        (wrap({**_good_body(), 1: 2}), "msgpack"),
        (_with(n=msgpack.Timestamp(1)), "'n'"),
    ],
)
def test_hostile_bodies(payload: bytes, match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        unpack_frame(payload)


def test_unknown_keys_are_ignored() -> None:
    body = {**_good_body(), "x": msgpack.Timestamp(1), "note": "x"}
    frame = unpack_frame(wrap(body, header=VALID[:4]))
    assert frame.seq == 7
    same_wire(frame, unpack_frame(VALID))


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(FUZZ, max_examples=80)
@given(key=st.sampled_from(sorted(_good_body())), value=msgpack_values)
def test_fuzzed_body_values(key: str, value: Any) -> None:
    body = _good_body()
    body[key] = value
    decodes_or_payload_error(wrap(body))


@settings(FUZZ, max_examples=30)
@given(body=st.dictionaries(st.text(max_size=8), msgpack_values, max_size=12))
def test_fuzzed_bodies(body: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        unpack_frame(wrap(body))


@FUZZ
@given(
    key=st.sampled_from(["i", "d", "f", "q", "c", "v", "V", "e", "E"]),
    data=st.binary(max_size=120),
)
def test_fuzzed_columns(key: str, data: bytes) -> None:
    body = _good_body()
    body[key] = data
    decodes_or_payload_error(wrap(body))


# ---------------------------------------------------------------- birth


names = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,12}", fullmatch=True)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


positive = st.floats(min_value=1e-300, max_value=1e300, allow_subnormal=False)


@st.composite
def births(draw: st.DrawFn) -> Birth:
    ids = draw(st.lists(st.tuples(names, names), unique=True, max_size=30))
    points = tuple(
        PointInfo(
            i,
            d,
            p,
            draw(texts),
            draw(names),
            draw(names),
            draw(st.floats(-1e9, 1e9)),
            resolution=draw(st.none() | positive),
            deadband=draw(st.floats(0, 1e9)),
            report=draw(st.sampled_from(["deadband", "model", "full"])),
            heartbeat=draw(st.none() | positive),
        )
        for i, (d, p) in enumerate(ids)
    )
    return Birth(
        gateway=draw(names),
        session=draw(texts.filter(bool)),
        version=draw(texts),
        ts=draw(st.floats(0, 4e9)),
        points=points,
    )


@settings(FUZZ, max_examples=30)
@given(births())
def test_birth_round_trip(birth: Birth) -> None:
    payload = encode_birth(birth)
    assert decode_birth(payload) == birth
    compact = json.dumps(json.loads(payload), separators=(",", ":"), ensure_ascii=False)
    assert payload == compact.encode()


def test_birth_wire_form_and_order() -> None:
    doc = {
        "v": 1,
        "gateway": "gw",
        "session": "s9",
        "version": "0.1.0",
        "ts": 1700000000,
        "extra": {"ignored": True},
        "points": [
            {
                "index": 1,
                "device": "pump",
                "point": "flow",
                "unit": "m3/h",
                "type": "float32",
                "model": "level",
                "threshold": 10.83,
                "resolution": 0.1,
                "deadband": 0.25,
                "report": "model",
                "heartbeat": 60,
            },
            {
                "index": 0,
                "device": "pump",
                "point": "speed",
                "unit": "rpm",
                "type": "float32",
                "model": "none",
                "threshold": 9,
                "resolution": None,
                "deadband": 0,
                "report": "full",
                "heartbeat": None,
            },
        ],
    }
    birth = decode_birth(json.dumps(doc).encode())
    assert [p.id for p in birth.points] == ["pump/speed", "pump/flow"]
    assert birth.points[0].threshold == 9.0
    assert (birth.points[1].resolution, birth.points[1].deadband) == (0.1, 0.25)
    assert (birth.points[1].report, birth.points[1].heartbeat) == ("model", 60.0)
    assert (birth.points[0].resolution, birth.points[0].heartbeat) == (None, None)
    assert birth.ts == 1.7e9
    wire = encode_birth(birth)
    assert wire.startswith(b'{"v":1,"gateway":"gw","session":"s9",')
    assert json.loads(wire)["points"][0] == {
        "index": 0,
        "device": "pump",
        "point": "speed",
        "unit": "rpm",
        "type": "float32",
        "model": "none",
        "threshold": 9.0,
        "resolution": None,
        "deadband": 0.0,
        "report": "full",
        "heartbeat": None,
    }


def _birth_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        encode_birth(
            Birth(
                "gw",
                "s",
                "1",
                5.0,
                (
                    PointInfo(0, "d", "a", "u", "float32", "level", 1.0, 0.5, 1.0, "model", 10.0),
                    PointInfo(1, "d", "b", "", "uint16", "none", 2.0),
                ),
            )
        )
    )
    return doc


def _mutated(path: tuple[Any, ...], value: Any) -> bytes:
    doc = _birth_doc()
    target: Any = doc
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"v": 1, "ts": NaN}',
        b"\xff\xfe{}",
        '{"v":1}'.encode("utf-16"),
        b"[" * 100_000,
        _mutated(("v",), 2),
        _mutated(("v",), True),
        _mutated(("v",), KeyError),
        _mutated(("gateway",), "a/b"),
        _mutated(("gateway",), ""),
        _mutated(("session",), 3),
        _mutated(("version",), None),
        _mutated(("ts",), "now"),
        _mutated(("ts",), 10**400),
        _mutated(("ts",), True),
        _mutated(("points",), {}),
        _mutated(("points", 0), []),
        _mutated(("points", 0, "index"), 1),
        _mutated(("points", 1, "index"), 2),
        _mutated(("points", 1, "index"), -1),
        _mutated(("points", 1, "index"), 1.0),
        _mutated(("points", 1, "point"), "a"),
        _mutated(("points", 1, "point"), "x/y"),
        _mutated(("points", 1, "device"), ""),
        _mutated(("points", 1, "unit"), KeyError),
        _mutated(("points", 1, "type"), 5),
        _mutated(("points", 1, "model"), KeyError),
        _mutated(("points", 1, "threshold"), "high"),
        _mutated(("points", 1, "threshold"), None),
        _mutated(("points", 0, "resolution"), 0),
        _mutated(("points", 0, "resolution"), -0.1),
        _mutated(("points", 0, "resolution"), "0.1"),
        _mutated(("points", 0, "resolution"), KeyError),
        _mutated(("points", 0, "deadband"), -1),
        _mutated(("points", 0, "deadband"), None),
        _mutated(("points", 0, "deadband"), KeyError),
        _mutated(("points", 0, "report"), "fast"),
        _mutated(("points", 0, "report"), "default"),
        _mutated(("points", 0, "report"), KeyError),
        _mutated(("points", 0, "heartbeat"), 0),
        _mutated(("points", 0, "heartbeat"), True),
        _mutated(("points", 0, "heartbeat"), KeyError),
    ],
)
def test_invalid_births(payload: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_birth(payload)


@FUZZ
@given(st.binary(max_size=200))
def test_birth_decoder_on_random_bytes(data: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_birth(data)


def test_encode_birth_refuses_what_would_not_decode() -> None:
    with pytest.raises(ValueError, match="index"):
        encode_birth(Birth("gw", "s", "1", 0.0, (PointInfo(1, "d", "p", "", "t", "m", 1.0),)))
    with pytest.raises(ValueError, match="JSON"):
        encode_birth(Birth("gw", "s", "1", math.nan, ()))
    with pytest.raises(ValueError, match="resolution"):
        encode_birth(Birth("gw", "s", "1", 0.0, (PointInfo(0, "d", "p", "", "t", "m", 1.0, 0.0),)))
    with pytest.raises(ValueError, match="JSON"):
        encode_birth(
            Birth("gw", "s", "1", 0.0, (PointInfo(0, "d", "p", "", "t", "m", 1.0, math.inf),))
        )


# ---------------------------------------------------------------- status and events


def test_status_round_trip_and_tolerance() -> None:
    st_ = Status("offline", "s1", 1700000000.5)
    assert decode_status(encode_status(st_)) == st_
    assert decode_status(b'{"state":"online","session":"s","ts":1}') == Status("online", "s", 1.0)
    for bad in (
        b'{"state":"maybe","session":"s","ts":1}',
        b'{"v":2,"state":"online","session":"s","ts":1}',
        b'{"state":"online","session":"s"}',
        b'{"state":"online","ts":1}',
    ):
        with pytest.raises(PayloadError):
            decode_status(bad)


ALARM = {
    "gateway": "gw",
    "session": "s",
    "ts": 12.5,
    "type": "alarm",
    "device": "pump",
    "point": "flow",
    "alarm": 2,
    "previous": 0,
    "index": 3,
    "score": 1.7,
    "value": None,
}
ASSET_ALARM = {
    **{k: v for k, v in ALARM.items() if k not in {"point", "index", "value"}},
    "asset": "hydraulics",
    "severity": "major",
    "contributions": {"flow": 0.75, "head": 0.25},
}
SPANNING_ALARM = {
    **ASSET_ALARM,
    "devices": ["pump", "motor"],
    "contributions": {"pump.flow": 0.75, "motor.temperature": 0.25},
}
DEVICE = {
    "gateway": "gw",
    "session": "s",
    "ts": 12.5,
    "type": "device",
    "device": "pump",
    "state": "offline",
    "detail": "timeout",
}


@pytest.mark.parametrize("event", [ALARM, ASSET_ALARM, SPANNING_ALARM, DEVICE])
def test_event_round_trip(event: dict[str, Any]) -> None:
    payload = encode_event(event)
    assert json.loads(payload)["v"] == 1
    assert decode_event(payload) == {"v": 1, **event}


@pytest.mark.parametrize(
    "event",
    [
        {**ALARM, "type": "party"},
        {**ALARM, "alarm": 3},
        {**ALARM, "previous": -1},
        {**ALARM, "score": "high"},
        {**ALARM, "point": None},
        {**ALARM, "v": 2},
        {**ALARM, "gateway": "a#"},
        {**ALARM, "ts": None},
        {**ASSET_ALARM, "point": "flow"},  # a point and an asset
        {k: v for k, v in ALARM.items() if k != "point"},  # neither
        {**ASSET_ALARM, "severity": "bad"},
        {**ASSET_ALARM, "contributions": {}},
        {**ASSET_ALARM, "contributions": {"flow": 1.5}},
        {**ASSET_ALARM, "contributions": {"flow": "most"}},
        {**ASSET_ALARM, "contributions": [0.5, 0.5]},
        {**SPANNING_ALARM, "devices": "pump,motor"},
        {**SPANNING_ALARM, "devices": ["pump"]},
        {**SPANNING_ALARM, "devices": ["pump", "pump"]},
        {**SPANNING_ALARM, "devices": ["motor", "pump"]},  # not led by 'device'
        {**SPANNING_ALARM, "devices": ["pump", "a/b"]},
        {**SPANNING_ALARM, "devices": ["pump", 3]},
        {**ALARM, "devices": ["pump", "motor"]},  # a point's alarm
        {**DEVICE, "state": ""},
        {**DEVICE, "detail": 4},
        {k: v for k, v in DEVICE.items() if k != "session"},
    ],
)
def test_invalid_events(event: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - encoder misuse is a plain ValueError
        encode_event(event)
    with pytest.raises(PayloadError):
        decode_event(json.dumps(event).encode())


def test_event_with_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="JSON"):
        encode_event({**ALARM, "value": math.nan})
