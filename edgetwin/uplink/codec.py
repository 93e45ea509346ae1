"""Uplink payloads ⇄ bytes: JSON births, status and events; state frames as columns.

Pure: no asyncio, no I/O. Decoders raise :class:`PayloadError`, and nothing else, on any bad
input. The layout is specified in docs/wire-format.md.

A state frame is handled here as a :class:`WireFrame`: its columns exactly as they travel
(integer deltas, float64 escapes, quantised scores), with no per-session state. Turning twin
batches into wire frames and back (quantisation, deltas against earlier frames) is
:mod:`edgetwin.uplink.framer`'s job.

zstd compressor and decompressor objects are not safe for concurrent use from several threads,
so each thread reuses its own pair (``threading.local``); single-threaded callers pay for one.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

import msgpack
import numpy as np
import numpy.typing as npt
import zstandard

from edgetwin.core.types import FloatArray, IntArray, TwinBatch, Uint16Array, point_id
from edgetwin.errors import PayloadError
from edgetwin.uplink.topics import validate_gateway

VERSION = 1
MAGIC = b"ET"
HEADER_SIZE = 4
FLAG_REPLAY = 0x01
FLAG_SNAPSHOT = 0x02
DEFAULT_MAX_DECOMPRESSED = 8 * 1024 * 1024
# |unix ms| bound (about year 6400): keeps delta sums inside int64 and ms exact as float64
MAX_TS_MS = 2**47
_MAX_STEP_MS = 2**49
_MAX_OFFSET_MS = 2**48
MAX_INDEX = 2**32 - 1
# Quantised values are integers q with |q| <= MAX_Q (exact in float64); deltas of two of them
# fit in MAX_DELTA, which keeps every running sum far from int64 overflow.
MAX_Q = 2**53
MAX_DELTA = 2**54
SCORE_SCALE = 32  # score byte = round(score * 32), 0..255: 1/32 steps up to 7.97
ROW_VALUE_FLOAT = 0x04  # row flag: the value is in the float64 column
ROW_ESTIMATE_FLOAT = 0x08  # row flag: the estimate is in the float64 column
_ROW_ALARM = 0x03
_ROW_RESERVED = 0xF0
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BYTES = (bytes, bytearray, memoryview)

EVENT_TYPES = ("alarm", "device", "drop")
SEVERITIES = ("minor", "major", "critical")
StatusState = Literal["online", "offline"]
ReportMode = Literal["deadband", "model", "full"]
REPORT_MODES: tuple[ReportMode, ...] = get_args(ReportMode)


class _Zstd(threading.local):
    def __init__(self) -> None:
        self.cctx = zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True)
        self.dctx = zstandard.ZstdDecompressor()


_zstd = _Zstd()


@dataclass(frozen=True, slots=True)
class PointInfo:
    """One row of the birth's point table; ``index`` is the point's position in frames."""

    index: int
    device: str
    point: str
    unit: str
    type: str
    model: str
    threshold: float
    resolution: float | None = None  # quantisation step on the wire; None: exact float64
    deadband: float = 0.0  # report-by-exception deadband, in the point's unit
    report: ReportMode = "full"
    heartbeat: float | None = None  # longest silence upstream, s; None: no bound

    @property
    def id(self) -> str:
        """Return the gateway-wide point id ``device/point``."""
        return point_id(self.device, self.point)


@dataclass(frozen=True, slots=True)
class Birth:
    """What a session's frames mean: the point table, ordered by index."""

    gateway: str
    session: str
    version: str
    ts: float
    points: tuple[PointInfo, ...]


@dataclass(frozen=True, slots=True)
class Status:
    """Retained online/offline state of a gateway session."""

    state: StatusState
    session: str
    ts: float


@dataclass(frozen=True, slots=True, eq=False)
class WireFrame:
    """A state frame's columns as they travel: no session state applied.

    Row *k* is one point sample. ``value_float[k]`` says whether its value is the next entry
    of ``value_f`` (float64) or of ``value_q`` (an integer delta, see framer); likewise for the
    estimate. ``score_q`` is ``round(score * SCORE_SCALE)``.
    """

    gateway: str
    session: str
    seq: int
    index: IntArray
    ts_ms: IntArray
    alarm: npt.NDArray[np.uint8]
    quality: Uint16Array
    score_q: npt.NDArray[np.uint8]
    value_float: npt.NDArray[np.bool_]
    value_q: IntArray
    value_f: FloatArray
    estimate_float: npt.NDArray[np.bool_]
    estimate_q: IntArray
    estimate_f: FloatArray
    snapshot: bool = False
    replay: bool = False

    @property
    def rows(self) -> int:
        """Number of point samples."""
        return len(self.index)


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """A twin batch for :func:`encode_frame`: exact float64 values, no session state."""

    gateway: str
    session: str
    seq: int
    batch: TwinBatch
    snapshot: bool = False
    replay: bool = False


