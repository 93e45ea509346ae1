"""PD-100 pump drive served over Modbus TCP, RTU on a pseudo-terminal, or RTU over TCP.

Register map: docs/dev/pump-register-map.md. The tables are pymodbus SimData blocks; the
SimDevice ``action`` callback advances the physics to "now" and writes fresh words into the
block on every read, so pymodbus serves live values.

Communication faults: ``no_answer`` and ``disconnect`` park the request until the server stops
(``disconnect`` also closes client connections and closes new ones at once), ``late:<s>``
delays the answer, ``exception:<code>`` answers that Modbus exception, ``garbage`` keeps the
MBAP header but scrambles the PDU with function code 0 so no client can decode it (on RTU
framing it keeps address, function and length, scrambles the data and sends a wrong CRC),
``stuck`` freezes the input registers and discrete inputs (set-points stay live). Only
answers that leave intact are appended to ``served``; accepted writes go to ``writes``.

Per-request state (the request PDU, whether to garble the answer) travels in a ContextVar:
the server sets it in its ``trace_pdu`` hook when a request is decoded, and asyncio copies the
context into the task that runs ``action`` and sends the answer. That gives the action the bit
count of coil reads (pymodbus passes only whole registers) and lets a late answer keep its own
transaction id (pymodbus stamps the id of the connection's latest request).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import math
import os
import time
import tty
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict, cast

import numpy as np
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerRTU, FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from edgetwin.protocols.modbus.codec import REGISTER_COUNT, ByteOrder, ValueType, decode, encode
from firmware_stubs.faults import Fault, FaultSchedule, parse_fault
from firmware_stubs.physics import pump as physics

log = logging.getLogger(__name__)

Table = Literal["input", "holding", "coil", "discrete"]
Clock = Callable[[], float]


@dataclass(frozen=True)
class Register:
    """One value in a register table; the register holds round(value / scale)."""

    name: str
    address: int
    vtype: ValueType
    order: ByteOrder = "ABCD"
    scale: float = 1.0

    @property
    def count(self) -> int:
        """Number of 16-bit registers the value occupies."""
        return REGISTER_COUNT[self.vtype]


INPUT_REGISTERS: tuple[Register, ...] = (
    Register("speed", 0, "float32"),
    Register("flow", 2, "float32"),
    Register("discharge_pressure", 4, "float32"),
    Register("suction_pressure", 6, "float32"),
    Register("motor_current", 8, "float32"),
    Register("motor_temperature", 10, "float32"),
    Register("vibration", 12, "float32"),
    Register("power", 14, "float32"),
    Register("run_seconds", 20, "uint32", "CDAB"),
    Register("fluid_temperature", 22, "int16", scale=0.1),
    Register("status", 23, "uint16"),
)
RESERVED_INPUTS = range(16, 20)
INPUT_SIZE = 24
HOLDING_REGISTERS: tuple[Register, ...] = (
    Register("speed_setpoint", 100, "uint16"),
    Register("run", 101, "uint16"),
    Register("flow_alarm_limit", 102, "float32"),
)
HOLDING_START = 100
HOLDING_SIZE = 4
COILS: tuple[str, ...] = ("run",)
DISCRETE_INPUTS: tuple[str, ...] = ("running", "fault")

_TABLE_BY_FC: dict[int, Table] = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    4: "input",
    3: "holding",
    6: "holding",
    16: "holding",
    22: "holding",
    23: "holding",
}
_READ_FCS = frozenset({1, 2, 3, 4})
_BITS_SIZE: dict[Table, int] = {"coil": len(COILS), "discrete": len(DISCRETE_INPUTS)}
_INT_RANGE: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}


class ServedRecord(TypedDict):
    """One read response as served: what a client must have decoded."""

    t: float
    unit: int
    table: Table
    address: int
    count: int
    registers: list[int] | list[bool]


@dataclass
class _Exchange:
    """State of the request being handled, carried in a ContextVar (see module docstring)."""

    request: ModbusPDU
    device: PumpDevice | None = None
    corrupt: bool = False
    unknown: bool = False  # addressed to a unit this server does not have


_EXCHANGE: contextvars.ContextVar[_Exchange | None] = contextvars.ContextVar(
    "firmware_stubs_pump_exchange", default=None
)


def to_words(reg: Register, value: float) -> list[int]:
    """Encode a physical value into the register words of ``reg``."""
    raw = value / reg.scale
    if reg.vtype.startswith("float"):
        return encode(raw, reg.vtype, reg.order)
    lo, hi = _INT_RANGE[reg.vtype]
    return encode(max(lo, min(hi, round(raw))), reg.vtype, reg.order)


def _bits_word(bits: Sequence[bool]) -> int:
    return sum(1 << i for i, bit in enumerate(bits) if bit)


class PumpDevice:
    """One simulated PD-100 drive (a Modbus unit): physics, register tables and faults."""

    def __init__(
        self,
        unit: int = 1,
        *,
        seed: int = 0,
        schedule: FaultSchedule | None = None,
        clock: Clock = time.monotonic,
        served_maxlen: int = 10_000,
        served_log: Path | None = None,
    ) -> None:
        """Build the device; elapsed time (for the schedule) starts now on ``clock``."""
        self.unit = unit
        self.model = physics.PumpModel(seed)
        self.schedule = schedule or FaultSchedule()
        for entry in self.schedule.entries:
            if entry.fault.kind == "process":
                physics.check_fault(entry.fault.key)
        self.served: deque[ServedRecord] = deque(maxlen=served_maxlen)
        #: accepted writes as (function code, address, values)
        self.writes: deque[tuple[int, int, list[int]]] = deque(maxlen=served_maxlen)
        self.served_log = served_log
        if served_log is not None:
            served_log.touch()  # fail at start, not on the first read, if it is not writable
        self._clock = clock
        self._t0 = clock()
        self._t_model = 0.0
        self._manual: dict[str, Fault] = {}
        self._held: set[asyncio.Task[object]] = set()
        self._link_listeners: list[Callable[[], None]] = []
        self._garble_rng = np.random.default_rng([seed, unit, 0x6A7BA6E])
        self.simdevice = SimDevice(id=unit, simdata=self._tables(), action=self._action)
        self._apply_process_faults()

    def _tables(self) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        truth = self.model.truth()
        inputs = [
            SimData(
                r.address,
                values=to_words(r, truth[r.name]),
                datatype=DataType.REGISTERS,
                readonly=True,
            )
            for r in INPUT_REGISTERS
        ]
        reserved = SimData(
            RESERVED_INPUTS.start,
            count=len(RESERVED_INPUTS),
            datatype=DataType.REGISTERS,
            readonly=True,
        )
        inputs.append(reserved)
        holding = [
            SimData(r.address, values=words, datatype=DataType.REGISTERS)
            for r, words in zip(HOLDING_REGISTERS, self._holding_words(), strict=True)
        ]
        coils = [SimData(0, values=[self.model.run], datatype=DataType.BITS)]
        discrete = [SimData(0, values=self._discrete_bits(truth), datatype=DataType.BITS)]
        return coils, discrete, holding, inputs

    def _holding_words(self) -> list[list[int]]:
        values = {
            "speed_setpoint": self.model.speed_setpoint,
            "run": float(self.model.run),
            "flow_alarm_limit": self.model.flow_alarm_limit,
        }
        return [to_words(r, values[r.name]) for r in HOLDING_REGISTERS]

    @staticmethod
    def _discrete_bits(values: dict[str, float]) -> list[bool]:
        status = int(values["status"])
        return [bool(status & physics.STATUS_RUNNING), bool(status & physics.STATUS_FAULT)]

    # ---------------------------------------------------------------- time and faults

    def elapsed(self) -> float:
        """Seconds since the device was created, on its clock."""
        return self._clock() - self._t0

    def active_faults(self) -> list[Fault]:
        """Scheduled and injected faults active now (injected ones win per slot)."""
        return self._active_at(self.elapsed())

    def _active_at(self, t: float) -> list[Fault]:
        slots = {f.slot: f for f in self.schedule.active(t)}
        slots.update(self._manual)
        return list(slots.values())

    def _apply_process_faults(self) -> None:
        active = self._active_at(self._t_model)
        self.model.set_faults(f.key for f in active if f.kind == "process")

    def advance(self) -> None:
        """Step the physics up to now, switching scheduled faults at their exact times."""
        now = self.elapsed()
        for edge in [*self.schedule.transitions(self._t_model, now), now]:
            if edge <= self._t_model:
                continue
            self._apply_process_faults()
            self.model.step(edge - self._t_model)
            self._t_model = edge
        self._apply_process_faults()

    def inject(self, fault: str | Fault) -> None:
        """Activate a fault now until cleared, e.g. ``inject("late:2.5")``."""
        parsed = parse_fault(fault) if isinstance(fault, str) else fault
        if parsed.kind == "process":
            physics.check_fault(parsed.key)
        self.advance()
        self._manual[parsed.slot] = parsed
        self._apply_process_faults()
        self._notify_link()

    def clear(self, fault: str | None = None) -> None:
        """Clear an injected fault by name or ``NAME:ARG`` (all injected faults if None)."""
        self.advance()
        if fault is None:
            self._manual.clear()
        else:
            for slot, f in list(self._manual.items()):
                if fault in {f.name, f.key, slot}:
                    del self._manual[slot]
        self._apply_process_faults()
        self._notify_link()

    def link_down(self) -> bool:
        """Whether a ``disconnect`` fault is active now."""
        return any(f.name == "disconnect" for f in self.active_faults())

    def silent(self) -> bool:
        """Whether a ``no_answer`` or ``disconnect`` fault is active now."""
        return any(f.name in {"no_answer", "disconnect"} for f in self.active_faults())

    def add_link_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever an injected fault changes (the server re-checks the link)."""
        self._link_listeners.append(callback)

    def remove_link_listener(self, callback: Callable[[], None]) -> None:
        """Undo :meth:`add_link_listener`."""
        if callback in self._link_listeners:
            self._link_listeners.remove(callback)

    def _notify_link(self) -> None:
        for callback in list(self._link_listeners):
            callback()

    def garble(self, packet: bytes) -> bytes:
        """Corrupt a response frame: keep the MBAP header, scramble the PDU, void the FC."""
        if len(packet) <= 7:
            return packet
        noise = self._garble_rng.bytes(len(packet) - 7)
        return packet[:7] + b"\x00" + noise[1:]  # function code 0 does not exist

    def garble_rtu(self, packet: bytes) -> bytes:
        """Corrupt an RTU answer: keep address, function and length; scramble data; bad CRC."""
        if len(packet) < 4:
            return packet
        body = bytearray(packet[:-2])
        keep = min(3, len(body))
        body[keep:] = self._garble_rng.bytes(len(body) - keep)
        crc = FramerRTU.compute_CRC(bytes(body)) ^ 0x5A5A  # never the right one
        return bytes(body) + crc.to_bytes(2, "big")

    # ---------------------------------------------------------------- request handling

    async def _hold(self, waiter: Awaitable[object]) -> None:
        """Await ``waiter`` in a way close_pending() can cancel."""
        task = asyncio.current_task()
        if task is not None:
            self._held.add(task)
        try:
            await waiter
        finally:
            if task is not None:
                self._held.discard(task)

    @property
    def pending_requests(self) -> int:
        """Requests currently held back by no_answer, late or disconnect."""
        return len(self._held)

    async def close_pending(self) -> None:
        """Cancel requests parked by no_answer / late / disconnect and wait for them."""
        tasks = list(self._held)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _comm_gate(self, exchange: _Exchange | None) -> ExcCodes | None:
        faults = {f.name: f for f in self.active_faults()}
        if "no_answer" in faults or "disconnect" in faults:
            await self._hold(asyncio.get_running_loop().create_future())
        if "late" in faults:
            await self._hold(asyncio.sleep(faults["late"].seconds))
        if "exception" in faults:
            return faults["exception"].code
        if exchange is not None:
            exchange.corrupt = "garbage" in faults
        return None

    async def _action(  # noqa: PLR0917 - pymodbus' SimAction calls it positionally
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        table = _TABLE_BY_FC[function_code]
        exchange = _EXCHANGE.get()
        if exchange is not None:
            exchange.device = self
        # FC5/6/23 call again to read back after writing: that is still the same request.
        if (set_values is not None or function_code in _READ_FCS) and (
            rc := await self._comm_gate(exchange)
        ):
            return rc
        self.advance()
        if set_values is not None:
            refused = self._write(table, address, set_values)
            if refused is None:
                self.writes.append((function_code, address, [int(v) for v in set_values]))
            return refused
        n = count
        if table in _BITS_SIZE:
            n = exchange.request.count if exchange is not None else 1
            if address + n > _BITS_SIZE[table]:
                return ExcCodes.ILLEGAL_ADDRESS
        self._refresh(table, start_address, current_registers)
        is_read = function_code in _READ_FCS or function_code == 23
        if is_read and not (exchange is not None and exchange.corrupt):
            self._record(table, start_address, address, n, current_registers)
        return None

    def _stuck(self) -> bool:
        return any(f.name == "stuck" for f in self.active_faults())

    def _refresh(self, table: Table, start: int, regs: list[int]) -> None:
        if table == "holding":
            for reg, words in zip(HOLDING_REGISTERS, self._holding_words(), strict=True):
                i = reg.address - start
                regs[i : i + reg.count] = words
        elif table == "coil":
            regs[0] = _bits_word([self.model.run])
        elif self._stuck():
            return
        elif table == "input":
            values = self.model.measure()
            for reg in INPUT_REGISTERS:
                i = reg.address - start
                regs[i : i + reg.count] = to_words(reg, values[reg.name])
        else:
            regs[0] = _bits_word(self._discrete_bits(self.model.truth()))

    def _write(self, table: Table, address: int, values: list[int] | list[bool]) -> ExcCodes | None:
        if table == "coil":
            if address != 0 or len(values) != 1:
                return ExcCodes.ILLEGAL_ADDRESS
            self.model.run = bool(values[0])
            return None
        # Start from the model, not the block: a coil write may have changed "run" since.
        words = [w for reg_words in self._holding_words() for w in reg_words]
        offset = address - HOLDING_START
        words[offset : offset + len(values)] = [int(v) for v in values]
        setpoint, run = words[0], words[1]
        limit = decode(words[2:4], "float32", "ABCD")
        if setpoint > physics.MAX_SPEED or run not in {0, 1}:
            return ExcCodes.ILLEGAL_VALUE
        if not (math.isfinite(limit) and limit >= 0.0):
            return ExcCodes.ILLEGAL_VALUE
        self.model.speed_setpoint = float(setpoint)
        self.model.run = bool(run)
        self.model.flow_alarm_limit = limit
        return None

    def _record(self, table: Table, start: int, address: int, n: int, regs: list[int]) -> None:
        served: list[int] | list[bool]
        if table in _BITS_SIZE:
            served = SimUtils.registersToBits(regs[address // 16 - start :][:1])
            served = served[address % 16 : address % 16 + n]
        else:
            served = list(regs[address - start : address - start + n])
        record = ServedRecord(
            t=time.time(), unit=self.unit, table=table, address=address, count=n, registers=served
        )
        self.served.append(record)
        if self.served_log is not None:
            with self.served_log.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")


class NullModem:
    """Two pseudo-terminals wired back to back, like a null-modem cable between two ports.

    Each end is a tty path a serial library can open (pymodbus' serial server needs one);
    whatever is written to one end is read at the other. The stub keeps each slave open
    in raw mode, so the line stays up (and echo-free) while nobody has the port open.
    Bytes sent while the other side is not reading are dropped, as on a real line.
    """

    def __init__(self) -> None:
        """Create both ends; nothing moves before :meth:`start`."""
        self._ends: list[tuple[int, int, str]] = []
        for _ in range(2):
            master, slave = os.openpty()
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._ends.append((master, slave, os.ttyname(slave)))
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def paths(self) -> tuple[str, str]:
        """The tty paths of the two ends."""
        return self._ends[0][2], self._ends[1][2]

    def start(self) -> None:
        """Start passing bytes both ways (on the running loop)."""
        self._loop = asyncio.get_running_loop()
        (a, _, _), (b, _, _) = self._ends
        self._loop.add_reader(a, self._pass, a, b)
        self._loop.add_reader(b, self._pass, b, a)

    @staticmethod
    def _pass(src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: no slave open on that side
            return
        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
            os.write(dst, data)

    def close(self) -> None:
        """Stop and release both pseudo-terminals."""
        if self._loop is not None:
            for master, _, _ in self._ends:
                self._loop.remove_reader(master)
            self._loop = None
        for master, slave, _ in self._ends:
            for fd in (master, slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._ends = []


def _catch_all() -> SimDevice:
    """Unit 0 of the simulator answers for every unknown unit; the hooks then drop it."""

    def bits() -> list[SimData]:
        return [SimData(0, values=[False], datatype=DataType.BITS)]

    def regs() -> list[SimData]:
        return [SimData(0, values=[0], datatype=DataType.REGISTERS)]

    return SimDevice(id=0, simdata=(bits(), bits(), regs(), regs()))


class _Serving:
    """What every pump server shares: physics ticks, fault hooks, unknown units.

    A request for a unit that is not served gets no answer on RTU framing (the line stays
    silent, as on RS-485) and exception 0x0B (gateway target did not respond) on Modbus TCP.
    """

    rtu = False

    def __init__(self, devices: PumpDevice | Iterable[PumpDevice], *, tick: float) -> None:
        self.devices = [devices] if isinstance(devices, PumpDevice) else list(devices)
        if not self.devices:
            raise ValueError(f"{type(self).__name__} needs at least one PumpDevice")
        self._units = {d.unit: d for d in self.devices}
        self._tick = tick
        self._watcher: asyncio.Task[None] | None = None
        self._link_down = False

    def _context(self) -> list[SimDevice]:
        return [*(d.simdevice for d in self.devices), _catch_all()]

    def _hooks(self) -> dict[str, Callable[..., object]]:
        return {
            "trace_packet": self._trace_packet,
            "trace_pdu": self._trace_pdu,
            "trace_connect": self._trace_connect,
        }

    def _started(self, name: str) -> None:
        for device in self.devices:
            device.add_link_listener(self._sync_link)
        self._watcher = asyncio.create_task(self._watch(), name=name)

    async def _stopping(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        for device in self.devices:
            device.remove_link_listener(self._sync_link)

    async def _release(self) -> None:
        for device in self.devices:
            await device.close_pending()
        await asyncio.sleep(0)  # let the closed transports run connection_lost

    def drop_connections(self) -> None:
        """Close every open client connection now (nothing to close on a serial line)."""

    async def _watch(self) -> None:
        """Advance the physics and apply scheduled disconnects while serving."""
        while True:
            for device in self.devices:
                device.advance()
            self._sync_link()
            await asyncio.sleep(self._tick)

    def _sync_link(self) -> None:
        down = any(d.link_down() for d in self.devices)
        if down and not self._link_down:
            log.info("link down: dropping client connections")
            self.drop_connections()
        self._link_down = down

    # pymodbus hooks; they run inside the transport callbacks or the request task.

    def _trace_connect(self, connected: bool) -> None:
        if connected and any(d.link_down() for d in self.devices):
            self.drop_connections()

    def _trace_packet(self, sending: bool, packet: bytes) -> bytes:
        if not sending:
            _EXCHANGE.set(None)  # a new frame: forget the previous request
            return packet
        exchange = _EXCHANGE.get()
        if exchange is None:
            return packet
        if exchange.unknown and self.rtu:
            return b""  # nobody on the line has that address
        if exchange.corrupt and exchange.device is not None:
            device = exchange.device
            return device.garble_rtu(packet) if self.rtu else device.garble(packet)
        addressed = self._units.get(exchange.request.dev_id)
        if exchange.device is None and addressed is not None and addressed.silent():
            return b""  # an unmapped address never reached the fault gate: stay silent
        return packet

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        exchange = _EXCHANGE.get()
        if not sending:
            _EXCHANGE.set(_Exchange(pdu, unknown=pdu.dev_id not in self._units))
            return pdu
        if exchange is None:
            return pdu
        request = exchange.request
        if exchange.unknown and not self.rtu:
            pdu = ExceptionResponse(
                request.function_code, ExcCodes.GATEWAY_NO_RESPONSE, device_id=request.dev_id
            )
        pdu.transaction_id = request.transaction_id
        pdu.dev_id = request.dev_id
        if isinstance(pdu, ExceptionResponse):
            log.debug("unit %d answers exception %d", pdu.dev_id, pdu.exception_code)
        return pdu


class PumpServer(_Serving):
    """A Modbus TCP server for one or more PumpDevice units.

    With ``framer="rtu"`` it speaks RTU frames (unit id and CRC, no MBAP header) over TCP,
    as a serial-to-Ethernet gateway in transparent mode does. With ``port=0`` the OS picks
    a free port; :attr:`port` then reads the bound port back from the listening socket
    (pymodbus keeps the ``asyncio.Server`` as the listener's transport).
    """

    def __init__(
        self,
        devices: PumpDevice | Iterable[PumpDevice],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tick: float = 0.1,
        framer: Literal["socket", "rtu"] = "socket",
    ) -> None:
        """Configure; nothing listens before :meth:`start`."""
        super().__init__(devices, tick=tick)
        self.rtu = framer == "rtu"
        self._address = (host, port)
        self._bound: tuple[str, int] | None = None
        self._server: ModbusTcpServer | None = None

    @property
    def host(self) -> str:
        """Host the server is bound to."""
        return self._require_bound()[0]

    @property
    def port(self) -> int:
        """Actual TCP port (the real one when started with port 0)."""
        return self._require_bound()[1]

    def _require_bound(self) -> tuple[str, int]:
        if self._bound is None:
            raise RuntimeError("PumpServer is not started")
        return self._bound

    async def start(self) -> None:
        """Bind and start serving; raises OSError if the address cannot be bound."""
        if self._server is not None:
            raise RuntimeError("PumpServer already started")
        server = ModbusTcpServer(
            context=self._context(),
            framer=FramerType.RTU if self.rtu else FramerType.SOCKET,
            address=self._address,
            **self._hooks(),  # type: ignore[arg-type]
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self._address[0]}:{self._address[1]}") from exc
        listener = cast(asyncio.Server, server.transport)
        sockname = listener.sockets[0].getsockname()
        self._bound = (str(sockname[0]), int(sockname[1]))
        self._server = server
        self._started(f"pump-server:{self.port}")

    async def stop(self) -> None:
        """Close all connections and the listener, cancel parked requests."""
        await self._stopping()
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
        await self._release()

    async def __aenter__(self) -> PumpServer:
        """Start on entry."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop on exit."""
        await self.stop()

    def drop_connections(self) -> None:
        """Close every open client connection now."""
        if self._server is None:
            return
        for handler in list(self._server.active_connections.values()):
            handler.close()


class PumpSerialServer(_Serving):
    """PumpDevice units on one Modbus RTU line: a pymodbus serial server on a pseudo-terminal.

    The server holds one end of a :class:`NullModem`; :attr:`path` is the other end, the tty
    a client opens as its serial port. A ``disconnect`` fault silences the line.
    """

    rtu = True

    def __init__(
        self,
        devices: PumpDevice | Iterable[PumpDevice],
        *,
        baudrate: int = 19200,
        tick: float = 0.1,
    ) -> None:
        """Configure; no pseudo-terminal exists before :meth:`start`."""
        super().__init__(devices, tick=tick)
        self.baudrate = baudrate
        self._modem: NullModem | None = None
        self._server: ModbusSerialServer | None = None

    @property
    def path(self) -> str:
        """The tty path a client opens."""
        if self._modem is None:
            raise RuntimeError("PumpSerialServer is not started")
        return self._modem.paths[0]

    async def start(self) -> None:
        """Create the line and start serving; raises OSError if the tty cannot be opened."""
        if self._server is not None:
            raise RuntimeError("PumpSerialServer already started")
        modem = NullModem()
        modem.start()
        server = ModbusSerialServer(
            context=self._context(),
            framer=FramerType.RTU,
            port=modem.paths[1],
            baudrate=self.baudrate,
            ignore_missing_devices=True,
            **self._hooks(),  # type: ignore[arg-type]
        )
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            modem.close()
            raise OSError(f"cannot open {modem.paths[1]}") from exc
        self._modem, self._server = modem, server
        self._started(f"pump-serial:{self.path}")

    async def stop(self) -> None:
        """Close the port and the line, cancel parked requests."""
        await self._stopping()
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
        await self._release()
        modem, self._modem = self._modem, None
        if modem is not None:
            modem.close()

    async def __aenter__(self) -> PumpSerialServer:
        """Start on entry."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop on exit."""
        await self.stop()
