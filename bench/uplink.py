"""Bytes on the wire per sample, and outbox throughput, for one recorded plant stream.

The stream: ten simulated PD-100 pumps (the demo plant's physics, ``firmware_stubs.physics``),
ten points each, polled at 10 Hz for 60 s, seeded. Pumps change speed at different times and
one cavitates, so there are ramps, steady noise and alarms. Values are what the devices serve
(float32 registers, an int16 in 0.1 degC, a uint32 counter). Each pump has a level twin
(``LevelEstimator``) giving estimates, scores, alarms and the nis that ``report = model`` uses.

Wire resolutions are set to each sensor's noise (what an engineer reporting "to the noise floor"
would pick); ``--scale`` divides them to show what finer resolutions cost.

    .venv/bin/python bench/uplink.py [--frame-interval 1.0] [--scale 1] [--quick]

Exit status 1 if deadband mode needs more than 1 byte per sample on the wire or the outbox
writes fewer than 100 000 samples/s; the reason is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np

from edgetwin.core.types import Quality, TwinBatch
from edgetwin.storage.outbox import Outbox
from edgetwin.twin.level import LevelEstimator
from edgetwin.uplink.codec import Birth, PointInfo, encode_birth, unpack_frame
from edgetwin.uplink.framer import FrameDecoder, FrameEncoder, dequantise, mark_replay
from edgetwin.uplink.rbe import Reporter
from edgetwin.uplink.topics import Topics
from firmware_stubs.physics.pump import PumpModel

PUMPS = 10
RATE_HZ = 10.0
DURATION_S = 60.0
HEARTBEAT_S = 60.0  # the config default
SIGMAS = 3.0
TARGET_BYTES = 1.0
TARGET_OUTBOX = 100_000.0

# name, unit, wire resolution (about the sensor's noise sigma), device encoding, twin model
POINTS: tuple[tuple[str, str, float, str, str], ...] = (
    ("speed", "rpm", 1.0, "float32", "level"),
    ("flow", "m3/h", 0.2, "float32", "level"),
    ("discharge_pressure", "bar", 0.01, "float32", "level"),
    ("suction_pressure", "bar", 0.005, "float32", "level"),
    ("motor_current", "A", 0.1, "float32", "level"),
    ("motor_temperature", "degC", 0.2, "float32", "level"),
    ("vibration", "mm/s", 0.05, "float32", "level"),
    ("power", "kW", 0.05, "float32", "level"),
    ("run_seconds", "s", 1.0, "uint32", "none"),
    ("fluid_temperature", "degC", 0.1, "int16", "level"),
)


@dataclass(frozen=True)
class Poll:
    """One device poll with its twin outputs: a batch of ten rows and their nis."""

    device: int
    batch: TwinBatch
    nis: np.ndarray


def device_value(kind: str, v: float) -> float:
    """What the register holds, back in engineering units."""
    if kind == "float32":
        return float(np.float32(v))
    if kind == "uint32":
        return float(np.floor(max(v, 0.0)))
    return round(v * 10.0) / 10.0  # int16, scale 0.1


def record_stream(seed: int = 7) -> list[Poll]:
    """The recorded stream, in poll order (all pumps at one tick, then the next tick)."""
    rng = np.random.default_rng(seed)
    pumps = [PumpModel(seed=seed * 100 + i, speed_setpoint=2600.0 + 60.0 * i) for i in range(PUMPS)]
    changes = {i: (rng.uniform(5, 50), rng.uniform(2200, 3400)) for i in range(PUMPS)}
    twins = [LevelEstimator(len(POINTS), commissioning=40) for _ in range(PUMPS)]
    level = np.array([m == "level" for *_, m in POINTS])
    t0 = 1_700_000_000.0
    polls: list[Poll] = []
    for k in range(int(DURATION_S * RATE_HZ)):
        t = k / RATE_HZ
        for i, pump in enumerate(pumps):
            if k:
                pump.step(1.0 / RATE_HZ)
            at, setpoint = changes[i]
            if abs(t - at) < 0.5 / RATE_HZ:
                pump.speed_setpoint = setpoint
            if i == 3 and abs(t - 40.0) < 0.5 / RATE_HZ:
                pump.add_fault("cavitation")
            measured = pump.measure()
            values = np.array([device_value(kind, measured[n]) for n, _, _, kind, _ in POINTS])
            quality = np.zeros(len(POINTS), dtype=np.uint16)
            out = twins[i].update(values, quality)
            estimate = np.where(level, out.estimate, values)
            batch = TwinBatch(
                index=np.arange(len(POINTS), dtype=np.int64) + i * len(POINTS),
                ts=np.full(len(POINTS), t0 + t + 0.003 * i),
                value=values,
                estimate=estimate,
                score=np.where(level, out.score, 0.0),
                alarm=np.where(level, out.alarm, 0).astype(np.uint8),
                quality=quality | np.uint16(Quality.GOOD),
            )
            nis = np.where(level & out.initialized, out.nis, np.nan)
            polls.append(Poll(i, batch, nis))
    return polls


def point_table(mode: str, scale: float) -> tuple[PointInfo, ...]:
    """The birth's point table for one report mode."""
    return tuple(
        PointInfo(
            index=i * len(POINTS) + j,
            device=f"pump{i + 1}",
            point=name,
            unit=unit,
            type=kind,
            model=model,
            threshold=10.83,
            resolution=res / scale,
            deadband=res / scale,
            report=mode,  # type: ignore[arg-type]
            heartbeat=HEARTBEAT_S,
        )
        for i in range(PUMPS)
        for j, (name, unit, res, kind, model) in enumerate(POINTS)
    )


