"""Uplink payloads ⇄ bytes: JSON births, status and events; zstd-compressed msgpack state frames.

Pure: no asyncio, no I/O. Decoders raise :class:`PayloadError`, and nothing else, on any bad
input. The layout is specified in docs/wire-format.md.

zstd compressor and decompressor objects are not safe for concurrent use from several threads,
so each thread reuses its own pair (``threading.local``); single-threaded callers pay for one.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgpack
import numpy as np
import numpy.typing as npt
import zstandard

from edgetwin.core.types import TwinBatch, point_id
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
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BYTES = (bytes, bytearray, memoryview)

# wire column -> numpy typestr; v1 accepts exactly these
COLUMNS: dict[str, str] = {
    "idx": "<u4",
    "dts": "<i8",
    "value": "<f8",
    "estimate": "<f8",
    "score": "<f4",
    "alarm": "|u1",
    "quality": "<u2",
}
EVENT_TYPES = ("alarm", "device")
StatusState = Literal["online", "offline"]


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
class Frame:
    """One state frame: a twin batch of one session, numbered by ``seq``."""

    gateway: str
    session: str
    seq: int
    batch: TwinBatch
    snapshot: bool = False
    replay: bool = False


# ---------------------------------------------------------------- state frames


def encode_frame(frame: Frame) -> bytes:
    """Encode a frame (timestamps are rounded to whole milliseconds)."""
    validate_gateway(frame.gateway)
    if not isinstance(frame.session, str) or not frame.session:
        raise ValueError("session must be a non-empty string")
    if not 0 <= frame.seq < 2**64:
        raise ValueError(f"seq {frame.seq} is not a uint64")
    b = frame.batch
    n = len(b.index)
    for name in ("index", "ts", "value", "estimate", "score", "alarm", "quality"):
        col = getattr(b, name)
        if np.ndim(col) != 1 or len(col) != n:
            raise ValueError(f"batch column {name!r} must be 1-D with {n} rows")
    ts = np.asarray(b.ts, dtype=np.float64)
    if not np.isfinite(ts).all():
        raise ValueError("batch timestamps must be finite")
    ms = np.rint(ts * 1000.0)
    if n and np.abs(ms).max() > MAX_TS_MS:
        raise ValueError(f"batch timestamps must lie within ±{MAX_TS_MS} ms of the epoch")
    ms_i = ms.astype(np.int64)
    ts0 = int(ms_i[0]) if n else 0
    body = {
        "gateway": frame.gateway,
        "session": frame.session,
        "seq": int(frame.seq),
        "ts0": ts0,
        "idx": _column("idx", b.index, "index", 0, 0xFFFFFFFF),
        "dts": _column("dts", np.diff(ms_i, prepend=ts0)),
        "value": _column("value", b.value),
        "estimate": _column("estimate", b.estimate),
        "score": _column("score", b.score),
        "alarm": _column("alarm", b.alarm, "alarm", 0, 2),
        "quality": _column("quality", b.quality, "quality", 0, 0xFFFF),
    }
    raw: bytes = msgpack.packb(body, use_bin_type=True)
    if len(raw) > DEFAULT_MAX_DECOMPRESSED:
        raise ValueError(f"frame body is {len(raw)} bytes; split the batch (limit 8 MiB)")
    flags = (FLAG_REPLAY if frame.replay else 0) | (FLAG_SNAPSHOT if frame.snapshot else 0)
    compressed: bytes = _zstd.cctx.compress(raw)
    return MAGIC + bytes((VERSION, flags)) + compressed


def _column(
    name: str, values: npt.ArrayLike, field: str = "", lo: int = 0, hi: int = -1
) -> list[object]:
    arr = np.asarray(values)
    if hi >= lo and arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError(f"batch column {field!r} has values outside {lo}..{hi}")
    with np.errstate(over="ignore"):  # float64 scores beyond float32 range become inf
        data = arr.astype(COLUMNS[name]).tobytes()
    return [COLUMNS[name], data]


def decode_frame(payload: bytes, *, max_decompressed: int = DEFAULT_MAX_DECOMPRESSED) -> Frame:
    """Decode a frame; never decompresses more than ``max_decompressed`` bytes."""
    if not isinstance(payload, _BYTES):
        raise PayloadError(f"frame payload must be bytes, not {type(payload).__name__}")
    data = bytes(payload)
    if len(data) < HEADER_SIZE:
        raise PayloadError(f"truncated frame: {len(data)} bytes, the header alone is 4")
    if data[:2] != MAGIC:
        raise PayloadError(f"not an edgetwin frame: magic {data[:2]!r}, expected {MAGIC!r}")
    if data[2] != VERSION:
        raise PayloadError(f"unsupported frame version {data[2]} (this decoder reads {VERSION})")
    flags = data[3]  # bits other than replay/snapshot are reserved and ignored
    body = _unpack(_decompress(data[HEADER_SIZE:], max_decompressed))
    n_rows, cols = _columns(body)
    ts0 = _int(body, "ts0", "frame", -MAX_TS_MS, MAX_TS_MS)
    ms = ts0 + _offsets(cols["dts"])
    if n_rows and (ms.min() < -MAX_TS_MS or ms.max() > MAX_TS_MS):
        raise PayloadError(f"frame timestamps leave ±{MAX_TS_MS} ms")
    if n_rows and cols["alarm"].max() > 2:
        raise PayloadError(f"frame alarm state {int(cols['alarm'].max())} is not 0, 1 or 2")
    batch = TwinBatch(
        index=cols["idx"].astype(np.int64),
        ts=ms.astype(np.float64) / 1000.0,
        value=cols["value"].astype(np.float64),
        estimate=cols["estimate"].astype(np.float64),
        score=cols["score"].astype(np.float64),
        alarm=cols["alarm"].astype(np.uint8),
        quality=cols["quality"].astype(np.uint16),
    )
    return Frame(
        gateway=_gateway(body, "frame"),
        session=_str(body, "session", "frame"),
        seq=_int(body, "seq", "frame", 0, 2**64 - 1),
        batch=batch,
        snapshot=bool(flags & FLAG_SNAPSHOT),
        replay=bool(flags & FLAG_REPLAY),
    )


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


def _columns(body: Mapping[str, Any]) -> tuple[int, dict[str, npt.NDArray[Any]]]:
    cols: dict[str, npt.NDArray[Any]] = {}
    for name, typestr in COLUMNS.items():
        col = body.get(name)
        if not (isinstance(col, list) and len(col) == 2):
            raise PayloadError(f"frame column {name!r} must be [dtype, bytes]")
        dtype, data = col
        if dtype != typestr:
            raise PayloadError(f"frame column {name!r} has dtype {dtype!r}, v1 needs {typestr!r}")
        if not isinstance(data, bytes):
            raise PayloadError(f"frame column {name!r} data must be msgpack bin")
        itemsize = np.dtype(typestr).itemsize
        if len(data) % itemsize:
            raise PayloadError(f"frame column {name!r} is {len(data)} bytes, not whole {typestr}")
        cols[name] = np.frombuffer(data, dtype=typestr)
    n_rows = len(cols["idx"])
    for name, arr in cols.items():
        if len(arr) != n_rows:
            raise PayloadError(f"frame column {name!r} has {len(arr)} rows, idx has {n_rows}")
    return n_rows, cols


def _offsets(dts: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    steps = dts.astype(np.int64)
    # Bounded steps keep the first out-of-range prefix sum exact, so int64 wrap cannot hide it.
    if steps.size and (steps.min() < -_MAX_STEP_MS or steps.max() > _MAX_STEP_MS):
        raise PayloadError("frame time deltas are out of range")
    offsets = np.cumsum(steps, dtype=np.int64)
    if offsets.size and (offsets.min() < -_MAX_OFFSET_MS or offsets.max() > _MAX_OFFSET_MS):
        raise PayloadError("frame time offsets are out of range")
    return offsets


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
        points.append(
            PointInfo(
                index=_int(row, "index", what, 0, len(rows) - 1),
                device=_name(row, "device", what),
                point=_name(row, "point", what),
                unit=_str(row, "unit", what, empty=True),
                type=_str(row, "type", what),
                model=_str(row, "model", what),
                threshold=_number(row, "threshold", what),
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
        _name(obj, "point", "alarm event")
        _int(obj, "alarm", "alarm event", 0, 2)
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
    else:
        raise PayloadError(f"event 'type' must be one of {EVENT_TYPES}, not {kind!r}")
    return obj


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


def _gateway(obj: Mapping[str, Any], what: str) -> str:
    value = _str(obj, "gateway", what)
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
