"""Uplink codec and topic tree: round trips, known bytes, and hostile input."""

from __future__ import annotations

import dataclasses
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
    Birth,
    Frame,
    PointInfo,
    Status,
    decode_birth,
    decode_event,
    decode_frame,
    decode_status,
    encode_birth,
    encode_event,
    encode_frame,
    encode_status,
)
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
        score=rng.uniform(0, 3, size=n).astype(np.float32).astype(np.float64),
        alarm=rng.integers(0, 3, size=n).astype(np.uint8),
        quality=rng.integers(0, 64, size=n).astype(np.uint16),
    )


def wrap(body: Any, *, header: bytes = b"ET\x01\x00") -> bytes:
    """Build a frame by hand from any msgpack-able body."""
    return header + zstandard.ZstdCompressor().compress(msgpack.packb(body, use_bin_type=True))


def body_of(payload: bytes) -> dict[str, Any]:
    """Unpack a frame body by hand, independently of the decoder."""
    assert payload[:2] == b"ET"
    body: dict[str, Any] = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(payload[4:]))
    return body


def bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).view(np.uint64)


def decodes_or_payload_error(payload: bytes, **kw: Any) -> Frame | None:
    try:
        return decode_frame(payload, **kw)
    except PayloadError:
        return None


VALID = encode_frame(Frame("gw-1", "s1", 7, batch(12), snapshot=True))


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


# ---------------------------------------------------------------- frame: known bytes


@pytest.mark.parametrize(
    ("replay", "snapshot", "flags"),
    [(False, False, 0), (True, False, 1), (False, True, 2), (True, True, 3)],
)
def test_header_bytes(replay: bool, snapshot: bool, flags: int) -> None:
    payload = encode_frame(Frame("gw", "s", 0, batch(3), snapshot=snapshot, replay=replay))
    assert payload[:4] == b"ET\x01" + bytes([flags])
    assert payload[4:8] == ZSTD_MAGIC
    frame = decode_frame(payload)
    assert (frame.replay, frame.snapshot) == (replay, snapshot)


def test_encoder_body_layout() -> None:
    b = TwinBatch(
        index=np.array([5, 0, 70000]),
        ts=np.array([10.0, 10.5, 10.2504]),
        value=np.array([1.5, np.nan, -2.0]),
        estimate=np.array([1.0, 2.0, 3.0]),
        score=np.array([0.25, 1.5, 0.0]),
        alarm=np.array([0, 2, 1], dtype=np.uint8),
        quality=np.array([0, 1, 40], dtype=np.uint16),
    )
    body = body_of(encode_frame(Frame("gw", "sess", 42, b)))
    assert (body["gateway"], body["session"], body["seq"], body["ts0"]) == ("gw", "sess", 42, 10000)
    assert body["idx"] == ["<u4", struct.pack("<3I", 5, 0, 70000)]
    assert body["dts"] == ["<i8", struct.pack("<3q", 0, 500, -250)]  # 10.2504 s -> 10250 ms
    assert body["value"][0] == "<f8"
    assert body["value"][1][:8] == struct.pack("<d", 1.5)
    assert body["score"] == ["<f4", struct.pack("<3f", 0.25, 1.5, 0.0)]
    assert body["alarm"] == ["|u1", bytes([0, 2, 1])]
    assert body["quality"] == ["<u2", struct.pack("<3H", 0, 1, 40)]