def concat(batches: list[TwinBatch]) -> TwinBatch:
    """Rows of several batches, in order."""
    fields = ("index", "ts", "value", "estimate", "score", "alarm", "quality")
    return TwinBatch(*(np.concatenate([getattr(b, f) for b in batches]) for f in fields))


def take(b: TwinBatch, mask: np.ndarray) -> TwinBatch:
    """The selected rows of a batch."""
    return TwinBatch(
        b.index[mask],
        b.ts[mask],
        b.value[mask],
        b.estimate[mask],
        b.score[mask],
        b.alarm[mask],
        b.quality[mask],
    )


def publish_overhead(topic: str, payload: int) -> int:
    """MQTT 3.1.1 PUBLISH bytes around a QoS 1 payload: fixed header, topic, packet id."""
    remaining = 2 + len(topic.encode()) + 2 + payload
    length_bytes = 1 + (remaining >= 128) + (remaining >= 16384) + (remaining >= 2097152)
    return 1 + length_bytes + 2 + len(topic.encode()) + 2


@dataclass
class Run:
    """What one encoding of the stream put on the wire."""

    name: str
    messages: int
    payload: int
    wire: int
    rows: int
    frames: list[bytes]
    encode_s: float = 0.0


def edgetwin_run(
    polls: list[Poll], mode: str, scale: float, frame_interval: float, topics: Topics
) -> Run:
    """Report by exception, then frames of ``frame_interval`` seconds of selected rows."""
    points = point_table(mode, scale)
    reporter = Reporter.from_points(points)
    encoder = FrameEncoder(topics.gateway, "bench", points)
    decoder = FrameDecoder(points)
    frames: list[bytes] = []
    pending: list[TwinBatch] = []
    opened: float | None = None
    rows = 0
    spent = 0.0

    def flush() -> None:
        nonlocal opened, rows, spent
        if pending:
            batch = concat(pending)
            start = time.perf_counter()
            _, payload = encoder.encode(batch)
            spent += time.perf_counter() - start
            frames.append(payload)
            rows += len(batch.index)
            check(decoder, payload, batch, points)
        pending.clear()
        opened = None

    for poll in polls:
        now = float(poll.batch.ts[0])
        if opened is not None and now - opened >= frame_interval - 1e-9:
            flush()
        mask = reporter.select(poll.batch, now, poll.nis, SIGMAS)
        if mask.any():
            pending.append(take(poll.batch, mask))
            opened = now if opened is None else opened
    flush()
    payload = sum(len(f) for f in frames)
    wire = payload + sum(publish_overhead(topics.frames, len(f)) for f in frames)
    return Run(f"edgetwin {mode}", len(frames), payload, wire, rows, frames, spent)


