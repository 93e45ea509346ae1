"""Outbox write throughput: put + commit of 200-byte frames, as the gateway does during an outage.

Run: ``.venv/bin/python tests/storage/outbox_throughput.py [--frames N] [--max-mb M]``. Not a test:
timings are machine-dependent and never asserted. Prints frames/s for an outbox that only grows,
then for one held at its byte budget (every commit drops the oldest chain), then for the same
while a consumer reads both replay lanes and acks.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from edgetwin.storage import Outbox

PAYLOAD = bytes(range(200))
BATCH = 750  # one commit interval (0.25 s) at 3,000 frames/s
SNAPSHOT_EVERY = 1200  # a snapshot every 300 s at 4 frames/s


def put_batch(ob: Outbox, start: int) -> None:
    for seq in range(start, start + BATCH):
        kind = "snapshot" if seq % SNAPSHOT_EVERY == 0 else "frame"
        ob.put("edgetwin/v1/gw/frames", PAYLOAD, kind=kind, session="s1", seq=seq)


async def run(path: Path, frames: int, max_bytes: int, consume: bool) -> float:
    async with Outbox(path, max_bytes=max_bytes) as ob:
        t0 = time.perf_counter()
        for start in range(0, frames, BATCH):
            put_batch(ob, start)
            await ob.flush()
            if consume:
                rows = await ob.pending(32)
                await ob.ack([r.id for r in rows])
        elapsed = time.perf_counter() - t0
        s = ob.stats()
        print(
            f"  depth {s.depth}, {s.bytes / 1e6:.1f} MB, dropped {s.dropped_frames} frames, "
            f"{s.commits} commits"
        )
    return frames / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=150_000)
    parser.add_argument("--max-mb", type=float, default=8.0, help="budget for the full runs")
    args = parser.parse_args()
    full = int(args.max_mb * 1e6)
    with tempfile.TemporaryDirectory() as d:
        for name, max_bytes, consume in (
            ("growing", 10**12, False),
            ("at budget", full, False),
            ("at budget, consumer acking", full, True),
        ):
            rate = asyncio.run(run(Path(d) / f"{name}.db", args.frames, max_bytes, consume))
            print(f"{name}: {rate:,.0f} frames/s put + committed ({BATCH} per commit)")


if __name__ == "__main__":
    main()