def test_decoder_reads_hand_built_frame() -> None:
    body = {
        "gateway": "pump-gw",
        "session": "abc",
        "seq": 3,
        "ts0": 1_700_000_000_000,
        "idx": ["<u4", struct.pack("<2I", 1, 0)],
        "dts": ["<i8", struct.pack("<2q", 250, -100)],
        "value": ["<f8", struct.pack("<2d", 4.5, float("nan"))],
        "estimate": ["<f8", struct.pack("<2d", 4.4, 0.8)],
        "score": ["<f4", struct.pack("<2f", 0.5, 2.0)],
        "alarm": ["|u1", bytes([0, 2])],
        "quality": ["<u2", struct.pack("<2H", 0, 1)],
        "future_key": "ignored",
    }
    frame = decode_frame(wrap(body, header=b"ET\x01\x81"))  # bit 7: reserved, ignored
    assert (frame.gateway, frame.session, frame.seq) == ("pump-gw", "abc", 3)
    assert frame.replay
    assert not frame.snapshot
    b = frame.batch
    assert b.index.tolist() == [1, 0]
    assert b.ts.tolist() == [1_700_000_000.25, 1_700_000_000.15]
    assert b.value[0] == 4.5
    assert math.isnan(b.value[1])
    assert b.estimate.tolist() == [4.4, 0.8]
    assert b.score.tolist() == [0.5, 2.0]
    assert b.alarm.tolist() == [0, 2]
    assert b.quality.tolist() == [0, 1]


# ---------------------------------------------------------------- frame: round trips


@st.composite
def batches(draw: st.DrawFn, max_rows: int = 40) -> TwinBatch:
    n = draw(st.integers(0, max_rows))

    def col(dtype: Any, elements: st.SearchStrategy[Any]) -> Any:
        return draw(hnp.arrays(dtype, n, elements=elements))

    return TwinBatch(
        index=col(np.int64, st.integers(0, 2**32 - 1)),
        ts=col(np.float64, st.floats(-1e11, 1e11)),
        value=col(np.float64, st.floats(allow_nan=True, allow_infinity=True)),
        estimate=col(np.float64, st.floats(allow_nan=True, allow_infinity=True)),
        score=col(np.float64, st.floats(width=32, allow_nan=True)),
        alarm=col(np.uint8, st.integers(0, 2)),
        quality=col(np.uint16, st.integers(0, 0xFFFF)),
    )


@FUZZ
@given(
    b=batches(),
    seq=st.integers(0, 2**64 - 1),
    session=st.text(min_size=1, max_size=20),
    replay=st.booleans(),
    snapshot=st.booleans(),
)
def test_frame_round_trip(
    b: TwinBatch, seq: int, session: str, replay: bool, snapshot: bool
) -> None:
    out = decode_frame(encode_frame(Frame("gw", session, seq, b, snapshot, replay)))
    assert (out.gateway, out.session, out.seq) == ("gw", session, seq)
    assert (out.replay, out.snapshot) == (replay, snapshot)
    ob = out.batch
    assert ob.index.dtype == np.int64
    assert ob.index.tolist() == b.index.tolist()
    np.testing.assert_array_equal(ob.ts, np.rint(b.ts * 1000.0) / 1000.0)
    np.testing.assert_array_equal(bits(ob.value), bits(b.value))  # exact, NaN payloads too
    np.testing.assert_array_equal(bits(ob.estimate), bits(b.estimate))
    np.testing.assert_array_equal(ob.score, b.score)
    np.testing.assert_array_equal(ob.alarm, b.alarm)
    np.testing.assert_array_equal(ob.quality, b.quality)


def test_empty_frame_round_trip() -> None:
    f64 = np.zeros(0)
    empty = TwinBatch(
        np.zeros(0, np.int64), f64, f64, f64, f64, np.zeros(0, np.uint8), np.zeros(0, np.uint16)
    )
    out = decode_frame(encode_frame(Frame("gw", "s", 0, empty)))
    assert out.batch.index.size == 0
    assert out.batch.ts.size == 0
    assert out.seq == 0


def test_many_points_round_trip_and_compress() -> None:
    b = batch(100_000, seed=3)
    payload = encode_frame(Frame("gw", "s", 1, b))
    assert len(payload) < 100_000 * 35  # raw column bytes
    out = decode_frame(payload)
    np.testing.assert_array_equal(out.batch.index, b.index)
    np.testing.assert_array_equal(bits(out.batch.value), bits(b.value))
    np.testing.assert_array_equal(out.batch.ts, b.ts)


