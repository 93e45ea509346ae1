"""The serial stubs: CLI contract, the sent log against the bytes on the wire, fault specs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from edgetwin.protocols.serial.binary import BinaryParser
from edgetwin.protocols.serial.line import KeyValueFormat, LineParser
from edgetwin.protocols.serial.nmea import NmeaParser
from firmware_stubs.__main__ import main as cli_main
from firmware_stubs.faults import Fault, ScheduledFault
from firmware_stubs.serial import SerialStub
from firmware_stubs.serial.faults import parse_serial_spec
from firmware_stubs.serial.sensors import FLOW_LAYOUT

ROOT = Path(__file__).resolve().parents[2]


async def read_slave(path: str, until: int, within: float = 3.0) -> bytes:
    """Read the slave end of a stub's pty (raw) until ``until`` bytes came or time is up."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        termios.tcflush(fd, termios.TCIFLUSH)
        data = bytearray()
        deadline = asyncio.get_running_loop().time() + within
        while len(data) < until and asyncio.get_running_loop().time() < deadline:
            try:
                data += os.read(fd, 4096)
            except BlockingIOError:
                await asyncio.sleep(0.01)
        return bytes(data)
    finally:
        os.close(fd)


def test_cli_prints_the_listening_line_keeps_the_link_and_stops_on_sigterm(tmp_path: Path) -> None:
    link = tmp_path / "ttyNMEA"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firmware_stubs",
            "serial",
            "--protocol",
            "nmea",
            "--period",
            "0.05",
            "--link",
            str(link),
            "--sent-log",
            str(tmp_path / "sent.jsonl"),
        ],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("listening serial /dev/pts/")
        path = line.split()[2]
        assert os.readlink(link) == path
        frames = asyncio.run(_nmea_frames(str(link)))
        assert {f.tag for f in frames} >= {"GPGGA", "GPRMC", "GPVTG", "WIMWV", "WIXDR"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stdout.read() == b""  # exactly one line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert not link.exists()
    assert not link.is_symlink()
    assert not os.path.exists(path)
    assert (tmp_path / "sent.jsonl").read_text().count('"kind": "frame"') >= 1


async def _nmea_frames(path: str) -> list:
    p = NmeaParser()
    return p.feed(await read_slave(path, 2000))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--protocol", "line", "--fault", "bad_checksum@1"], "no checksum"),
        (["--protocol", "nmea", "--fault", "smoke@1"], "unknown serial fault 'smoke'"),
        (["--protocol", "binary", "--fault", "garbage:x@1"], "byte count"),
        (["--protocol", "binary", "--poll-hex", "0G"], "not hex"),
        (["--protocol", "serial"], "invalid choice"),
    ],
)
def test_cli_rejects_bad_arguments_with_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["serial", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_fault_specs() -> None:
    assert parse_serial_spec("garbage:40@2+3") == ScheduledFault(Fault("garbage", "40"), 2.0, 3.0)
    assert parse_serial_spec("unplug@1e+01") == ScheduledFault(Fault("unplug"), 10.0, None)
    with pytest.raises(ValueError, match="missing '@START'"):
        parse_serial_spec("silence")
    with pytest.raises(ValueError, match="takes no argument"):
        parse_serial_spec("partial:3@0")


@pytest.mark.parametrize("protocol", ["line", "nmea", "binary"])
async def test_the_bytes_on_the_wire_are_what_the_log_says(protocol: str) -> None:
    faults = ["garbage", "partial", "bad_value", "overlong"]
    if protocol != "line":
        faults.append("bad_checksum")
    async with SerialStub(protocol, period=0.02, seed=3) as stub:  # type: ignore[arg-type]
        for fault in faults:
            stub.inject(fault)
        before = stub.emissions  # read_slave flushes the input before it first yields
        data = await read_slave(stub.path, 6000)
        records = [r for r in stub.sent if r.seq > before]
    wire = b"".join(r.data for r in records)
    assert len(data) > 1000
    assert data == wire[: len(data)]
    assert {r.kind for r in records} == {"frame", *faults}


@pytest.mark.parametrize("seed", [0, 1])
async def test_logged_values_are_what_a_parser_reads_from_the_frames(seed: int) -> None:
    for protocol, parser in [
        ("line", LineParser(KeyValueFormat(("T", "H", "P")), terminator=b"\r\n")),
        ("nmea", NmeaParser()),
        ("binary", BinaryParser(FLOW_LAYOUT)),
    ]:
        stub = SerialStub(protocol, seed=seed)  # type: ignore[arg-type]
        for _ in range(20):
            stub.model.step(0.5)
            emission = stub.model.frame()
            decoded: dict[str, float] = {}
            for frame in parser.feed(emission.data):
                decoded.update(frame.values)
            assert decoded == emission.values, protocol


async def test_a_polled_stub_answers_only_its_request() -> None:
    async with SerialStub("binary", poll=b"\x01\x03") as stub:
        fd = os.open(stub.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            os.write(fd, b"\x01\x04\x00\x01")  # not the request (but ends like its start)
            await asyncio.sleep(0.1)
            assert stub.requests == 0
            os.write(fd, b"\x03")
            for _ in range(100):
                if stub.requests:
                    break
                await asyncio.sleep(0.01)
            assert stub.requests == 1
            await asyncio.sleep(0.05)
            (frame,) = BinaryParser(FLOW_LAYOUT).feed(os.read(fd, 4096))
            assert dict(frame.values) == stub.frames()[-1].values
        finally:
            os.close(fd)


async def test_unplug_removes_the_port_and_replugging_points_the_link_at_a_new_one(
    tmp_path: Path,
) -> None:
    link = tmp_path / "tty"
    async with SerialStub("line", link=link) as stub:
        first = stub.path
        assert os.readlink(link) == first
        stub.inject("unplug")
        assert not Path(first).exists()  # noqa: ASYNC240 - a stat of /dev/pts, instant
        stub.clear("unplug")
        assert Path(stub.path).exists()  # noqa: ASYNC240
        assert os.readlink(link) == stub.path