# ---------------------------------------------------------------- integer columns


def zigzag(values: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """Map int64 to uint64 so that small magnitudes of either sign become small numbers."""
    v = np.asarray(values, dtype=np.int64)
    return ((v << 1) ^ (v >> 63)).view(np.uint64)


def unzigzag(values: npt.NDArray[np.uint64]) -> IntArray:
    """Invert :func:`zigzag`."""
    u = np.asarray(values, dtype=np.uint64)
    out: IntArray = ((u >> np.uint64(1)) ^ (np.uint64(0) - (u & np.uint64(1)))).view(np.int64)
    return out


_VARINT_STEPS = np.array([1 << (7 * k) for k in range(1, 10)], dtype=np.uint64)
_VARINT_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)
_VARINT_BYTE = np.arange(10)


def pack_varints(values: npt.ArrayLike) -> bytes:
    """Zigzag LEB128: 7 bits per byte, least significant group first, high bit = more."""
    u = zigzag(values)
    if not len(u):
        return b""
    # Bytes per value: one, plus one per 7-bit step the value reaches.
    sizes = np.searchsorted(_VARINT_STEPS, u, side="right")[:, None] + 1
    width = int(sizes.max())
    # Row i holds value i's groups; only its first sizes[i] bytes are kept, row by row.
    groups = (u[:, None] >> _VARINT_SHIFTS[:width]) & np.uint64(0x7F)
    groups |= (_VARINT_BYTE[:width] < sizes - 1) * np.uint64(0x80)
    return groups[_VARINT_BYTE[:width] < sizes].astype(np.uint8).tobytes()


