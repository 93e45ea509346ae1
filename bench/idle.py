"""Idle cost of the daemon: `edgetwin run` with 10 simulated pumps polled at 1 Hz.

Starts, each as its own process: one simulated Modbus TCP endpoint serving N PD-100 pumps
(unit ids 1..N, like a TCP gateway with RS-485 units behind it), a throwaway Mosquitto on a
free loopback port, `edgetwin run` with a generated config, and a reference process that only
imports numba and sleeps. After the daemon has every device online and a warm-up, it measures
the CPU time (user + system, all threads) both processes use over the same window and prints
it as a percentage of one core. Exit 0 when the daemon stays under the limit (1 %), 1 when not,
2 when the set-up failed.

A real broker, not an unreachable one: a healthy gateway publishes every frame, and that work
is part of its steady state; with no broker the uplink would sit in its reconnect backoff and
the figure would flatter the daemon. Without mosquitto installed the run still happens, against
a closed port, and says so.

    .venv/bin/python bench/idle.py [--seconds 60] [--devices 10] [--interval 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / "edgetwin.example.toml"
BASELINE = "import sys, time, numba; print('ready', flush=True); time.sleep(1e6)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the simulated pumps (run as a child: bench/idle.py --serve-pumps N) ----------------------


async def serve_pumps(n: int, log_dir: Path) -> None:
    from firmware_stubs.modbus.pump import PumpDevice, PumpServer  # noqa: PLC0415

    units = [
        PumpDevice(u, seed=u, served_log=log_dir / f"served-{u}.jsonl") for u in range(1, n + 1)
    ]
    server = PumpServer(units, "127.0.0.1", 0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        print(f"listening modbus-tcp {server.host}:{server.port}", flush=True)
        await stop.wait()
    finally:
        await server.stop()


# -- configuration ---------------------------------------------------------------------------


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def write_config(path: Path, *, state: Path, broker: str, pump_port: int, n: int, interval: float):
    """The example config's gateway, with n copies of its pump (unit 1..n) on one bus."""
    example = tomllib.loads(EXAMPLE.read_text())
    points = example["devices"][0]["points"]
    lines = [
        "[gateway]",
        'id = "bench"',
        f"state_dir = {_toml(str(state))}",
        "[mqtt]",
        f"url = {_toml(broker)}",
        "[[buses]]",
        'kind = "modbus_tcp"',
        'name = "plant"',
        'host = "127.0.0.1"',
        f"port = {pump_port}",
        "timeout = 1.0",
    ]
    for unit in range(1, n + 1):
        lines += [
            "[[devices]]",
            f'name = "pump{unit}"',
            'bus = "plant"',
            f"unit = {unit}",
            f"interval = {interval!r}",
        ]
        for p in points:
            lines.append("[[devices.points]]")
            lines += [f"{k} = {_toml(v)}" for k, v in p.items()]
    path.write_text("\n".join(lines) + "\n")


# -- processes -------------------------------------------------------------------------------


