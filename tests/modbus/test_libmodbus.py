"""Interop: edgetwin against libmodbus, the C stack inside many devices and serial gateways.

A small libmodbus server, built here with gcc, lays out the map of pointmap.py in C (its own
byte shuffling, not edgetwin's codec) and serves it over Modbus TCP and over RTU on a
pseudo-terminal. Needs gcc and the Debian package libmodbus-dev (skipped without them).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgetwin.config.modbus import ModbusDeviceConfig
from edgetwin.core.types import Quality
from edgetwin.drivers.modbus import ModbusDevice
from edgetwin.scan.modbus import scan_units
from edgetwin.transports.modbus_tcp import ModbusLink, ModbusTcpLink
from firmware_stubs.modbus.pump import NullModem
from tests.modbus.lines import rtu_link
from tests.modbus.pointmap import build_map

SERVER_C = r"""
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <modbus/modbus.h>

enum { ABCD, CDAB, BADC, DCBA };

/* Put the n-byte big-endian value `be` at regs[at..] in the given order; return next free. */
static int put(uint16_t *regs, int at, const uint8_t *be, int n, int order) {
    int words = n / 2;
    for (int w = 0; w < words; w++) {
        int src = (order == CDAB || order == DCBA) ? words - 1 - w : w;
        uint8_t hi = be[2 * src], lo = be[2 * src + 1];
        if (order == BADC || order == DCBA) { uint8_t t = hi; hi = lo; lo = t; }
        regs[at + w] = (uint16_t)(hi << 8 | lo);
    }
    return at + words;
}

static void big_endian(uint64_t bits, int n, uint8_t *be) {
    for (int i = 0; i < n; i++) be[i] = (uint8_t)(bits >> (8 * (n - 1 - i)));
}

static int put_text(uint16_t *regs, int at, const char *text, int words, int swap) {
    char buf[64] = {0};
    strncpy(buf, text, sizeof buf - 1);
    for (int w = 0; w < words; w++) {
        uint8_t hi = (uint8_t)buf[2 * w], lo = (uint8_t)buf[2 * w + 1];
        regs[at + w] = swap ? (uint16_t)(lo << 8 | hi) : (uint16_t)(hi << 8 | lo);
    }
    return at + words;
}

