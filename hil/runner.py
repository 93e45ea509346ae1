"""Run one scenario: broker, device side, gateway, event recording; then score it.

Timeline: t = 0 is where the scenario's fault times count from. With a simulated device the
stub starts ``lead`` seconds before t = 0 (its fault specs are shifted by the lead) so the
gateway can start and reach the device first; with ``--rig`` t = 0 is the moment the gateway
has reported every device online. Events are stamped with their arrival time on that timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiomqtt import MqttError
from rich.console import Console

from edgetwin.config import Config
from edgetwin.errors import PayloadError
from edgetwin.uplink.codec import decode_event
from edgetwin.uplink.session import Connector
from edgetwin.uplink.topics import Topics
from hil.procs import Child, SetupError, start_broker, start_gateway, start_pump
from hil.scenario import STUB_FRAMING, Loaded, Scenario, ScenarioError
from hil.score import Event, Score, is_clear, is_raise, score


@dataclass
class Options:
    """How to run: own broker or ``broker``, simulated or ``rig``, time ``scale``."""

    broker: str | None = None
    rig: bool = False
    scale: float = 1.0
    lead: float = 6.0
    ready_timeout: float = 120.0
    workdir: Path | None = None
    console: Console = field(default_factory=Console)


@dataclass
class RunResult:
    """What the run saw and how it scored."""

    scenario: Scenario
    mode: str
    broker: str
    lead: float
    events: list[Event]
    score: Score
    gateway_exit: int | None
    notes: list[str]

    @property
    def exit_code(self) -> int:
        """0 passed, 1 failed (including a gateway that died during the run)."""
        return 0 if self.score.passed and not self.notes else 1


class _Recorder:
    """Collects decoded events with their arrival (monotonic) and prints them as they come."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.t0: float | None = None
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.undecodable = 0

    def now(self) -> float | None:
        return None if self.t0 is None else time.monotonic() - self.t0

    def add(self, body: dict[str, Any]) -> None:
        self.arrivals.append((time.monotonic(), body))
        t = self.now()
        stamp = "  before" if t is None else f"{t:+8.2f} s"
        self.console.print(f"[dim]{stamp}[/dim]  {describe(body)}", highlight=False)

    def online(self) -> set[str]:
        state: dict[str, bool] = {}
        for _, b in self.arrivals:
            if b.get("type") == "device":
                state[b["device"]] = b.get("state") == "online"
        return {d for d, up in state.items() if up}

    def events(self) -> list[Event]:
        t0 = self.t0 if self.t0 is not None else time.monotonic()
        return [Event(round(at - t0, 3), body) for at, body in self.arrivals]


def describe(body: dict[str, Any]) -> str:
    """One line for an event, e.g. ``ALARM asset hydraulics score 3.1 major (flow 70%)``."""
    kind = body.get("type")
    if kind == "device":
        detail = f" ({body['detail']})" if body.get("detail") else ""
        return f"device {body['device']} {body['state']}{detail}"
    if kind == "alarm":
        what = f"asset {body['asset']}" if "asset" in body else f"point {body['point']}"
        verb = "[red]ALARM[/red]" if is_raise(body) else "[green]clear[/green]"
        if not is_raise(body) and not is_clear(body):
            verb = f"alarm {body.get('previous')}->{body['alarm']}"
        score = body.get("score")
        extra = f" score {score:.2f}" if isinstance(score, int | float) else ""
        extra += f" {body['severity']}" if body.get("severity") else ""
        contrib = body.get("contributions")
        if contrib:
            top = sorted(contrib.items(), key=lambda kv: -kv[1])[:3]
            extra += " (" + ", ".join(f"{p} {s:.0%}" for p, s in top) + ")"
        return f"{verb} {body['device']} {what}{extra}"
    return f"{kind} event {body}"


