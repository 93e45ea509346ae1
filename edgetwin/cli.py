"""Command-line entry points: run, check, tail, demo, warmup, status, scan."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetwin import __version__
from edgetwin.errors import ConfigError, EdgetwinError

if TYPE_CHECKING:
    from edgetwin.config import Config

log = logging.getLogger("edgetwin")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # also: invalid configuration


def positive_number(text: str) -> float:
    """argparse type: a finite number > 0 (seconds, mostly); also used by the hil runner."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _unit_range(text: str) -> range:
    lo, _, hi = text.partition("-")
    try:
        first, last = int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a unit id or a range like 1-32"
        ) from None
    if not 0 <= first <= last <= 247:
        raise argparse.ArgumentTypeError(f"{text!r}: unit ids are 0..247, low to high")
    return range(first, last + 1)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def _broker_url(text: str) -> str:
    from edgetwin.config.schema import MqttConfig  # noqa: PLC0415 - keep `--help` fast

    try:
        MqttConfig(url=text)
    except ValueError as exc:
        first = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
        raise argparse.ArgumentTypeError(f"broker URL {text!r}: {first}") from None
    return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="edgetwin",
        description="Edge-gateway agent for digital twins of machines.",
    )
    parser.add_argument("--version", action="version", version=f"edgetwin {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity on stderr (default: INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "run",
        help="run the gateway daemon",
        description=(
            "Poll the configured devices, run the twin and send its state upstream over MQTT "
            "until SIGTERM or SIGINT, then shut down in order. SIGHUP reloads the "
            "configuration; a file with problems is refused and the running one kept."
        ),
    )
    p.add_argument("--config", "-c", type=Path, required=True, help="TOML configuration file")

    p = sub.add_parser(
        "check",
        help="validate a configuration file",
        description=(
            "Validate a configuration without touching any device. Exit 0 when valid, 2 with "
            "every problem (file:line: [key path] message) when not. With --probe, also read "
            "every point once (exit 1 if any point could not be read)."
        ),
    )
    p.add_argument("--config", "-c", type=Path, required=True, help="TOML configuration file")
    p.add_argument(
        "--probe",
        action="store_true",
        help="also read every configured point once and print a table (touches the devices)",
    )

    p = sub.add_parser(
        "tail",
        help="follow gateways' twin state from a broker",
        description=(
            "The reference cloud consumer: decode the twin topics and print one line per point "
            "update. Exit 0 when --count updates arrived (or --timeout ran out without --count), "
            "1 when --count was not reached in time."
        ),
    )
    p.add_argument(
        "--broker",
        type=_broker_url,
        default="mqtt://127.0.0.1:1883",
        help="broker URL, mqtt://host:port or mqtts://host:port (default: %(default)s)",
    )
    p.add_argument("--prefix", default="edgetwin/v1", help="topic prefix (default: %(default)s)")
    p.add_argument("--gateway", default="+", help="only this gateway id (default: all)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--count", type=_count, help="stop after N point updates")
    p.add_argument("--timeout", type=positive_number, help="stop after S seconds")
    p.add_argument(
        "--mqtt-protocol",
        choices=["5", "3.1.1"],
        default="5",
        help="MQTT protocol version (default: %(default)s)",
    )
    p.add_argument(
        "--share",
        metavar="GROUP",
        help=(
            "join the MQTT 5 shared-subscription group GROUP: the broker splits frames and "
            "events between the group's members; every member still gets births and status"
        ),
    )
    p.add_argument("--tls-ca", type=Path, metavar="FILE", help="CA certificates (PEM) for mqtts")
    p.add_argument("--tls-cert", type=Path, metavar="FILE", help="client certificate (PEM)")
    p.add_argument("--tls-key", type=Path, metavar="FILE", help="client private key (PEM)")
    p.add_argument(
        "--tls-insecure",
        action="store_true",
        help="do not check the broker's host name (the certificate chain still is)",
    )
    p.add_argument("--username", help="broker user name")
    p.add_argument(
        "--password-file", type=Path, metavar="FILE", help="file whose first line is the password"
    )

    p = sub.add_parser(
        "demo",
        help="watch a live twin of a simulated pump",
        description=(
            "Start a simulated pump (Modbus TCP on loopback), a broker unless --broker is given, "
            "and the gateway; show each point's raw value, estimate, anomaly score and alarm. "
            "A cavitation fault is injected partway through."
        ),
    )
    p.add_argument("--broker", type=_broker_url, help="use this broker instead of an embedded one")
    p.add_argument(
        "--duration", type=positive_number, help="stop after S seconds (default: Ctrl-C)"
    )
    p.add_argument(
        "--fault-at",
        type=positive_number,
        help="inject the fault after S seconds (default: 40%% of --duration, at least 15; or 25)",
    )
    p.add_argument("--state-dir", type=Path, help="keep the outbox here (default: a temp dir)")

    sub.add_parser(
        "warmup",
        help="compile (or load cached) twin kernels",
        description=("Compile the Numba kernels now so the first poll after start is not delayed."),
    )

    p = sub.add_parser(
        "scan",
        help="find the devices that answer on a bus",
        description="Commissioning: list what answers on a Modbus line or an I2C bus.",
    )
    scan = p.add_subparsers(dest="scan_kind", metavar="BUS", required=True)
    q = scan.add_parser(
        "modbus",
        help="unit ids that answer on a Modbus line or endpoint",
        description=(
            "Probe unit ids (one read each) and list those that answer; an exception "
            "response counts as present. Exit 0 when any unit answered, 1 when none did."
        ),
    )
    where = q.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", metavar="HOST:PORT", help="Modbus TCP endpoint")
    where.add_argument("--rtu-tcp", metavar="HOST:PORT", help="serial gateway passing RTU over TCP")
    where.add_argument("--rtu", metavar="PORT", help="serial device, e.g. /dev/ttyUSB0")
    q.add_argument("--baudrate", type=int, default=9600, help="RTU baud rate (default 9600)")
    q.add_argument("--parity", choices=["N", "E", "O"], default="E", help="RTU parity (default E)")
    q.add_argument(
        "--units",
        type=_unit_range,
        default=range(1, 248),
        help="unit ids to try, e.g. 1-32 or 5 (default 1-247)",
    )
    q.add_argument(
        "--timeout", type=positive_number, default=0.2, help="seconds per probe (default 0.2)"
    )
    q = scan.add_parser(
        "i2c",
        help="addresses that answer on an I2C bus, and the chips they look like",
        description="Probe 0x03..0x77 like i2cdetect; identify known chips by their ID registers.",
    )
    q.add_argument("--bus", type=int, required=True, help="N of /dev/i2c-N")

    p = sub.add_parser(
        "status",
        help="summarise the running daemon's health",
        description=(
            "Read the running gateway's status endpoint and print each device (online or "
            "offline, since when, why), last values, alarms, uplink state and backlog. "
            "Exit 0 all well, 1 needs attention, 2 daemon unreachable."
        ),
    )
    p.add_argument("--url", help="status endpoint (default: http://127.0.0.1:9877)")
    p.add_argument("--json", action="store_true", help="print the status document as JSON")
    return parser


