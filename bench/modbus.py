"""Read coalescing benchmark: edgetwin's plan against one-request-per-point and contiguous-only.

200 points of mixed types scattered over 1,000 holding registers (a few holes marked
forbidden, which the device refuses to read), served by a pymodbus server on loopback.
Prints the request count of each plan and its cycle time over Modbus TCP; exits 1 if
edgetwin's plan needs more requests than either baseline, or if any cycle reads badly.

    .venv/bin/python bench/modbus.py [--points 200] [--registers 1000] [--cycles 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from typing import cast

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edgetwin.config.modbus import ModbusDeviceConfig, ModbusPointConfig
from edgetwin.core.types import Quality
from edgetwin.drivers.modbus import ModbusDevice
from edgetwin.transports.modbus_tcp import ModbusTcpLink

TYPES = ["uint16", "int16", "uint16", "float32", "uint32", "int32", "float64", "bool"]
_FAILED = Quality.COMM_FAIL | Quality.DEVICE_ERROR | Quality.DECODE_ERROR
WIDTH = {"uint16": 1, "int16": 1, "float32": 2, "uint32": 2, "int32": 2, "float64": 4, "bool": 1}


def scatter(
    n: int, registers: int, rng: random.Random
) -> tuple[list[ModbusPointConfig], list[tuple[int, int]]]:
    """``n`` non-overlapping points at random places, and forbidden ranges in the holes."""
    taken = [False] * registers
    points: list[ModbusPointConfig] = []
    while len(points) < n:
        vtype = rng.choice(TYPES)
        width = WIDTH[vtype]
        at = rng.randrange(registers - width + 1)
        if any(taken[at : at + width]):
            continue
        taken[at : at + width] = [True] * width
        extra = {"bit": rng.randrange(16)} if vtype == "bool" else {}
        points.append(
            ModbusPointConfig(
                name=f"p{len(points)}", table="holding", address=at, type=vtype, **extra
            )  # type: ignore[arg-type]
        )
    holes = [a for a in range(registers) if not taken[a]]
    forbidden = [(a, a) for a in rng.sample(holes, min(12, len(holes)))]
    return points, forbidden


def device(
    points: list[ModbusPointConfig], forbidden: list[tuple[int, int]], **quirks: object
) -> ModbusDeviceConfig:
    return ModbusDeviceConfig(
        name="bench",
        bus="loop",
        points=points,
        forbidden={"holding": forbidden},
        **quirks,  # type: ignore[arg-type]
    )


def serve(registers: int, forbidden: list[tuple[int, int]], rng: random.Random) -> SimDevice:
    """One unit whose forbidden registers do not exist (reading them is exception 02)."""
    bad = {a for a, _ in forbidden}
    blocks, start = [], 0
    for a in [*sorted(bad), registers]:
        if a > start:
            values = [rng.randrange(65536) for _ in range(a - start)]
            blocks.append(SimData(start, values=values, datatype=DataType.REGISTERS))
        start = a + 1
    bit = [SimData(0, values=[False], datatype=DataType.BITS)]
    return SimDevice(
        id=1, simdata=(bit, bit, blocks, [SimData(0, values=[0], datatype=DataType.REGISTERS)])
    )


async def cycle_times(dev: ModbusDevice, cycles: int) -> list[float]:
    times = []
    for _ in range(cycles):
        t0 = time.perf_counter()
        result = await dev.poll()
        times.append(time.perf_counter() - t0)
        # Random words may be NaN as floats (NOT_FINITE); only a failed request is bad.
        if result.failed or (result.quality & _FAILED).any():
            raise SystemExit(f"{dev.name}: bad cycle: {result.errors[:1]}")
    return times


async def main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    points, forbidden = scatter(args.points, args.registers, rng)
    plans = {
        f"edgetwin (max_gap {args.max_gap})": device(points, forbidden, max_gap=args.max_gap),
        "contiguous only": device(points, forbidden, max_gap=0),
        "one request per point": device(points, forbidden, one_point_per_request=True),
    }
    server = ModbusTcpServer(serve(args.registers, forbidden, rng), address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    port = int(cast(asyncio.Server, server.transport).sockets[0].getsockname()[1])
    link = ModbusTcpLink("127.0.0.1", port, timeout=2.0)
    rows = []
    try:
        for label, cfg in plans.items():
            dev = ModbusDevice(cfg, link)
            await dev.poll()  # connect and warm up
            times = await cycle_times(dev, args.cycles)
            rows.append((label, len(dev.plan), statistics.median(times) * 1e3, max(times) * 1e3))
    finally:
        link.close()
        await server.shutdown()  # type: ignore[no-untyped-call]
    print(
        f"{args.points} points over {args.registers} holding registers, "
        f"{len(forbidden)} forbidden, Modbus TCP on loopback, {args.cycles} cycles"
    )
    print(f"{'plan':<24} {'requests':>8} {'median ms':>10} {'max ms':>8}")
    for label, n, median, worst in rows:
        print(f"{label:<24} {n:>8} {median:>10.1f} {worst:>8.1f}")
    ours, contiguous, naive = (n for _, n, _, _ in rows)
    if ours > min(contiguous, naive):
        print("FAIL: edgetwin's plan needs more requests than a baseline", file=sys.stderr)
        return 1
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--registers", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--max-gap", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
