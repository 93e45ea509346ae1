"""Command line: ``python -m firmware_stubs <stub> ...``; each simulated device is a subcommand.

Once a stub listens it prints exactly one line to stdout, e.g.
``listening modbus-tcp 127.0.0.1:5020``, then runs until SIGINT or SIGTERM and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from firmware_stubs.faults import COMM_FAULTS, PROCESS_FAULTS, FaultSchedule, parse_spec
from firmware_stubs.physics import pump as pump_physics

# A subcommand's runner gets its own parser to report semantic argument errors (exit 2).
Runner = Callable[[argparse.Namespace, argparse.ArgumentParser], int]


def _int_in(lo: int, hi: int, what: str) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{what} must be {lo}..{hi}, got {value}")
        return value

    return convert


def _fault_spec(text: str) -> str:
    try:
        parse_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


_FAULT_HELP = (
    "schedule a fault as NAME[:ARG]@START[+DURATION], seconds after start; repeatable. "
    f"Communication: {', '.join(COMM_FAULTS)} (late:<seconds>, exception:<code>). "
    f"Process: {', '.join(PROCESS_FAULTS)} (sensor_stuck:<point>, drift:<point>; points: "
    f"{', '.join(pump_physics.SENSOR_POINTS)}). "
    "Examples: cavitation@20  late:2.5@30+10  exception:6@5+3  disconnect@40+5"
)


def _add_pump(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "pump",
        help="PD-100 pump drive over Modbus TCP",
        description="Serve a simulated PD-100 pump drive over Modbus TCP "
        "(register map: docs/dev/pump-register-map.md).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port",
        type=_int_in(0, 65535, "port"),
        default=5020,
        help="TCP port; 0 picks a free one, shown in the listening line (default %(default)s)",
    )
    parser.add_argument(
        "--unit", type=_int_in(1, 247, "unit id"), default=1, help="Modbus unit id (default 1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="physics noise seed (default 0)")
    parser.add_argument(
        "--fault",
        dest="faults",
        action="extend",
        nargs="+",
        type=_fault_spec,
        default=[],
        metavar="SPEC",
        help=_FAULT_HELP,
    )
    parser.add_argument(
        "--served-log",
        type=Path,
        metavar="FILE",
        help="append every read response served to FILE as JSON lines",
    )
    parser.set_defaults(run=_run_pump, parser=parser)


def _run_pump(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    schedule = FaultSchedule.parse(args.faults)
    for entry in schedule.entries:
        if entry.fault.kind == "process":
            try:
                pump_physics.check_fault(entry.fault.key)
            except ValueError as exc:
                parser.error(f"argument --fault: {entry}: {exc}")
    try:
        asyncio.run(_serve_pump(args, schedule))
    except OSError as exc:
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        print(f"firmware_stubs pump: {exc}{cause}", file=sys.stderr)
        return 1
    return 0


async def _serve_pump(args: argparse.Namespace, schedule: FaultSchedule) -> None:
    # Imported here so that --help and argument errors stay fast.
    from firmware_stubs.modbus.pump import PumpDevice, PumpServer  # noqa: PLC0415

    device = PumpDevice(args.unit, seed=args.seed, schedule=schedule, served_log=args.served_log)
    server = PumpServer(device, host=args.host, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    try:
        print(f"listening modbus-tcp {server.host}:{server.port}", flush=True)
        await stop.wait()
    finally:
        await server.stop()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per stub."""
    parser = argparse.ArgumentParser(
        prog="python -m firmware_stubs",
        description="Simulated field devices for edgetwin tests and demos.",
    )
    sub = parser.add_subparsers(dest="stub", required=True, metavar="STUB")
    _add_pump(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a stub; returns the process exit code (argparse exits 2 on bad arguments)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    runner: Runner = args.run
    return runner(args, args.parser)


if __name__ == "__main__":
    sys.exit(main())
