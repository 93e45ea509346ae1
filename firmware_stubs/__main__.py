"""Command line: ``python -m firmware_stubs <stub> ...``; each simulated device is a subcommand.

Once a stub listens it prints exactly one line to stdout, e.g.
``listening modbus-tcp 127.0.0.1:5020``, ``listening modbus-rtu /dev/pts/7``,
``listening modbus-rtu-tcp 127.0.0.1:5020`` or ``listening serial /dev/pts/3``, then runs
until SIGINT or SIGTERM and exits 0.
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
    f"Process: {', '.join(PROCESS_FAULTS)} (sensor_stuck:<point>, drift:<point>, "
    "throttle:<fraction> of the discharge valve closed, in (0, 1); points: "
    f"{', '.join(pump_physics.SENSOR_POINTS)}). "
    "Examples: cavitation@20  throttle:0.6@28+12  late:2.5@30+10  exception:6@5+3  disconnect@40+5"
)


def _add_pump(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "pump",
        help="PD-100 pump drive over Modbus TCP, RTU or RTU over TCP",
        description="Serve a simulated PD-100 pump drive over Modbus TCP, over Modbus RTU on a "
        "pseudo-terminal (--rtu), or as RTU frames over TCP (--rtu-tcp), one or more units on "
        "one line (register map: docs/dev/pump-register-map.md).",
    )
    framing = parser.add_mutually_exclusive_group()
    framing.add_argument(
        "--rtu",
        action="store_true",
        help="Modbus RTU on a new pseudo-terminal; the listening line names the tty to open",
    )
    framing.add_argument(
        "--rtu-tcp",
        action="store_true",
        help="raw RTU frames (with CRC) over TCP, as a transparent serial gateway sends them",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port",
        type=_int_in(0, 65535, "port"),
        default=5020,
        help="TCP port; 0 picks a free one, shown in the listening line (default %(default)s)",
    )
    parser.add_argument(
        "--unit",
        dest="units",
        action="append",
        type=_int_in(1, 247, "unit id"),
        help="Modbus unit id (default 1); repeat for several units on one line",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="physics noise seed of the first unit; the next units take seed+1, ... (default 0)",
    )
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
    args.units = args.units or [1]
    if len(set(args.units)) != len(args.units):
        parser.error("argument --unit: each unit id may appear once")
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
    from firmware_stubs.modbus.pump import PumpDevice, PumpSerialServer, PumpServer  # noqa: PLC0415

    devices = [
        PumpDevice(unit, seed=args.seed + i, schedule=schedule, served_log=args.served_log)
        for i, unit in enumerate(args.units)
    ]
    server: PumpServer | PumpSerialServer
    if args.rtu:
        server = PumpSerialServer(devices)
    else:
        framer = "rtu" if args.rtu_tcp else "socket"
        server = PumpServer(devices, host=args.host, port=args.port, framer=framer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    try:
        if isinstance(server, PumpSerialServer):
            print(f"listening modbus-rtu {server.path}", flush=True)
        else:
            kind = "modbus-rtu-tcp" if args.rtu_tcp else "modbus-tcp"
            print(f"listening {kind} {server.host}:{server.port}", flush=True)
        await stop.wait()
    finally:
        await server.stop()


def _serial_fault_spec(text: str) -> str:
    from firmware_stubs.serial.faults import parse_serial_spec  # noqa: PLC0415

    try:
        parse_serial_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _hex_bytes(text: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if not value:
        raise argparse.ArgumentTypeError(f"{text!r} is not hex bytes (e.g. '01 03')")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _add_serial(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "serial",
        help="serial sensors (line, NMEA, binary frames) on a pseudo-terminal",
        description="Run a simulated serial sensor on a new pty; the gateway opens the slave "
        "path shown in the listening line (or the --link symlink).",
    )
    parser.add_argument(
        "--protocol",
        choices=("line", "nmea", "binary"),
        required=True,
        help="line: weather station 'T=21.4;H=45.2;P=1013.2'; nmea: GPS and wind "
        "(GGA, RMC, VTG, MWV, XDR); binary: flow meter frame with CRC-16/MODBUS",
    )
    poll = parser.add_mutually_exclusive_group()
    poll.add_argument(
        "--poll",
        metavar="TEXT",
        help="answer only this request (Python escapes allowed, e.g. '?\\r\\n'); "
        "default: free-running",
    )
    poll.add_argument("--poll-hex", type=_hex_bytes, metavar="HEX", help="request as hex bytes")
    parser.add_argument(
        "--period",
        type=_positive,
        default=0.5,
        help="seconds between emissions when free-running (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="physics noise seed (default 0)")
    parser.add_argument(
        "--link", type=Path, metavar="PATH", help="keep a symlink to the slave tty at PATH"
    )
    parser.add_argument(
        "--fault",
        dest="faults",
        action="extend",
        nargs="+",
        type=_serial_fault_spec,
        default=[],
        metavar="SPEC",
        help="schedule a fault as NAME[:ARG]@START[+DURATION], seconds after start; "
        "repeatable. Faults: garbage[:bytes], partial, bad_checksum (nmea, binary), "
        "bad_value, overlong, silence, unplug. Examples: garbage@5+10  unplug@20+3",
    )
    parser.add_argument(
        "--sent-log",
        type=Path,
        metavar="FILE",
        help="append every emission sent to FILE as JSON lines",
    )
    parser.set_defaults(run=_run_serial, parser=parser)


def _run_serial(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from firmware_stubs.serial.faults import check_supported, parse_serial_spec  # noqa: PLC0415

    schedule = FaultSchedule(parse_serial_spec(spec) for spec in args.faults)
    for entry in schedule.entries:
        try:
            check_supported(args.protocol, entry.fault)
        except ValueError as exc:
            parser.error(f"argument --fault: {entry}: {exc}")
    request: bytes | None = args.poll_hex
    if args.poll is not None:
        try:
            request = args.poll.encode("ascii").decode("unicode_escape").encode("latin-1")
        except (UnicodeError, ValueError) as exc:
            parser.error(f"argument --poll: {exc}")
        if not request:
            parser.error("argument --poll: must not be empty")
    try:
        asyncio.run(_serve_serial(args, schedule, request))
    except OSError as exc:
        print(f"firmware_stubs serial: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve_serial(
    args: argparse.Namespace, schedule: FaultSchedule, request: bytes | None
) -> None:
    from firmware_stubs.serial.device import SerialStub  # noqa: PLC0415

    stub = SerialStub(
        args.protocol,
        seed=args.seed,
        period=args.period,
        poll=request,
        schedule=schedule,
        link=args.link,
        sent_log=args.sent_log,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stub.start()
    try:
        print(f"listening serial {stub.path}", flush=True)
        await stop.wait()
    finally:
        await stub.stop()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subcommand per stub."""
    parser = argparse.ArgumentParser(
        prog="python -m firmware_stubs",
        description="Simulated field devices for edgetwin tests and demos.",
    )
    sub = parser.add_subparsers(dest="stub", required=True, metavar="STUB")
    _add_pump(sub)
    _add_serial(sub)
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
