"""Twin batches ⇄ state frames of one session: quantisation and per-point deltas; pure, no I/O.

A point with a ``resolution`` r travels as integers ``q = rint(v / r)`` (float64 division,
round half to even) and decodes as ``q / s`` if ``r == 1 / s`` for an integer s (0.1, 0.05,
0.001: the division is correctly rounded, so 12 at 0.1 is 1.2, not 1.2000000000000002),
else as ``q * r``. Each frame sends ``q`` as the difference to the same point's previous
``q`` in this session: its previous row in the frame, or the last frame that carried it (0
before the first). A snapshot frame first resets every reference to 0, so it stands alone.
A value that is NaN, infinite or too large for an exact integer (``|q| > 2**53``) travels as
float64 instead (dequantised if finite, else bit for bit) and leaves the reference as it was.
Points without a resolution always travel as exact float64. See docs/wire-format.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgetwin.core.types import FloatArray, IntArray, TwinBatch
from edgetwin.errors import PayloadError
from edgetwin.uplink.codec import (
    FLAG_REPLAY,
    HEADER_SIZE,
    MAX_INDEX,
    MAX_Q,
    SCORE_SCALE,
    PointInfo,
    WireFrame,
    check_batch,
    pack_frame,
    quantise_score,
    read_header,
)
from edgetwin.uplink.topics import validate_gateway

__all__ = [
    "FrameDecoder",
    "FrameEncoder",
    "Quantised",
    "dequantise",
    "mark_replay",
    "quantise",
    "resolutions",
]


@dataclass(frozen=True, slots=True)
class Quantised:
    """One value column split for the wire: integers where possible, float64 elsewhere."""

    is_float: npt.NDArray[np.bool_]  # per row
    q: IntArray  # absolute integers of the rows that are not float, in row order
    f: FloatArray  # float64 of the rows that are


def resolutions(points: Sequence[PointInfo]) -> FloatArray:
    """Per point index, its resolution, or NaN for exact float64; indexes must be 0..n-1."""
    res = np.full(len(points), np.nan)
    seen = np.zeros(len(points), dtype=bool)
    for p in points:
        if not 0 <= p.index < len(points) or seen[p.index]:
            raise ValueError("point indexes must be 0..n-1, each once")
        seen[p.index] = True
        if p.resolution is not None:
            r = float(p.resolution)
            if not (np.isfinite(r) and r > 0):
                raise ValueError(f"point {p.id}: resolution must be finite and > 0")
            res[p.index] = r
    return res


def quantise(values: npt.ArrayLike, res: FloatArray) -> Quantised:
    """Split ``values`` (one per row; ``res`` per row, NaN = exact) for the wire."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(all="ignore"):
        x = np.rint(v / res)
        ok = np.isfinite(x) & (np.abs(x) <= MAX_Q)  # an exact row (NaN res) never is
    rest = ~ok
    f = v[rest]
    # Finite values with a resolution that escape only for their size travel dequantised.
    lossy = np.isfinite(f) & ~np.isnan(res[rest])
    if lossy.any():
        f[lossy] = dequantise(x[rest][lossy], res[rest][lossy])
    return Quantised(is_float=rest, q=x[ok].astype(np.int64), f=f)


def dequantise(q: npt.ArrayLike, res: FloatArray) -> FloatArray:
    """Values of counts ``q``: ``q / s`` where ``res == 1 / s`` (s whole), else ``q * res``."""
    x = np.asarray(q, dtype=np.float64)
    with np.errstate(all="ignore"):
        inverse = np.rint(1.0 / res)
        by_inverse = (inverse >= 1.0) & (1.0 / inverse == res)
        out: FloatArray = np.where(by_inverse, x / inverse, x * res)
    return out


