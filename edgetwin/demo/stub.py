"""Runs the simulated pump from firmware_stubs as a child process (a separate "device")."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from types import TracebackType

from edgetwin.errors import FatalError


class PumpProcess:
    """``async with PumpProcess(faults) as (host, port):`` a PD-100 pump on Modbus TCP."""

    def __init__(self, faults: list[str], log_path: Path, *, seed: int = 1) -> None:
        self.faults = faults
        self.log_path = log_path
        self.seed = seed
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> tuple[str, int]:
        args = [
            "-m",
            "firmware_stubs",
            "pump",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--seed",
            str(self.seed),
        ]
        for fault in self.faults:
            args += ["--fault", fault]
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, *args, stdout=asyncio.subprocess.PIPE, stderr=log
            )
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        except TimeoutError:
            line = b""
        text = line.decode(errors="replace").strip()
        if not text.startswith("listening modbus-tcp "):
            await self._stop()
            err = self.log_path.read_text(errors="replace")[-800:]
            raise FatalError(f"the simulated pump did not start: {text or err}")
        host, _, port = text.removeprefix("listening modbus-tcp ").rpartition(":")
        return host, int(port)

    async def _stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()