def check(
    decoder: FrameDecoder, payload: bytes, batch: TwinBatch, points: tuple[PointInfo, ...]
) -> None:
    """The cloud side gets every sent value back at its resolution."""
    from edgetwin.uplink.codec import unpack_frame  # noqa: PLC0415

    out = decoder.decode(unpack_frame(payload))
    assert out is not None
    res = np.array([points[i].resolution for i in batch.index], dtype=np.float64)
    assert np.array_equal(out.value, dequantise(np.rint(batch.value / res), res))


def json_run(polls: list[Poll], scale: float, topics: Topics) -> tuple[Run, Run]:
    """One JSON / msgpack object per device poll: ts and the values, point names as keys."""
    decimals = [max(0, int(np.ceil(-np.log10(res / scale) - 1e-9))) for _, _, res, _, _ in POINTS]
    names = [name for name, *_ in POINTS]
    j_payload = j_wire = m_payload = m_wire = 0
    for poll in polls:
        topic = f"{topics.prefix}/{topics.gateway}/pump{poll.device + 1}/telemetry"
        doc: dict[str, float] = {"ts": round(float(poll.batch.ts[0]), 3)}
        for name, d, v in zip(names, decimals, poll.batch.value.tolist(), strict=True):
            doc[name] = round(v, d) if d else round(v)
        text = json.dumps(doc, separators=(",", ":")).encode()
        packed = msgpack.packb(doc)
        j_payload += len(text)
        j_wire += len(text) + publish_overhead(topic, len(text))
        m_payload += len(packed)
        m_wire += len(packed) + publish_overhead(topic, len(packed))
    n = len(polls)
    return (
        Run("JSON per poll", n, j_payload, j_wire, n * len(POINTS), []),
        Run("msgpack per poll", n, m_payload, m_wire, n * len(POINTS), []),
    )


async def outbox_throughput(
    frames: list[bytes], topic: str, per_commit: int
) -> tuple[float, float]:
    """Frames/s for put + commit (every ``per_commit`` frames) and for pending + ack (replay)."""
    with tempfile.TemporaryDirectory() as tmp:
        async with Outbox(Path(tmp) / "outbox.db", commit_interval=0.25) as outbox:
            start = time.perf_counter()
            for k, payload in enumerate(frames, 1):
                outbox.put(topic, payload)
                if k % per_commit == 0:
                    await outbox.flush()
            await outbox.flush()
            write = time.perf_counter() - start
            start = time.perf_counter()
            replayed = 0
            while batch := await outbox.pending(256):
                for row in batch:
                    mark_replay(row.payload)  # what the uplink does to backlog
                await outbox.ack([r.id for r in batch])
                replayed += len(batch)
            replay = time.perf_counter() - start
    assert replayed == len(frames)
    return len(frames) / write, len(frames) / replay