async def _subscribe(cfg: Config, rec: _Recorder, ready: asyncio.Event) -> None:
    """Follow the gateway's event topic with the project's own decoder until cancelled."""
    # The subscriber's own session is a clean one, whatever the gateway's settings are.
    mqtt = cfg.mqtt.model_copy(update={"clean_start": True, "session_expiry": 0})
    topic = Topics(mqtt.topic_prefix, cfg.gateway.id).events
    client = Connector(mqtt).client(f"hil-{secrets.token_hex(4)}")
    async with client:
        await client.subscribe(topic, qos=1)
        ready.set()
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            try:
                body = decode_event(payload)
            except PayloadError as exc:
                rec.undecodable += 1
                rec.console.print(f"[yellow]undecodable event dropped: {exc}[/yellow]")
                continue
            rec.add(body)


def _timeline(scenario: Scenario, rig: bool) -> list[tuple[float, str]]:
    marks: list[tuple[float, str]] = []
    for w in scenario.faults:
        expect = "; ".join(
            [f"expect {e.label} within {e.within:g} s" for e in w.expect]
            + ([f"tolerate {', '.join(t.label for t in w.tolerate)}"] if w.tolerate else [])
        )
        verb = "APPLY" if rig else "start"
        note = f" — {w.note}" if rig and w.note else ""
        marks.append(
            (w.start, f"{verb} {w.fault} for {w.duration:g} s{note} ({expect or 'no expectation'})")
        )
        marks.append((w.end, f"{'REMOVE' if rig else 'end'} {w.fault}"))
    marks.append((scenario.duration, "end of the scenario"))
    return sorted(marks, key=lambda m: m[0])