def unpack_varints(data: bytes, count: int, what: str) -> IntArray:
    """Decode exactly ``count`` zigzag varints filling ``data``; PayloadError otherwise."""
    b = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(b < 0x80)
    if len(ends) != count or (count and ends[-1] != len(b) - 1) or (not count and len(b)):
        raise PayloadError(f"frame column {what!r} does not hold {count} varints")
    if not count:
        return np.zeros(0, dtype=np.int64)
    starts = np.empty(count, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    sizes = ends - starts + 1
    if sizes.max() > 10:
        raise PayloadError(f"frame column {what!r} has a varint longer than 64 bits")
    pos = np.arange(len(b), dtype=np.int64) - np.repeat(starts, sizes)
    if ((pos == 9) & (b > 1)).any():
        raise PayloadError(f"frame column {what!r} has a varint longer than 64 bits")
    shifted = (b & 0x7F).astype(np.uint64) << (pos * 7).astype(np.uint64)
    return unzigzag(np.add.reduceat(shifted, starts))


# ---------------------------------------------------------------- state frames


def pack_frame(frame: WireFrame) -> bytes:
    """Encode a wire frame; ValueError if it breaks a limit (the decoder would refuse it)."""
    validate_gateway(frame.gateway)
    if not isinstance(frame.session, str) or not frame.session:
        raise ValueError("session must be a non-empty string")
    if not 0 <= frame.seq < 2**64:
        raise ValueError(f"seq {frame.seq} is not a uint64")
    n = frame.rows
    per_row = ("index", "ts_ms", "alarm", "quality", "score_q", "value_float", "estimate_float")
    for name in per_row:
        col = getattr(frame, name)
        if np.ndim(col) != 1 or len(col) != n:
            raise ValueError(f"wire frame column {name!r} must be 1-D with {n} rows")
    index = np.asarray(frame.index, dtype=np.int64)
    if n and (index.min() < 0 or index.max() > MAX_INDEX):
        raise ValueError(f"point index outside 0..{MAX_INDEX}")
    ms = np.asarray(frame.ts_ms, dtype=np.int64)
    if n and np.abs(ms).max() > MAX_TS_MS:
        raise ValueError(f"timestamps must lie within ±{MAX_TS_MS} ms of the epoch")
    alarm = np.asarray(frame.alarm)
    if n and (alarm.min() < 0 or alarm.max() > 2):
        raise ValueError("alarm states must be 0, 1 or 2")
    quality = np.asarray(frame.quality)
    if n and (quality.min() < 0 or quality.max() > 0xFFFF):
        raise ValueError("quality must fit in uint16")
    vf = np.asarray(frame.value_float, dtype=bool)
    ef = np.asarray(frame.estimate_float, dtype=bool)
    _check_split("value", vf, frame.value_q, frame.value_f)
    _check_split("estimate", ef, frame.estimate_q, frame.estimate_f)
    flags = (
        alarm.astype(np.uint8)
        | np.where(vf, ROW_VALUE_FLOAT, 0).astype(np.uint8)
        | np.where(ef, ROW_ESTIMATE_FLOAT, 0).astype(np.uint8)
    )
    ts0 = int(ms[0]) if n else 0
    body = {
        "g": frame.gateway,
        "s": frame.session,
        "n": int(frame.seq),
        "t": ts0,
        "r": n,
        "i": pack_varints(_steps(index, 0)),
        "d": pack_varints(_steps(ms, ts0)),
        "f": flags.tobytes(),
        "q": pack_varints(quality.astype(np.int64)),
        "c": np.asarray(frame.score_q, dtype=np.uint8).tobytes(),
        "v": pack_varints(frame.value_q),
        "V": np.asarray(frame.value_f, dtype="<f8").tobytes(),
        "e": pack_varints(frame.estimate_q),
        "E": np.asarray(frame.estimate_f, dtype="<f8").tobytes(),
    }
    raw: bytes = msgpack.packb(body, use_bin_type=True)
    if len(raw) > DEFAULT_MAX_DECOMPRESSED:
        raise ValueError(f"frame body is {len(raw)} bytes; split the batch (limit 8 MiB)")
    header = (FLAG_REPLAY if frame.replay else 0) | (FLAG_SNAPSHOT if frame.snapshot else 0)
    compressed: bytes = _zstd.cctx.compress(raw)
    return MAGIC + bytes((VERSION, header)) + compressed


def _steps(x: IntArray, first: int) -> IntArray:
    """``np.diff(x, prepend=first)``, without its generality (this runs once per frame)."""
    out = np.empty_like(x)
    out[:1] = x[:1] - first
    np.subtract(x[1:], x[:-1], out=out[1:])
    return out


def _check_split(name: str, is_float: npt.NDArray[np.bool_], q: IntArray, f: FloatArray) -> None:
    n_float = int(is_float.sum())
    if np.ndim(q) != 1 or np.ndim(f) != 1 or len(f) != n_float or len(q) != len(is_float) - n_float:
        raise ValueError(f"{name}: {n_float} float rows need as many float64 entries")
    qa = np.asarray(q)
    if qa.size and (qa.dtype.kind not in "iu" or qa.min() < -MAX_DELTA or qa.max() > MAX_DELTA):
        raise ValueError(f"{name} deltas must be integers within ±{MAX_DELTA}")


def read_header(payload: bytes) -> tuple[int, bytes]:
    """Check magic and version; return (header flags, the zstd body)."""
    if not isinstance(payload, _BYTES):
        raise PayloadError(f"frame payload must be bytes, not {type(payload).__name__}")
    data = bytes(payload)
    if len(data) < HEADER_SIZE:
        raise PayloadError(f"truncated frame: {len(data)} bytes, the header alone is 4")
    if data[:2] != MAGIC:
        raise PayloadError(f"not an edgetwin frame: magic {data[:2]!r}, expected {MAGIC!r}")
    if data[2] != VERSION:
        raise PayloadError(f"unsupported frame version {data[2]} (this decoder reads {VERSION})")
    return data[3], data[HEADER_SIZE:]


def unpack_frame(payload: bytes, *, max_decompressed: int = DEFAULT_MAX_DECOMPRESSED) -> WireFrame:
    """Decode a frame's columns; never decompresses more than ``max_decompressed`` bytes."""
    flags, compressed = read_header(payload)  # header bits other than 0-1 are ignored
    body = _unpack(_decompress(compressed, max_decompressed))
    n = _int(body, "r", "frame", 0, 2**32)
    row_flags = _bin(body, "f")
    if len(row_flags) != n:
        raise PayloadError(f"frame column 'f' has {len(row_flags)} rows, not {n}")
    rf = np.frombuffer(row_flags, dtype=np.uint8)
    if n and (rf & _ROW_RESERVED).any():
        raise PayloadError("frame row flags use reserved bits 4-7")
    alarm = rf & _ROW_ALARM
    if n and alarm.max() > 2:
        raise PayloadError(f"frame alarm state {int(alarm.max())} is not 0, 1 or 2")
    steps = _varints(body, "i", n)
    if n and (steps.min() < -MAX_INDEX or steps.max() > MAX_INDEX):
        raise PayloadError("frame point index deltas are out of range")
    index = np.cumsum(steps, dtype=np.int64)
    if n and (index.min() < 0 or index.max() > MAX_INDEX):
        raise PayloadError(f"frame point indexes leave 0..{MAX_INDEX}")
    ts0 = _int(body, "t", "frame", -MAX_TS_MS, MAX_TS_MS)
    ms = ts0 + _offsets(_varints(body, "d", n))
    if n and (ms.min() < -MAX_TS_MS or ms.max() > MAX_TS_MS):
        raise PayloadError(f"frame timestamps leave ±{MAX_TS_MS} ms")
    quality = _varints(body, "q", n)
    if n and (quality.min() < 0 or quality.max() > 0xFFFF):
        raise PayloadError("frame quality does not fit in uint16")
    score = _bin(body, "c")
    if len(score) != n:
        raise PayloadError(f"frame column 'c' has {len(score)} rows, not {n}")
    vf = (rf & ROW_VALUE_FLOAT).astype(bool)
    ef = (rf & ROW_ESTIMATE_FLOAT).astype(bool)
    value_q, value_f = _split(body, "v", "V", vf)
    estimate_q, estimate_f = _split(body, "e", "E", ef)
    return WireFrame(
        gateway=_gateway(body, "frame", "g"),
        session=_str(body, "s", "frame"),
        seq=_int(body, "n", "frame", 0, 2**64 - 1),
        index=index,
        ts_ms=ms,
        alarm=alarm.astype(np.uint8),
        quality=quality.astype(np.uint16),
        score_q=np.frombuffer(score, dtype=np.uint8).copy(),
        value_float=vf,
        value_q=value_q,
        value_f=value_f,
        estimate_float=ef,
        estimate_q=estimate_q,
        estimate_f=estimate_f,
        snapshot=bool(flags & FLAG_SNAPSHOT),
        replay=bool(flags & FLAG_REPLAY),
    )


def _bin(body: Mapping[str, Any], key: str) -> bytes:
    data = body.get(key)
    if not isinstance(data, bytes):
        raise PayloadError(f"frame column {key!r} must be msgpack bin")
    return data


def _varints(body: Mapping[str, Any], key: str, count: int) -> IntArray:
    return unpack_varints(_bin(body, key), count, key)


def _split(
    body: Mapping[str, Any], qkey: str, fkey: str, is_float: npt.NDArray[np.bool_]
) -> tuple[IntArray, FloatArray]:
    n_float = int(is_float.sum())
    q = _varints(body, qkey, len(is_float) - n_float)
    if q.size and (q.min() < -MAX_DELTA or q.max() > MAX_DELTA):
        raise PayloadError(f"frame column {qkey!r} has deltas beyond ±{MAX_DELTA}")
    data = _bin(body, fkey)
    if len(data) != 8 * n_float:
        raise PayloadError(f"frame column {fkey!r} is {len(data)} bytes, not {n_float} float64")
    return q, np.frombuffer(data, dtype="<f8").astype(np.float64)


def _decompress(body: bytes, limit: int) -> bytes:
    if len(body) < 4 or body[:4] != _ZSTD_MAGIC:
        what = "truncated frame: no zstd body" if len(body) < 4 else "frame body is not zstd"
        raise PayloadError(what)
    try:
        size = zstandard.frame_content_size(body)
    except zstandard.ZstdError as exc:
        raise PayloadError(f"truncated frame: bad zstd frame header ({exc})") from exc
    if size < 0:
        raise PayloadError("zstd frame does not declare its content size")
    if size > limit:
        raise PayloadError(f"frame body would decompress to {size} bytes, over the {limit} limit")
    try:
        out: bytes = _zstd.dctx.decompress(body, max_output_size=limit, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise PayloadError(f"frame body does not decompress (truncated or corrupt): {exc}") from exc
    return out


def _unpack(raw: bytes) -> dict[str, Any]:
    try:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except (ValueError, TypeError, OverflowError) as exc:  # msgpack's errors are ValueErrors
        raise PayloadError(f"frame body is not valid msgpack: {exc}") from exc
    if not isinstance(obj, dict):
        raise PayloadError(f"frame body must be a msgpack map, not {type(obj).__name__}")
    return obj


def _offsets(dts: IntArray) -> IntArray:
    # Bounded steps keep the first out-of-range prefix sum exact, so int64 wrap cannot hide it.
    if dts.size and (dts.min() < -_MAX_STEP_MS or dts.max() > _MAX_STEP_MS):
        raise PayloadError("frame time deltas are out of range")
    offsets = np.cumsum(dts, dtype=np.int64)
    if offsets.size and (offsets.min() < -_MAX_OFFSET_MS or offsets.max() > _MAX_OFFSET_MS):
        raise PayloadError("frame time offsets are out of range")
    return offsets


def quantise_score(score: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Score byte: ``round(score * 32)`` clipped to 0..255; NaN and negatives give 0."""
    s = np.asarray(score, dtype=np.float64) * SCORE_SCALE
    with np.errstate(invalid="ignore"):
        s = np.where(np.isnan(s), 0.0, np.clip(np.rint(s), 0.0, 255.0))
    return s.astype(np.uint8)


def check_batch(batch: TwinBatch, n_points: int = MAX_INDEX + 1) -> tuple[IntArray, IntArray]:
    """Validate a twin batch for a frame; return its point indexes and times in whole ms."""
    n = len(batch.index)
    for name in ("index", "ts", "value", "estimate", "score", "alarm", "quality"):
        if np.shape(getattr(batch, name)) != (n,):
            raise ValueError(f"batch column {name!r} must be 1-D with {n} rows")
    index = np.asarray(batch.index)
    if index.dtype.kind not in "iu":
        raise ValueError("batch column 'index' must hold integers")
    if n and (index.min() < 0 or index.max() >= n_points):
        raise ValueError(f"batch column 'index' has points outside 0..{n_points - 1}")
    ts = np.asarray(batch.ts, dtype=np.float64)
    if not np.isfinite(ts).all():
        raise ValueError("batch timestamps must be finite")
    ms = np.rint(ts * 1000.0)
    if n and np.abs(ms).max() > MAX_TS_MS:
        raise ValueError(f"batch timestamps must lie within ±{MAX_TS_MS} ms of the epoch")
    for name, hi in (("alarm", 2), ("quality", 0xFFFF)):
        col = np.asarray(getattr(batch, name))
        if n and (col.min() < 0 or col.max() > hi):
            raise ValueError(f"batch column {name!r} has values outside 0..{hi}")
    return index.astype(np.int64), ms.astype(np.int64)


def encode_frame(frame: Frame) -> bytes:
    """Encode a self-contained frame: every value and estimate as exact float64, no deltas."""
    b = frame.batch
    index, ms = check_batch(b)
    every = np.ones(len(index), dtype=bool)
    none = np.zeros(0, dtype=np.int64)
    return pack_frame(
        WireFrame(
            gateway=frame.gateway,
            session=frame.session,
            seq=frame.seq,
            index=index,
            ts_ms=ms,
            alarm=np.asarray(b.alarm, dtype=np.uint8),
            quality=np.asarray(b.quality).astype(np.uint16),
            score_q=quantise_score(b.score),
            value_float=every,
            value_q=none,
            value_f=np.asarray(b.value, dtype=np.float64),
            estimate_float=every,
            estimate_q=none,
            estimate_f=np.asarray(b.estimate, dtype=np.float64),
            snapshot=frame.snapshot,
            replay=frame.replay,
        )
    )


# ---------------------------------------------------------------- JSON payloads


def encode_birth(birth: Birth) -> bytes:
    """Encode a birth; raise ValueError if it would not decode."""
    obj = {
        "v": VERSION,
        "gateway": birth.gateway,
        "session": birth.session,
        "version": birth.version,
        "ts": float(birth.ts),
        "points": [
            {
                "index": int(p.index),
                "device": p.device,
                "point": p.point,
                "unit": p.unit,
                "type": p.type,
                "model": p.model,
                "threshold": float(p.threshold),
                "resolution": None if p.resolution is None else float(p.resolution),
                "deadband": float(p.deadband),
                "report": p.report,
                "heartbeat": None if p.heartbeat is None else float(p.heartbeat),
            }
            for p in birth.points
        ],
    }
    return _checked(obj, decode_birth)


def decode_birth(payload: bytes) -> Birth:
    """Decode and validate a birth; points come back ordered by index."""
    obj = _loads(payload, "birth")
    rows = obj.get("points")
    if not isinstance(rows, list):
        raise PayloadError("birth 'points' must be a list")
    points: list[PointInfo] = []
    for i, row in enumerate(rows):
        what = f"birth point #{i}"
        if not isinstance(row, dict):
            raise PayloadError(f"{what} must be an object")
        report = row.get("report")
        if report not in REPORT_MODES:
            raise PayloadError(f"{what} 'report' must be one of {REPORT_MODES}, not {report!r}")
        points.append(
            PointInfo(
                index=_int(row, "index", what, 0, len(rows) - 1),
                device=_name(row, "device", what),
                point=_name(row, "point", what),
                unit=_str(row, "unit", what, empty=True),
                type=_str(row, "type", what),
                model=_str(row, "model", what),
                threshold=_number(row, "threshold", what),
                resolution=_optional_positive(row, "resolution", what),
                deadband=_non_negative(row, "deadband", what),
                report=report,
                heartbeat=_optional_positive(row, "heartbeat", what),
            )
        )
    if len({p.index for p in points}) != len(points):
        raise PayloadError("birth point indexes must be 0..n-1, each once")
    if len({p.id for p in points}) != len(points):
        raise PayloadError("birth point ids (device/point) must be unique")
    return Birth(
        gateway=_gateway(obj, "birth"),
        session=_str(obj, "session", "birth"),
        version=_str(obj, "version", "birth", empty=True),
        ts=_number(obj, "ts", "birth"),
        points=tuple(sorted(points, key=lambda p: p.index)),
    )


def encode_status(status: Status) -> bytes:
    """Encode a status message (the offline one is the MQTT will)."""
    obj = {"v": VERSION, "state": status.state, "session": status.session, "ts": float(status.ts)}
    return _checked(obj, decode_status)


def decode_status(payload: bytes) -> Status:
    """Decode and validate a status message (``v`` may be absent)."""
    obj = _loads(payload, "status", need_version=False)
    state = obj.get("state")
    if state not in ("online", "offline"):
        raise PayloadError(f"status 'state' must be 'online' or 'offline', not {state!r}")
    return Status(
        state=state, session=_str(obj, "session", "status"), ts=_number(obj, "ts", "status")
    )


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Encode an event dict (``v`` is added); raise ValueError if it would not decode."""
    return _checked({"v": VERSION, **event}, decode_event)


def decode_event(payload: bytes) -> dict[str, Any]:
    """Decode and validate an event; returns the JSON object."""
    obj = _loads(payload, "event")
    _gateway(obj, "event")
    _str(obj, "session", "event")
    _number(obj, "ts", "event")
    kind = obj.get("type")
    if kind == "alarm":
        _name(obj, "device", "alarm event")
        if ("point" in obj) == ("asset" in obj):
            raise PayloadError("alarm event must name exactly one of 'point' and 'asset'")
        _name(obj, "point" if "point" in obj else "asset", "alarm event")
        _int(obj, "alarm", "alarm event", 0, 2)
        if "severity" in obj and obj["severity"] not in SEVERITIES:
            raise PayloadError(f"alarm event 'severity' must be one of {SEVERITIES}")
        if "contributions" in obj:
            _contributions(obj["contributions"])
        if "devices" in obj:
            _asset_devices(obj)
        if "previous" in obj:
            _int(obj, "previous", "alarm event", 0, 2)
        if "index" in obj:
            _int(obj, "index", "alarm event", 0, 2**32 - 1)
        for key in ("score", "value", "estimate"):
            if obj.get(key) is not None:
                _number(obj, key, "alarm event")
    elif kind == "device":
        _name(obj, "device", "device event")
        _str(obj, "state", "device event")
        if "detail" in obj:
            _str(obj, "detail", "device event", empty=True)
    elif kind == "drop":
        # The outbox dropped rows of ``of_session`` over its budget: announced, never silent.
        if obj.get("of_session") is not None:
            _str(obj, "of_session", "drop event")
        for key in ("first_seq", "last_seq"):
            if obj.get(key) is not None:
                _int(obj, key, "drop event", 0, 2**63 - 1)
        for key in ("frames", "events", "bytes"):
            _int(obj, key, "drop event", 0, 2**63 - 1)
        _str(obj, "reason", "drop event")
    else:
        raise PayloadError(f"event 'type' must be one of {EVENT_TYPES}, not {kind!r}")
    return obj


def _contributions(value: object) -> None:
    if not isinstance(value, dict) or not value:
        raise PayloadError("alarm event 'contributions' must be a non-empty object")
    for point in value:
        share = _number(value, point, "alarm event contribution")
        if not 0.0 <= share <= 1.0:
            raise PayloadError(f"alarm event contribution of {point!r} is outside 0..1")


def _asset_devices(obj: Mapping[str, Any]) -> None:
    """``devices`` of an asset over several devices: distinct names, ``device`` first."""
    value = obj["devices"]
    if "asset" not in obj:
        raise PayloadError("alarm event 'devices' belongs to an asset's alarm, not a point's")
    if not isinstance(value, list) or len(value) < 2:
        raise PayloadError("alarm event 'devices' must be a list of at least two device names")
    names = [_name({"device": d}, "device", "alarm event 'devices' entry") for d in value]
    if len(set(names)) != len(names):
        raise PayloadError("alarm event 'devices' lists a device twice")
    if names[0] != obj["device"]:
        raise PayloadError("alarm event 'devices' must start with the event's 'device'")


def _checked(obj: dict[str, Any], decode: Callable[[bytes], object]) -> bytes:
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        payload = text.encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not encodable as JSON: {exc}") from exc
    try:
        decode(payload)
    except PayloadError as exc:
        raise ValueError(str(exc)) from exc
    return payload


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _loads(payload: bytes, what: str, *, need_version: bool = True) -> dict[str, Any]:
    if not isinstance(payload, _BYTES):
        raise PayloadError(f"{what} payload must be bytes, not {type(payload).__name__}")
    try:
        obj = json.loads(bytes(payload).decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # includes UnicodeDecodeError, JSONDecodeError
        raise PayloadError(f"{what} is not UTF-8 JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise PayloadError(f"{what} must be a JSON object")
    if need_version or "v" in obj:
        v = obj.get("v")
        if type(v) is not int or v != VERSION:
            raise PayloadError(f"unsupported {what} version {v!r} (this decoder reads {VERSION})")
    return obj


# ---------------------------------------------------------------- field checks


def _str(obj: Mapping[str, Any], key: str, what: str, *, empty: bool = False) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not (value or empty):
        raise PayloadError(f"{what} {key!r} must be a {'' if empty else 'non-empty '}string")
    return value


def _name(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = _str(obj, key, what)
    if "/" in value:
        raise PayloadError(f"{what} {key!r} must not contain '/'")
    return value


def _gateway(obj: Mapping[str, Any], what: str, key: str = "gateway") -> str:
    value = _str(obj, key, what)
    try:
        return validate_gateway(value)
    except ValueError as exc:
        raise PayloadError(f"{what}: {exc}") from exc


def _int(obj: Mapping[str, Any], key: str, what: str, lo: int, hi: int) -> int:
    value = obj.get(key)
    if type(value) is not int:  # bool is an int subclass; floats are not integers here
        if isinstance(value, float) and not math.isfinite(value):
            raise PayloadError(f"{what} {key!r} is non-finite ({value}); it must be an integer")
        raise PayloadError(f"{what} {key!r} must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise PayloadError(f"{what} {key!r} = {value} is outside {lo}..{hi}")
    return value


def _number(obj: Mapping[str, Any], key: str, what: str) -> float:
    value = obj.get(key)
    try:
        number = math.nan
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
    except OverflowError:  # a huge JSON integer
        number = math.inf
    if not math.isfinite(number):
        raise PayloadError(f"{what} {key!r} must be a finite number")
    return number


def _non_negative(obj: Mapping[str, Any], key: str, what: str) -> float:
    number = _number(obj, key, what)
    if number < 0:
        raise PayloadError(f"{what} {key!r} must be >= 0")
    return number


def _optional_positive(obj: Mapping[str, Any], key: str, what: str) -> float | None:
    if key not in obj:
        raise PayloadError(f"{what} {key!r} is missing (null if none)")
    if obj[key] is None:
        return None
    number = _number(obj, key, what)
    if number <= 0:
        raise PayloadError(f"{what} {key!r} must be > 0 or null")
    return number