def test_decoded_arrays_are_writable_and_native() -> None:
    out = decode_frame(VALID).batch
    for arr in (out.index, out.ts, out.value, out.estimate, out.score, out.alarm, out.quality):
        assert arr.flags.writeable
        assert arr.dtype.isnative


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"ts": np.array([np.nan, 1.0, 2.0])}, "finite"),
        ({"ts": np.array([2e11, 1.0, 2.0])}, "epoch"),
        ({"index": np.array([-1, 0, 1])}, "index"),
        ({"index": np.array([2**32, 0, 1])}, "index"),
        ({"alarm": np.array([3, 0, 0], dtype=np.uint8)}, "alarm"),
        ({"quality": np.array([70000, 0, 0])}, "quality"),
        ({"value": np.zeros(2)}, "value"),
    ],
)
def test_encoder_rejects_bad_batches(change: dict[str, Any], match: str) -> None:
    b = batch(3)
    fields = {f.name: getattr(b, f.name) for f in dataclasses.fields(b)}
    fields.update(change)
    with pytest.raises(ValueError, match=match):
        encode_frame(Frame("gw", "s", 0, TwinBatch(**fields)))


def test_encoder_rejects_bad_ids_and_oversized_batches() -> None:
    with pytest.raises(ValueError, match="gateway"):
        encode_frame(Frame("g/w", "s", 0, batch(1)))
    with pytest.raises(ValueError, match="session"):
        encode_frame(Frame("gw", "", 0, batch(1)))
    with pytest.raises(ValueError, match="seq"):
        encode_frame(Frame("gw", "s", -1, batch(1)))
    with pytest.raises(ValueError, match="split"):
        encode_frame(Frame("gw", "s", 0, batch(250_000)))