def _print_problems(err: ConfigError) -> None:
    for problem in err.problems:
        print(problem, file=sys.stderr)
    n = len(err.problems)
    print(f"{n} problem{'s' if n != 1 else ''} found", file=sys.stderr)


def _cmd_check(args: argparse.Namespace) -> int:
    from edgetwin.config import load_config  # noqa: PLC0415

    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        _print_problems(err)
        return EXIT_USAGE
    points = sum(len(d.points) for d in cfg.devices)
    if args.probe:
        return _probe(cfg)
    print(
        f"{args.config}: OK (gateway {cfg.gateway.id}, {len(cfg.buses)} buses, "
        f"{len(cfg.devices)} devices, {points} points)"
    )
    return EXIT_OK


def _probe(cfg: Config) -> int:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from edgetwin.runtime.probe import ProbeRow, probe  # noqa: PLC0415

    rows: list[ProbeRow] = []

    async def main() -> None:
        rows.extend(await probe(cfg))

    rc = _run_async(main)
    if rc != EXIT_OK:
        return rc
    table = Table(title=f"probe of {cfg.gateway.id}")
    for col in ("device", "point", "value", "unit", "quality", "problem"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for r in rows:
        value = "—" if math.isnan(r.value) else f"{r.value:.6g}"
        quality = "ok" if not r.quality else (r.quality.name or str(int(r.quality))).lower()
        table.add_row(r.device, r.point, value, r.unit, quality, r.error)
    Console(width=160).print(table)
    bad = sum(1 for r in rows if r.quality)
    print(f"{len(rows) - bad} of {len(rows)} points read")
    return EXIT_OK if bad == 0 else EXIT_FAILURE


async def _until_signal(stop: asyncio.Event, reload: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    if reload is not None:

        def on_hup() -> None:
            log.info("SIGHUP received: reloading the configuration")
            reload.set()

        loop.add_signal_handler(signal.SIGHUP, on_hup)

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: stopping now", signal.Signals(signum).name)
            if main is not None:
                main.cancel()
            return
        log.info("%s received", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


def _cmd_run(args: argparse.Namespace) -> int:
    from edgetwin.config import load_config  # noqa: PLC0415
    from edgetwin.runtime.supervisor import supervise  # noqa: PLC0415

    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        _print_problems(err)
        return EXIT_USAGE

    async def main() -> None:
        stop, reload = asyncio.Event(), asyncio.Event()
        await _until_signal(stop, reload)
        await supervise(args.config, cfg, stop, reload)

    return _run_async(main)


LOOPS = ("uvloop", "asyncio")


def _run_async(main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    # uvloop by default: at rest the daemon's cost is mostly the loop's own wake-ups (bench/idle.py:
    # about 10 % less CPU than asyncio's loop); EDGETWIN_LOOP=asyncio falls back, e.g. to debug.
    choice = os.environ.get("EDGETWIN_LOOP", "uvloop")
    if choice not in LOOPS:
        print(
            f"edgetwin: EDGETWIN_LOOP must be one of {', '.join(LOOPS)}, not {choice!r}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        if choice == "uvloop":
            import uvloop  # noqa: PLC0415 - only the async commands need it

            uvloop.run(main())
        else:
            asyncio.run(main())
    except ConfigError as err:
        _print_problems(err)
        return EXIT_USAGE
    except EdgetwinError as exc:
        log.critical("stopped: %s", exc)
        return EXIT_FAILURE
    except asyncio.CancelledError:
        log.warning("stopped by a second signal; unsent messages stay in the outbox")
        return EXIT_FAILURE
    except Exception:
        log.critical("stopped by an internal error", exc_info=True)
        return EXIT_FAILURE
    return EXIT_OK


def _cmd_tail(args: argparse.Namespace) -> int:
    if args.share is not None and args.mqtt_protocol != "5":
        print("tail: --share needs --mqtt-protocol 5", file=sys.stderr)
        return EXIT_USAGE
    from edgetwin.cloud.mirror import PointUpdate  # noqa: PLC0415
    from edgetwin.cloud.render import update_json, update_text  # noqa: PLC0415
    from edgetwin.cloud.subscriber import follow  # noqa: PLC0415

    seen = 0

    async def main() -> None:
        nonlocal seen
        stop = asyncio.Event()
        await _until_signal(stop)

        def show(u: PointUpdate) -> None:
            nonlocal seen
            if args.count is not None and seen >= args.count:
                return
            seen += 1
            print(update_json(u) if args.json else update_text(u), flush=True)
            if args.count is not None and seen >= args.count:
                stop.set()

        async def deadline(seconds: float) -> None:
            await asyncio.sleep(seconds)
            stop.set()

        timer = None
        if args.timeout is not None:
            timer = asyncio.create_task(deadline(args.timeout), name="tail-timeout")
        try:
            # Not inside a TaskGroup: a ConfigError must reach _run_async unwrapped (exit 2).
            await follow(
                args.broker,
                show,
                stop,
                prefix=args.prefix,
                gateway=args.gateway,
                protocol=args.mqtt_protocol,
                share=args.share,
                tls_ca=args.tls_ca,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
                tls_insecure=args.tls_insecure,
                username=args.username,
                password_file=args.password_file,
            )
        finally:
            if timer is not None:
                timer.cancel()
                await asyncio.gather(timer, return_exceptions=True)

    rc = _run_async(main)
    if rc == EXIT_OK and args.count is not None and seen < args.count:
        print(f"tail: {seen} of {args.count} updates before the timeout", file=sys.stderr)
        return EXIT_FAILURE
    return rc


def _cmd_scan(args: argparse.Namespace) -> int:
    if args.scan_kind == "i2c":
        return _scan_i2c(args.bus)
    from edgetwin.scan.modbus import scan_units  # noqa: PLC0415
    from edgetwin.transports.modbus_serial import ModbusRtuLink, ModbusRtuTcpLink  # noqa: PLC0415
    from edgetwin.transports.modbus_tcp import ModbusLink, ModbusTcpLink  # noqa: PLC0415

    link: ModbusLink
    try:
        if args.rtu:
            link = ModbusRtuLink(
                args.rtu, baudrate=args.baudrate, parity=args.parity, timeout=args.timeout
            )
        else:
            host, port = _host_port(args.tcp or args.rtu_tcp)
            cls = ModbusTcpLink if args.tcp else ModbusRtuTcpLink
            link = cls(host, port, timeout=args.timeout)
    except ValueError as exc:
        print(f"edgetwin scan modbus: {exc}", file=sys.stderr)
        return EXIT_USAGE
    found: list[int] = []

    async def main() -> None:
        try:
            found.extend(await scan_units(link, args.units, answer_within=args.timeout))
        finally:
            link.close()

    rc = _run_async(main)
    if rc != EXIT_OK:
        return rc
    for unit in found:
        print(unit)
    print(f"{len(found)} of {len(args.units)} unit ids answered", file=sys.stderr)
    return EXIT_OK if found else EXIT_FAILURE


def _scan_i2c(bus_number: int) -> int:
    from edgetwin.drivers.i2c.scan import scan  # noqa: PLC0415
    from edgetwin.transports.i2c import I2cBus  # noqa: PLC0415

    bus = I2cBus(bus_number)
    found: list[tuple[int, str | None]] = []

    async def main() -> None:
        try:
            found.extend(await scan(bus))
        finally:
            bus.close()

    rc = _run_async(main)
    if rc != EXIT_OK:
        return rc
    for address, chip in found:
        print(f"0x{address:02x}  {chip or '?'}")
    print(f"{len(found)} addresses answered on /dev/i2c-{bus_number}", file=sys.stderr)
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from edgetwin.status import DEFAULT_URL, run_status  # noqa: PLC0415

    return run_status(args.url or DEFAULT_URL, as_json=args.json)


def _cmd_warmup(_: argparse.Namespace) -> int:
    from edgetwin.twin import warmup  # noqa: PLC0415

    t0 = time.perf_counter()
    warmup()
    print(f"twin kernels ready in {time.perf_counter() - t0:.1f} s")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from edgetwin.demo import run_demo  # noqa: PLC0415

    return run_demo(
        broker=args.broker,
        duration=args.duration,
        fault_at=args.fault_at,
        state_dir=args.state_dir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `edgetwin` command."""
    from edgetwin.runtime.logs import setup_logging  # noqa: PLC0415

    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    handlers = {
        "run": _cmd_run,
        "check": _cmd_check,
        "tail": _cmd_tail,
        "demo": _cmd_demo,
        "warmup": _cmd_warmup,
        "status": _cmd_status,
        "scan": _cmd_scan,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