static void fill(modbus_mapping_t *mb) {
    uint16_t *h = mb->tab_registers;
    int at = 0;
    uint8_t be[8];
    int16_t i16 = -12345; uint16_t u16 = 54321;
    int32_t i32 = -123456789; uint32_t u32 = 3000000000u;
    int64_t i64 = -(1LL << 53) + 7; uint64_t u64 = (1ULL << 63) + (1ULL << 11);
    float f32 = (float)M_PI; double f64 = -M_E;
    uint32_t f32bits; uint64_t f64bits;
    memcpy(&f32bits, &f32, 4); memcpy(&f64bits, &f64, 8);
    struct { uint64_t bits; int n; } v[] = {
        {(uint16_t)i16, 2}, {u16, 2}, {(uint32_t)i32, 4}, {u32, 4},
        {(uint64_t)i64, 8}, {u64, 8}, {f32bits, 4}, {f64bits, 8},
    };
    for (int t = 0; t < 8; t++) {
        for (int order = ABCD; order <= DCBA; order++) {
            big_endian(v[t].bits, v[t].n, be);
            at = put(h, at, be, v[t].n, order);
        }
        h[at++] = 0xDEAD;
    }
    h[at++] = 0xA5C3;
    h[at++] = 1234;
    at = put_text(h, at, "EDGETWIN-42", 6, 0);
    at = put_text(h, at, "PD-100", 4, 1);
    const int coils[10] = {1, 0, 1, 1, 0, 0, 1, 0, 0, 1};
    for (int i = 0; i < 10; i++) mb->tab_bits[i] = mb->tab_input_bits[i] = (uint8_t)coils[i];
    big_endian(f32bits, 4, be);
    put(mb->tab_input_registers, 3, be, 4, CDAB);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    modbus_mapping_t *mb = modbus_mapping_new(16, 16, 200, 16);
    fill(mb);
    uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
    if (strcmp(argv[1], "tcp") == 0) {
        modbus_t *ctx = modbus_new_tcp("127.0.0.1", 0);
        int server = modbus_tcp_listen(ctx, 1);
        struct sockaddr_in addr; socklen_t len = sizeof addr;
        if (server < 0 || getsockname(server, (struct sockaddr *)&addr, &len) < 0) return 1;
        printf("listening %d\n", ntohs(addr.sin_port));
        fflush(stdout);
        for (;;) {
            int s = server;
            if (modbus_tcp_accept(ctx, &s) < 0) return 1;
            for (;;) {
                int rc = modbus_receive(ctx, query);
                if (rc > 0) modbus_reply(ctx, query, rc, mb);
                else if (rc < 0) break; /* the client went away: accept the next one */
            }
            close(modbus_get_socket(ctx));
        }
    }
    modbus_t *ctx = modbus_new_rtu(argv[2], 19200, 'N', 8, 1);
    modbus_set_slave(ctx, atoi(argv[3]));
    if (modbus_connect(ctx) < 0) { perror("connect"); return 1; }
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        int rc = modbus_receive(ctx, query);
        if (rc > 0) modbus_reply(ctx, query, rc, mb);
        else if (rc < 0 && errno != EMBBADCRC && errno != ETIMEDOUT && errno != EMBBADDATA) {
            perror("receive");
            return 1;
        }
    }
}
"""

MISSING = "libmodbus is not installed (Debian: apt-get install libmodbus-dev)"


def _gcc(args: list[str]) -> subprocess.CompletedProcess[str]:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    return subprocess.run([gcc, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def server_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("libmodbus")
    probe = work / "probe.c"
    probe.write_text(
        "#include <modbus/modbus.h>\nint main(void){return modbus_new_tcp(0, 0) != 0;}\n"
    )
    if _gcc([str(probe), "-o", str(work / "probe"), "-lmodbus"]).returncode != 0:
        pytest.skip(MISSING)
    source = work / "server.c"
    source.write_text(SERVER_C)
    built = _gcc(
        ["-O1", "-Wall", "-Werror", str(source), "-o", str(work / "server"), "-lmodbus", "-lm"]
    )
    assert built.returncode == 0, built.stderr
    return work / "server"


async def start(binary: Path, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        str(binary), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    async with asyncio.timeout(10):
        line = (await proc.stdout.readline()).decode().strip()
    assert line.startswith("listening"), (line, await proc.stderr.read() if proc.stderr else b"")
    return proc, line


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    await proc.communicate()


@pytest.fixture
async def tcp_peer(server_binary: Path) -> AsyncIterator[ModbusLink]:
    proc, line = await start(server_binary, "tcp")
    link = ModbusTcpLink("127.0.0.1", int(line.split()[1]), timeout=1.0)
    try:
        yield link
    finally:
        link.close()
        await stop(proc)


@pytest.fixture
async def rtu_peer(server_binary: Path) -> AsyncIterator[ModbusLink]:
    modem = NullModem()
    modem.start()
    proc, _ = await start(server_binary, "rtu", modem.paths[1], "17")
    link = rtu_link(modem.paths[0], timeout=1.0)
    try:
        yield link
    finally:
        link.close()
        await stop(proc)
        modem.close()


async def read_every_type(link: ModbusLink, unit: int) -> None:
    _, points, expect, texts = build_map()
    points += [
        p.model_copy(update={"name": f"di{p.address}", "table": "discrete"})
        for p in points
        if p.table == "coil"
    ]
    expect |= {f"di{p.address}": expect[p.name] for p in points if p.table == "coil"}
    cfg = ModbusDeviceConfig(
        name="c", bus="b", unit=unit, points=points, max_gap=2, max_registers=64
    )
    dev = ModbusDevice(cfg, link)
    for cycle in (1, 2):
        result = await dev.poll()
        assert link.transactions == cycle * len(dev.plan)
        assert (result.quality == Quality.GOOD).all(), result.errors
        got = {p.name: result.values[i] for i, p in enumerate(points)}
        for name, value in expect.items():
            assert got[name] == pytest.approx(value, rel=1e-15), name
        assert {points[i].name: t for i, t in dev.texts.items()} == texts


async def test_tcp_reads_of_every_type_from_libmodbus(tcp_peer: ModbusLink) -> None:
    await read_every_type(tcp_peer, unit=1)


async def test_rtu_reads_of_every_type_from_libmodbus(rtu_peer: ModbusLink) -> None:
    await read_every_type(rtu_peer, unit=17)
    # libmodbus goes deaf for about 0.5 s after a frame for another unit: pause between probes
    found = await scan_units(rtu_peer, [16, 17], answer_within=0.2, pause=0.6)
    assert found == [17]
    assert rtu_peer.corrupt_frames == 0


async def test_writes_reach_libmodbus_registers(tcp_peer: ModbusLink) -> None:
    await tcp_peer.write_registers(150, [0x1234], 1, single=True)
    await tcp_peer.write_registers(151, [1, 2, 3], 1)
    await tcp_peer.write_coils(12, [True], 1, single=True)
    assert await tcp_peer.read("holding", 150, 4, 1) == [0x1234, 1, 2, 3]
    assert await tcp_peer.read("coil", 12, 1, 1) == [1]