# ---------------------------------------------------------------- frame: hostile input


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_payload_error(data: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_frame(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bodies_only_raise_payload_error(data: bytes) -> None:
    with pytest.raises(PayloadError):
        decode_frame(b"ET\x01\x00" + data)
    with pytest.raises(PayloadError):
        decode_frame(b"ET\x01\x00" + ZSTD_MAGIC + data)


def test_every_truncation_is_rejected() -> None:
    for cut in range(len(VALID)):
        with pytest.raises(PayloadError):
            decode_frame(VALID[:cut])


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
        decode_frame(payload)


def test_non_bytes_payload() -> None:
    with pytest.raises(PayloadError):
        decode_frame("ET\x01\x00")  # type: ignore[arg-type]


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
            decode_frame(b"ET\x01\x00" + sized)
        with pytest.raises(PayloadError, match="content size"):
            decode_frame(b"ET\x01\x00" + unsized)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024


def test_body_over_the_limit_is_refused() -> None:
    payload = encode_frame(Frame("gw", "s", 0, batch(1000)))
    assert decode_frame(payload).batch.index.size == 1000
    with pytest.raises(PayloadError, match="limit"):
        decode_frame(payload, max_decompressed=10_000)


def _good_body() -> dict[str, Any]:
    return body_of(VALID)


WRONG_VALUES: list[Any] = [None, "x", 1.5, [], {}, True, b"", -1, 2**64 - 1, float("nan")]


STILL_VALID = [("seq", 2**64 - 1), ("gateway", "x"), ("session", "x"), ("ts0", -1)]


@pytest.mark.parametrize(
    ("key", "wrong"),
    [(k, w) for k in _good_body() for w in WRONG_VALUES if (k, w) not in STILL_VALID],
)
def test_wrong_msgpack_types(key: str, wrong: Any) -> None:
    body = _good_body()
    body[key] = wrong
    with pytest.raises(PayloadError):
        decode_frame(wrap(body))


@pytest.mark.parametrize("key", list(_good_body()))
def test_missing_keys(key: str) -> None:
    body = _good_body()
    del body[key]
    with pytest.raises(PayloadError, match=key):
        decode_frame(wrap(body))


def _with(**changes: Any) -> bytes:
    body = _good_body()
    body.update(changes)
    return wrap(body)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (wrap([1, 2, 3]), "map"),
        (wrap(7), "map"),
        (b"ET\x01\x00" + zstandard.ZstdCompressor().compress(b"\xc1"), "msgpack"),
        (b"ET\x01\x00" + zstandard.ZstdCompressor().compress(b"\x01\x02"), "msgpack"),
        (b"ET\x01\x00" + zstandard.ZstdCompressor().compress(b"\x91" * 5000), "msgpack"),
        (b"ET\x01\x00" + zstandard.ZstdCompressor().compress(b""), "msgpack"),
        (_with(value=[">f8", bytes(96)]), "dtype"),
        (_with(value=["<f4", bytes(48)]), "dtype"),
        (_with(idx=["<u4", bytes(47)]), "whole"),
        (_with(value=["<f8", bytes(88)]), "rows"),
        (_with(value=["<f8"]), "dtype, bytes"),
        (_with(value=["<f8", "text"]), "bin"),
        (_with(alarm=["|u1", bytes([3] * 12)]), "alarm"),
        (_with(ts0=float("nan")), "non-finite"),
        (_with(ts0=float("inf")), "non-finite"),
        (_with(ts0=1.7e12), "integer"),
        (_with(ts0=2**62), "outside"),
        (_with(dts=["<i8", struct.pack("<12q", *([2**62] * 12))]), "delta"),
        (_with(dts=["<i8", struct.pack("<12q", *([-(2**63)] * 12))]), "delta"),
        (_with(dts=["<i8", struct.pack("<12q", *([2**48] * 12))]), "offset"),
        (_with(ts0=2**47, dts=["<i8", struct.pack("<12q", *([1] * 12))]), "timestamps"),
        (_with(seq=-1), "seq"),
        (_with(seq=True), "seq"),
        (_with(gateway="a/b"), "gateway"),
        (_with(session=""), "session"),
        (wrap({**_good_body(), 1: 2}), "msgpack"),
        (_with(seq=msgpack.Timestamp(1)), "seq"),
    ],
)
def test_hostile_bodies(payload: bytes, match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        decode_frame(payload)


def test_unknown_keys_are_ignored() -> None:
    frame = decode_frame(_with(t=msgpack.Timestamp(1), note="x"))
    assert frame.seq == 7
    assert frame.batch.index.tolist() == list(range(12))


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


@FUZZ
@given(key=st.sampled_from(sorted(_good_body())), value=msgpack_values)
def test_fuzzed_body_values(key: str, value: Any) -> None:
    body = _good_body()
    body[key] = value
    decodes_or_payload_error(wrap(body))


@settings(FUZZ, max_examples=60)
@given(body=st.dictionaries(st.text(max_size=8), msgpack_values, max_size=12))
def test_fuzzed_bodies(body: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        decode_frame(wrap(body))


# ---------------------------------------------------------------- birth


names = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,12}", fullmatch=True)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


@st.composite
def births(draw: st.DrawFn) -> Birth:
    ids = draw(st.lists(st.tuples(names, names), unique=True, max_size=30))
    points = tuple(
        PointInfo(i, d, p, draw(texts), draw(names), draw(names), draw(st.floats(-1e9, 1e9)))
        for i, (d, p) in enumerate(ids)
    )
    return Birth(
        gateway=draw(names),
        session=draw(texts.filter(bool)),
        version=draw(texts),
        ts=draw(st.floats(0, 4e9)),
        points=points,
    )


@settings(FUZZ, max_examples=60)
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
            },
            {
                "index": 0,
                "device": "pump",
                "point": "speed",
                "unit": "rpm",
                "type": "float32",
                "model": "none",
                "threshold": 9,
            },
        ],
    }
    birth = decode_birth(json.dumps(doc).encode())
    assert [p.id for p in birth.points] == ["pump/speed", "pump/flow"]
    assert birth.points[0].threshold == 9.0
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
                    PointInfo(0, "d", "a", "u", "float32", "level", 1.0),
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
DEVICE = {
    "gateway": "gw",
    "session": "s",
    "ts": 12.5,
    "type": "device",
    "device": "pump",
    "state": "offline",
    "detail": "timeout",
}


@pytest.mark.parametrize("event", [ALARM, DEVICE])
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