def decode_rate(run: Run, points: tuple[PointInfo, ...]) -> float:
    """Samples per second through unpack_frame + FrameDecoder (the cloud side)."""
    decoder = FrameDecoder(points)
    start = time.perf_counter()
    for payload in run.frames:
        assert decoder.decode(unpack_frame(payload)) is not None
    return run.rows / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frame-interval", type=float, default=1.0, help="s of rows per frame")
    parser.add_argument("--scale", type=float, default=1.0, help="divide every resolution by this")
    parser.add_argument("--quick", action="store_true", help="smaller outbox run, no sweep")
    args = parser.parse_args()
    topics = Topics("edgetwin/v1", "bench-gw")

    polls = record_stream()
    samples = len(polls) * len(POINTS)
    print(
        f"stream: {PUMPS * len(POINTS)} points, {RATE_HZ:g} Hz, {DURATION_S:g} s = {samples} "
        f"samples; frames of {args.frame_interval:g} s of rows; wire resolution = noise sigma"
        f" / {args.scale:g}; heartbeat {HEARTBEAT_S:g} s; model bound {SIGMAS:g} sigma"
    )
    runs = [
        edgetwin_run(polls, mode, args.scale, args.frame_interval, topics)
        for mode in ("deadband", "model", "full")
    ]
    runs += json_run(polls, args.scale, topics)
    json_wire = runs[3].wire / samples
    head = ("encoding", "messages", "rows sent", "payload B/sample", "wire B/sample", "vs JSON")
    print(f"\n{head[0]:<18}{head[1]:>9}{head[2]:>10}{head[3]:>18}{head[4]:>15}{head[5]:>9}")
    for r in runs:
        wire = r.wire / samples
        print(
            f"{r.name:<18}{r.messages:>9}{r.rows:>10}{r.payload / samples:>18.3f}"
            f"{wire:>15.3f}{json_wire / wire:>8.1f}x"
        )
    table = point_table("deadband", args.scale)
    birth = encode_birth(Birth(topics.gateway, "bench", "bench", 0.0, table))
    print(
        f"\nwire = payload + MQTT 3.1.1 QoS 1 PUBLISH header and topic. Not counted: the retained"
        f" birth ({len(birth)} B once per session, {len(birth) / samples:.3f} B/sample over this"
        f" minute).\nJSON and msgpack carry values only, at the same resolutions; edgetwin rows"
        f" also carry estimate, score, alarm and quality."
    )

    if not args.quick:
        print("\ndeadband mode, wire B/sample by frame length and resolution:")
        intervals = (0.1, 0.25, 1.0, 5.0)
        print(f"{'resolution':<16}" + "".join(f"{f'{i:g} s frames':>15}" for i in intervals))
        for scale in (1.0, 2.0, 4.0):
            cells = [
                edgetwin_run(polls, "deadband", scale, i, topics).wire / samples for i in intervals
            ]
            label = "noise sigma" + (f" / {scale:g}" if scale != 1 else "")
            print(f"{label:<16}" + "".join(f"{c:>15.3f}" for c in cells))

    full = runs[2]
    enc_rate = full.rows / full.encode_s if full.encode_s else float("inf")
    dec_rate = decode_rate(full, point_table("full", args.scale))
    print(f"\nencoder {enc_rate:,.0f} samples/s, decoder {dec_rate:,.0f} samples/s (full mode)")

    times = 2 if args.quick else 10
    frames = [f for _ in range(times) for f in full.frames]
    per_frame = full.rows / len(full.frames)
    results = {}
    for per_commit in (1, 50):
        write_fps, replay_fps = asyncio.run(outbox_throughput(frames, topics.frames, per_commit))
        results[per_commit] = write_fps * per_frame
        print(
            f"outbox, {len(frames)} full-mode frames of {per_frame:.0f} samples, a commit per"
            f" {per_commit} frame(s): write {write_fps:,.0f} frames/s ="
            f" {write_fps * per_frame:,.0f} samples/s; replay (pending, mark_replay, ack)"
            f" {replay_fps:,.0f} frames/s = {replay_fps * per_frame:,.0f} samples/s"
        )

    failures = []
    deadband = runs[0].wire / samples
    if deadband > TARGET_BYTES:
        failures.append(f"deadband mode needs {deadband:.3f} B/sample on the wire (target <= 1)")
    if results[1] < TARGET_OUTBOX:
        failures.append(
            f"outbox writes {results[1]:,.0f} samples/s with a commit per frame (target >= 100,000)"
        )
    for failure in failures:
        print("FAIL:", failure)
    if not failures:
        print(f"targets met: deadband {deadband:.3f} <= 1 B/sample, outbox >= 100,000 samples/s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