class _Run:
    def __init__(self, loaded: Loaded, opts: Options, workdir: Path) -> None:
        self.loaded = loaded
        self.opts = opts
        self.workdir = workdir
        self.scenario = loaded.scenario.scaled(opts.scale) if opts.scale != 1.0 else loaded.scenario
        self.console = opts.console
        self.rec = _Recorder(opts.console)
        self.children: list[Child] = []
        self.gateway: Child | None = None
        self.sub: asyncio.Task[None] | None = None
        self.notes: list[str] = []

    def stop_all(self) -> None:
        """Stop every child, newest first (the gateway before the stub and the broker)."""
        while self.children:
            child = self.children.pop()
            child.stop(30.0 if child is self.gateway else 10.0)

    def check(self) -> None:
        """Raise SetupError if a child or the subscription died."""
        if self.sub is not None and self.sub.done():
            exc = self.sub.exception()
            raise SetupError(f"the event subscription ended: {exc}")
        for child in self.children:
            if not child.running:
                raise SetupError(
                    f"{child.name} exited with code {child.proc.returncode}:\n{child.tail()}"
                )

    async def _until(self, done: Callable[[], bool], deadline: float, what: str) -> None:
        while not done():
            self.check()
            if time.monotonic() > deadline:
                raise SetupError(what)
            await asyncio.sleep(0.05)

    async def start(self) -> tuple[str, Config]:
        opts, sc = self.opts, self.scenario
        sim = not opts.rig
        if sim and sc.device is None:
            raise ScenarioError([f"{self.loaded.path}: no [device] section: run it with --rig"])
        # Fail on the config (and the scale floor) before any process starts.
        self.loaded.gateway_config(
            broker=opts.broker or "mqtt://127.0.0.1:1883",
            state_dir=self.workdir,
            stub_port=1 if sim else None,
            scale=opts.scale,
        )
        broker = opts.broker
        if broker is None:
            child, broker = start_broker(self.workdir / "mosquitto")
            self.children.append(child)
        port: int | None = None
        if sim:
            assert sc.device is not None
            bus = self.loaded.config["buses"]
            kind = next(b["kind"] for b in bus if b["name"] == sc.device.bus)
            specs = [w.spec(shift=opts.lead) for w in sc.faults]
            stub, port = start_pump(
                self.workdir, specs, seed=sc.device.seed, framing=STUB_FRAMING[kind]
            )
            self.rec.t0 = time.monotonic() + opts.lead
            self.children.append(stub)
        text, cfg = self.loaded.gateway_config(
            broker=broker, state_dir=self.workdir / "state", stub_port=port, scale=opts.scale
        )
        config_path = self.workdir / "edgetwin.toml"
        config_path.write_text(text)
        ready = asyncio.Event()
        self.sub = asyncio.create_task(_subscribe(cfg, self.rec, ready), name="hil-subscriber")
        await self._until(ready.is_set, time.monotonic() + 15, "no subscription to the broker")
        self.gateway = start_gateway(config_path, self.workdir)
        self.children.append(self.gateway)
        devices = {d.name for d in cfg.devices}
        if sim:
            assert self.rec.t0 is not None
            deadline = self.rec.t0
            what = (
                f"the gateway had not reported every device online by t = 0 "
                f"(--lead {opts.lead:g} s); see {self.gateway.log}"
            )
        else:
            deadline = time.monotonic() + opts.ready_timeout
            what = f"devices not online within {opts.ready_timeout:g} s; see {self.gateway.log}"
        await self._until(lambda: devices <= self.rec.online(), deadline, what)
        if not sim:
            self.rec.t0 = time.monotonic()
        return broker, cfg

    async def timeline(self) -> None:
        marks = _timeline(self.scenario, self.opts.rig)
        if self.opts.rig:
            self.console.print("[bold]Fault timeline (seconds from now):[/bold]")
            for t, text in marks:
                self.console.print(f"  t = {t:7.1f}  {text}", highlight=False)
        while True:
            now = self.rec.now()
            assert now is not None
            while marks and marks[0][0] <= now:
                t, text = marks.pop(0)
                style = "bold yellow" if self.opts.rig else "bold"
                self.console.print(f"[{style}]{t:+8.2f} s  ── {text}[/{style}]", highlight=False)
            if not marks:
                return
            try:
                self.check()
            except SetupError as exc:
                if self.gateway is not None and not self.gateway.running:
                    self.notes.append(f"the gateway died at t = {now:.1f} s: {exc}")
                    return
                raise
            await asyncio.sleep(min(0.2, max(0.0, marks[0][0] - now)))

    async def finish(self) -> int | None:
        code: int | None = None
        if self.gateway is not None:
            gw = self.gateway
            code = await asyncio.to_thread(gw.stop, 30.0)
            self.children.remove(gw)
            if code != 0 and not self.notes:
                self.notes.append(f"the gateway exited with code {code}:\n{gw.tail()}")
        await asyncio.sleep(0.5)  # the last events in flight
        await self.stop_subscriber()
        return code

    async def stop_subscriber(self) -> None:
        if self.sub is not None:
            self.sub.cancel()
            with contextlib.suppress(asyncio.CancelledError, MqttError):
                await self.sub


async def run(loaded: Loaded, opts: Options) -> RunResult:
    """Run the scenario; SetupError or ScenarioError when it cannot be run."""
    with contextlib.ExitStack() as stack:
        if opts.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hil-")))
        else:
            workdir = opts.workdir
            workdir.mkdir(parents=True, exist_ok=True)
        r = _Run(loaded, opts, workdir)
        stack.callback(r.stop_all)
        try:
            broker, _ = await r.start()
            await r.timeline()
            gateway_exit = await r.finish()
        finally:
            await r.stop_subscriber()
        events = r.rec.events()
        result = score(r.scenario, events)
        if r.rec.undecodable:
            r.notes.append(f"{r.rec.undecodable} undecodable events")
        return RunResult(
            scenario=r.scenario,
            mode="rig" if opts.rig else "simulated",
            broker=broker,
            lead=0.0 if opts.rig else opts.lead,
            events=events,
            score=result,
            gateway_exit=gateway_exit,
            notes=r.notes,
        )