@contextmanager
def child(args: list[str], log: Path, *, pipe: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, SIGTERMed (then killed) on exit; output to ``log``."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE if pipe else out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def first_line(proc: subprocess.Popen[bytes], what: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line:
        raise RuntimeError(f"{what} exited before it was ready")
    return line


def wait_for(log: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, log.read_text(errors="replace")):
        if proc.poll() is not None:
            raise RuntimeError(f"exited {proc.returncode} before {pattern!r}; see {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {pattern!r} within {timeout:.0f} s; see {log}")
        time.sleep(0.2)


def start_mosquitto(stack: ExitStack, tmp: Path) -> str | None:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        return None
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    stack.enter_context(child([exe, "-c", str(conf)], tmp / "mosquitto.log"))
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        else:
            return f"mqtt://127.0.0.1:{port}"


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def served_between(log_dir: Path, t0: float, t1: float) -> list[int]:
    """Reads each unit served in [t0, t1], from the pumps' served logs."""
    counts = []
    for path in sorted(log_dir.glob("served-*.jsonl"), key=lambda p: int(p.stem.split("-")[1])):
        ts = (json.loads(line)["t"] for line in path.read_text().splitlines() if line)
        counts.append(sum(t0 <= t <= t1 for t in ts))
    return counts


# -- the measurement -------------------------------------------------------------------------


def measure(args: argparse.Namespace, tmp: Path) -> int:
    with ExitStack() as stack:
        pumps = stack.enter_context(
            child(
                [
                    sys.executable,
                    __file__,
                    "--serve-pumps",
                    str(args.devices),
                    "--log-dir",
                    str(tmp),
                ],
                tmp / "pumps.log",
                pipe=True,
            )
        )
        line = first_line(pumps, "the pump server")
        m = re.fullmatch(r"listening modbus-tcp 127\.0\.0\.1:(\d+)", line)
        if not m:
            raise RuntimeError(f"pump server: unexpected {line!r}")
        broker = start_mosquitto(stack, tmp)
        broker_note = f"Mosquitto at {broker}"
        if broker is None:
            broker = f"mqtt://127.0.0.1:{free_port()}"
            broker_note = f"NO broker (mosquitto not installed; {broker} is closed)"
        cfg = tmp / "edgetwin.toml"
        write_config(
            cfg,
            state=tmp / "state",
            broker=broker,
            pump_port=int(m.group(1)),
            n=args.devices,
            interval=args.interval,
        )
        log = tmp / "edgetwin.log"
        daemon = stack.enter_context(
            child([sys.executable, "-m", "edgetwin", "run", "--config", str(cfg)], log)
        )
        baseline = stack.enter_context(
            child([sys.executable, "-c", BASELINE], tmp / "baseline.log", pipe=True)
        )
        first_line(baseline, "the numba reference process")
        print(f"waiting for the daemon (the first start may compile the twin kernels); log: {log}")
        wait_for(log, r"gateway \S+ running", daemon, timeout=600)
        for unit in range(1, args.devices + 1):
            wait_for(log, rf"device pump{unit}: online", daemon, timeout=30)
        print(f"all {args.devices} devices online; warming up for {args.warmup:g} s")
        time.sleep(args.warmup)

        procs = {"daemon": psutil.Process(daemon.pid), "numba": psutil.Process(baseline.pid)}
        w0, c0 = time.monotonic(), {k: cpu_seconds(p) for k, p in procs.items()}
        t0 = time.time()
        print(f"measuring for {args.seconds:g} s ...")
        time.sleep(args.seconds)
        w1, c1 = time.monotonic(), {k: cpu_seconds(p) for k, p in procs.items()}
        t1 = time.time()
        rss = {k: p.memory_info().rss / 2**20 for k, p in procs.items()}
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited {daemon.returncode} during the measurement")

    wall = w1 - w0
    pct = {k: 100.0 * (c1[k] - c0[k]) / wall for k in procs}
    reads = served_between(tmp, t0, t1)
    lost = re.findall(r"device (\S+): lost", log.read_text(errors="replace"))
    print()
    print(
        f"idle cost over {wall:.1f} s: {args.devices} devices at {1 / args.interval:g} Hz, "
        f"{broker_note}"
    )
    print(f"  {'process':<34} {'% of one core':>14} {'RSS MiB':>9}")
    print(f"  {'edgetwin run':<34} {pct['daemon']:>14.2f} {rss['daemon']:>9.0f}")
    ref = 'python -c "import numba" (asleep)'
    print(f"  {ref:<34} {pct['numba']:>14.2f} {rss['numba']:>9.0f}")
    print(f"  {'limit for edgetwin run':<34} {args.limit:>14.2f}")
    rate = sum(reads) / wall if wall else 0.0
    print(
        f"  polls served: {rate:.2f}/s in total, per unit {min(reads, default=0)}.."
        f"{max(reads, default=0)} in the window; devices lost meanwhile: {len(lost)}"
    )
    expected = args.devices * wall / args.interval
    if sum(reads) < 0.9 * expected:
        print(f"INVALID: expected about {expected:.0f} polls, the pumps served {sum(reads)}")
        return 2
    ok = pct["daemon"] < args.limit
    print("PASS" if ok else f"FAIL: the daemon uses {pct['daemon']:.2f} % >= {args.limit:g} %")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window, s")
    parser.add_argument("--warmup", type=float, default=10.0, help="after all devices are online")
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0, help="poll period, s")
    parser.add_argument("--limit", type=float, default=1.0, help="%% of one core (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--serve-pumps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--log-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_pumps:
        asyncio.run(serve_pumps(args.serve_pumps, args.log_dir))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="edgetwin-idle-"))

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # SIGTERM unwinds like Ctrl-C, so the children (daemon, pumps, broker) are stopped too.
    signal.signal(signal.SIGTERM, interrupted)
    try:
        return measure(args, tmp)
    except (RuntimeError, OSError) as exc:
        print(f"bench/idle.py: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"bench/idle.py: interrupted ({exc or 'SIGINT'}); children stopped", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
