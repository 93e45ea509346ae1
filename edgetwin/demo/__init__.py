"""`edgetwin demo`: a simulated pump, a broker and the gateway, with a live view."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live

from edgetwin.cloud.subscriber import follow
from edgetwin.config import Config, load_config_text
from edgetwin.demo.broker import EmbeddedBroker
from edgetwin.demo.display import DemoView
from edgetwin.demo.stub import PumpProcess
from edgetwin.runtime.gateway import Gateway
from edgetwin.twin import warmup

log = logging.getLogger(__name__)

DEMO_CONFIG = """
[gateway]
id = "demo-gw"
state_dir = "{state_dir}"

[mqtt]
url = "{broker}"
protocol = "{protocol}"

[outbox]
commit_interval = 0.1
grace_period = 5

[twin]
commissioning = 40

[[buses]]
name = "plant"
kind = "modbus_tcp"
host = "{host}"
port = {port}
timeout = 0.5

[[devices]]
name = "pump1"
bus = "plant"
unit = 1
interval = 0.25
{points}
"""

# (name, address, type, order, scale, unit, model) after docs/pump-register-map.md
DEMO_POINTS = [
    ("speed", 0, "float32", "ABCD", 1.0, "rpm", "level"),
    ("flow", 2, "float32", "ABCD", 1.0, "m3/h", "level"),
    ("discharge_pressure", 4, "float32", "ABCD", 1.0, "bar", "level"),
    ("suction_pressure", 6, "float32", "ABCD", 1.0, "bar", "level"),
    ("motor_current", 8, "float32", "ABCD", 1.0, "A", "level"),
    ("motor_temperature", 10, "float32", "ABCD", 1.0, "degC", "level"),
    ("vibration", 12, "float32", "ABCD", 1.0, "mm/s", "level"),
    ("power", 14, "float32", "ABCD", 1.0, "kW", "level"),
    ("run_seconds", 20, "uint32", "CDAB", 1.0, "s", "none"),
    ("fluid_temperature", 22, "int16", "ABCD", 0.1, "degC", "level"),
]


def demo_config(*, host: str, port: int, broker: str, state_dir: Path, protocol: str) -> Config:
    """The gateway configuration the demo runs, validated like any other."""
    points = "".join(
        f'\n[[devices.points]]\nname = "{n}"\ntable = "input"\naddress = {a}\n'
        f'type = "{t}"\norder = "{o}"\nscale = {s}\nunit = "{u}"\nmodel = "{m}"\n'
        for n, a, t, o, s, u, m in DEMO_POINTS
    )
    text = DEMO_CONFIG.format(
        state_dir=state_dir.as_posix(),
        broker=broker,
        host=host,
        port=port,
        points=points,
        protocol=protocol,
    )
    return load_config_text(text, filename="<demo>")


async def _demo(
    broker: str | None, duration: float | None, fault_at: float, state_dir: Path, console: Console
) -> DemoView:
    async with contextlib.AsyncExitStack() as stack:
        protocol = "5"
        if broker is None:
            broker = await stack.enter_async_context(EmbeddedBroker())
            protocol = "3.1.1"  # amqtt speaks MQTT 3.1.1
        host, port = await stack.enter_async_context(
            PumpProcess([f"cavitation@{fault_at:g}"], state_dir / "pump.log")
        )
        cfg = demo_config(
            host=host, port=port, broker=broker, state_dir=state_dir, protocol=protocol
        )
        view = DemoView(broker=broker, fault_at=fault_at)
        gateway = Gateway(cfg)
        stop_gateway = asyncio.Event()
        stop_tail = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_gateway.set)
        live = Live(console=console, auto_refresh=False, transient=False)
        async with asyncio.TaskGroup() as tg:
            gw_task = tg.create_task(gateway.run(stop_gateway), name="demo-gateway")
            tg.create_task(
                follow(
                    broker, view.feed, stop_tail, prefix=cfg.mqtt.topic_prefix, protocol=protocol
                ),
                name="demo-tail",
            )
            with live:
                while not stop_gateway.is_set() and not gw_task.done():
                    live.update(
                        view.render(gateway.outbox.stats().depth, gateway.uplink.published),
                        refresh=console.is_terminal,
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop_gateway.wait(), 0.25)
                    if duration is not None and time.monotonic() - view.started >= duration:
                        stop_gateway.set()
                await gw_task
                await asyncio.sleep(0.3)  # let the tail see the last frames
                stop_tail.set()
                live.update(
                    view.render(gateway.outbox.stats().depth, gateway.uplink.published),
                    refresh=True,
                )
        return view


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def run_demo(
    *, broker: str | None, duration: float | None, fault_at: float | None, state_dir: Path | None
) -> int:
    """Run the demo; returns the process exit code."""
    console = Console()
    # The live view shows alarms and device state; keep the log for warnings and errors.
    logging.getLogger("edgetwin").setLevel(max(logging.WARNING, logging.getLogger().level))
    if fault_at is None:
        # After the twin has calibrated (40 samples at 0.25 s = 10 s) and settled a little.
        fault_at = max(15.0, 0.4 * duration) if duration is not None else 25.0
    # Compile the twin kernels before the pump's fault clock starts: on a first run (cold
    # Numba cache) that takes longer than the twin's commissioning, and the fault would come
    # before the twin could see it.
    with console.status("preparing the twin's kernels (compiled once, then cached)"):
        warmup()
    with contextlib.ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="edgetwin-demo-"))
            )
        state_dir.mkdir(parents=True, exist_ok=True)
        try:
            view = asyncio.run(_demo(broker, duration, fault_at, state_dir, console))
        except Exception as exc:  # noqa: BLE001 - report root causes, not the group wrapper
            for cause in _leaves(exc):
                print(f"demo failed: {cause}", file=sys.stderr)
            return 1
    console.print()
    if view.raised:
        raised = ", ".join(
            f"{k} at {t:.1f} s" for k, t in sorted(view.raised.items(), key=lambda kv: kv[1])
        )
        console.print(f"alarms raised: {raised}")
    else:
        console.print("alarms raised: none")
    console.print(f"point updates received by the cloud side: {view.updates}")
    return 0