def _groups(points: IntArray) -> tuple[IntArray, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Stable order by point, and which sorted entries start / end a point's run."""
    order = np.argsort(points, kind="stable")
    ps = points[order]
    first = np.ones(len(ps), dtype=bool)
    first[1:] = ps[1:] != ps[:-1]
    last = np.ones(len(ps), dtype=bool)
    last[:-1] = first[1:]
    return order, first, last


def _deltas(points: IntArray, q: IntArray, ref: IntArray) -> IntArray:
    """Per row, q minus the point's previous q (earlier row of the point, else ``ref``)."""
    if len(points) < 2 or (points[1:] > points[:-1]).all():
        # Each point once (the usual frame): every row refers to the point's last frame.
        out: IntArray = q - ref[points]
        ref[points] = q
        return out
    order, first, last = _groups(points)
    ps, qs = points[order], q[order]
    prev = np.empty_like(qs)
    prev[1:] = qs[:-1]
    prev[first] = ref[ps[first]]
    out = np.empty_like(qs)
    out[order] = qs - prev
    ref[ps[last]] = qs[last]
    return out


def _undelta(points: IntArray, d: IntArray, ref: IntArray) -> IntArray:
    """Invert :func:`_deltas`; PayloadError if any running value leaves ±MAX_Q."""
    order, first, last = _groups(points)
    ps = points[order]
    x = d[order].copy()
    x[first] += ref[ps[first]]
    # Wrapping int64 sums are exact modulo 2**64, and every step is bounded (|d| <= 2**54,
    # |ref| <= 2**53), so the first value out of range is exact and cannot hide behind a wrap.
    total = np.cumsum(x)
    starts = np.flatnonzero(first)
    base = np.where(starts > 0, total[np.maximum(starts - 1, 0)], 0)
    qs: IntArray = total - base[np.cumsum(first) - 1]
    if qs.size and (qs.min() < -MAX_Q or qs.max() > MAX_Q):
        raise PayloadError(f"frame deltas run a quantised value beyond ±{MAX_Q}")
    out = np.empty_like(qs)
    out[order] = qs
    ref[ps[last]] = qs[last]
    return out


def mark_replay(payload: bytes) -> bytes:
    """Return the frame with its replay flag set; the body is not touched."""
    flags, _ = read_header(payload)
    return bytes(payload[:3]) + bytes((flags | FLAG_REPLAY,)) + bytes(payload[HEADER_SIZE:])


class FrameEncoder:
    """Encodes one session's twin batches as numbered frames; keeps each point's reference."""

    def __init__(
        self, gateway: str, session: str, points: Sequence[PointInfo], *, seq: int = 0
    ) -> None:
        self.gateway = validate_gateway(gateway)
        if not isinstance(session, str) or not session:
            raise ValueError("session must be a non-empty string")
        if len(points) > MAX_INDEX + 1:
            raise ValueError("too many points for a uint32 index")
        self.session = session
        self._res = resolutions(points)
        self._ref_v = np.zeros(len(points), dtype=np.int64)
        self._ref_e = np.zeros(len(points), dtype=np.int64)
        self._seq = seq

    @property
    def next_seq(self) -> int:
        """The seq the next frame will get."""
        return self._seq

    def encode(self, batch: TwinBatch, *, snapshot: bool = False) -> tuple[int, bytes]:
        """Return (seq, payload) for ``batch``; a snapshot resets every point's reference."""
        index, ms = check_batch(batch, len(self._res))
        res = self._res[index]
        value = quantise(batch.value, res)
        estimate = quantise(batch.estimate, res)
        ref_v = np.zeros_like(self._ref_v) if snapshot else self._ref_v.copy()
        ref_e = np.zeros_like(self._ref_e) if snapshot else self._ref_e.copy()
        frame = WireFrame(
            gateway=self.gateway,
            session=self.session,
            seq=self._seq,
            index=index,
            ts_ms=ms,
            alarm=np.asarray(batch.alarm).astype(np.uint8),
            quality=np.asarray(batch.quality).astype(np.uint16),
            score_q=quantise_score(batch.score),
            value_float=value.is_float,
            value_q=_deltas(index[~value.is_float], value.q, ref_v),
            value_f=value.f,
            estimate_float=estimate.is_float,
            estimate_q=_deltas(index[~estimate.is_float], estimate.q, ref_e),
            estimate_f=estimate.f,
            snapshot=snapshot,
        )
        payload = pack_frame(frame)  # may raise ValueError: nothing below has happened yet
        seq = self._seq
        self._ref_v, self._ref_e, self._seq = ref_v, ref_e, seq + 1
        return seq, payload

    def snapshot(self, batch: TwinBatch) -> tuple[int, bytes]:
        """Encode ``batch`` as a snapshot frame (the state of every point it holds)."""
        return self.encode(batch, snapshot=True)


class FrameDecoder:
    """Decodes one session's frames in order against the references its frames built.

    A delta frame decodes only if it is the next seq after a frame this decoder applied
    (the session's start counts as an empty snapshot before seq 0). Anything else loses
    sync: integer-coded frames are undecodable (``decode`` returns None) until a snapshot
    resynchronises. Frames with no integer rows and late snapshots decode without state.
    """

    def __init__(self, points: Sequence[PointInfo]) -> None:
        self._res = resolutions(points)
        self._ref_v = np.zeros(len(points), dtype=np.int64)
        self._ref_e = np.zeros(len(points), dtype=np.int64)
        self._next = 0
        self._synced = True

    @property
    def synced(self) -> bool:
        """Whether the next frame in sequence can be decoded."""
        return self._synced

    @property
    def next_seq(self) -> int:
        """The seq this decoder expects next."""
        return self._next

    def decode(self, frame: WireFrame) -> TwinBatch | None:
        """Return the frame's batch, or None if its deltas refer to a state that was lost."""
        index = frame.index
        n_points = len(self._res)
        if frame.rows and index.max() >= n_points:
            self._lose(frame.seq)
            raise PayloadError(f"frame point index {int(index.max())} beyond {n_points} points")
        res = self._res[index]
        exact = np.isnan(res)
        if (exact & ~frame.value_float).any() or (exact & ~frame.estimate_float).any():
            self._lose(frame.seq)
            raise PayloadError("frame has integer values for a point without a resolution")
        integer_rows = not (frame.value_float.all() and frame.estimate_float.all())
        late = frame.seq < self._next
        if frame.snapshot or not integer_rows:
            ref_v = np.zeros_like(self._ref_v)
            ref_e = np.zeros_like(self._ref_e)
            apply = frame.snapshot and not late
        elif self._synced and frame.seq == self._next:
            ref_v, ref_e, apply = self._ref_v.copy(), self._ref_e.copy(), True
        else:
            if not late:
                self._lose(frame.seq)
            return None
        try:
            value = _column(
                frame.value_float, frame.value_q, frame.value_f, index=index, res=res, ref=ref_v
            )
            est = _column(
                frame.estimate_float,
                frame.estimate_q,
                frame.estimate_f,
                index=index,
                res=res,
                ref=ref_e,
            )
        except PayloadError:
            self._lose(frame.seq)
            raise
        if apply:
            self._ref_v, self._ref_e, self._synced = ref_v, ref_e, True
        if not late:
            if not apply and frame.seq != self._next:
                self._synced = False  # a float-only frame after a gap: decodable, state lost
            self._next = frame.seq + 1
        return TwinBatch(
            index=index.copy(),
            ts=frame.ts_ms.astype(np.float64) / 1000.0,
            value=value,
            estimate=est,
            score=frame.score_q.astype(np.float64) / SCORE_SCALE,
            alarm=frame.alarm.copy(),
            quality=frame.quality.copy(),
        )

    def _lose(self, seq: int) -> None:
        if seq >= self._next:
            self._synced = False
            self._next = seq + 1


def _column(
    is_float: npt.NDArray[np.bool_],
    d: IntArray,
    f: FloatArray,
    *,
    index: IntArray,
    res: FloatArray,
    ref: IntArray,
) -> FloatArray:
    out = np.empty(len(index), dtype=np.float64)
    out[is_float] = f
    rows = ~is_float
    out[rows] = dequantise(_undelta(index[rows], d, ref), res[rows])
    return out
