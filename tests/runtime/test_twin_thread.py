"""The twin steps off the event loop, on one thread of its own, whatever the number of points."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgetwin.config import load_config_text
from edgetwin.core.types import DeviceReading
from edgetwin.runtime.gateway import Gateway, _End

CONFIG = """
[gateway]
id = "gw"
state_dir = "{state}"

[twin]
commissioning = 5

[[buses]]
name = "plant"
kind = "modbus_tcp"
host = "127.0.0.1"

[[devices]]
name = "pump"
bus = "plant"
points = [
  {{ name = "flow", table = "input", address = 0, type = "float32", model = "level" }},
  {{ name = "pressure", table = "input", address = 2, type = "float32", model = "trend" }},
]
"""


async def test_a_small_twin_steps_and_encodes_on_its_own_thread(tmp_path: Path) -> None:
    cfg = load_config_text(CONFIG.format(state=tmp_path), filename="t.toml")
    gw = Gateway(cfg, session="s1")
    threads: dict[str, set[int]] = {"step": set(), "frames": set()}
    step, frames = gw.twin.step, gw._frames

    def spy_step(reading: DeviceReading) -> Any:
        threads["step"].add(threading.get_ident())
        return step(reading)

    def spy_frames() -> Any:
        threads["frames"].add(threading.get_ident())
        return frames()

    gw.twin.step = spy_step  # type: ignore[method-assign]
    gw._frames = spy_frames  # type: ignore[method-assign]
    await gw.outbox.open()
    try:
        for k in range(20):
            gw._enqueue(
                DeviceReading("pump", 1e9 + k, np.array([1.0, 2.0 + k]), np.zeros(2, np.uint16))
            )
            await asyncio.sleep(0)
        gw._enqueue(_End())
        await asyncio.wait_for(gw._twin_task(), 30)
        await gw.outbox.flush()
        frames_out = gw.stats.frames
    finally:
        gw._twin_thread.shutdown(wait=True)
        await gw.outbox.close()
    loop_thread = threading.get_ident()
    assert threads["step"]
    assert threads["frames"]
    assert frames_out >= 1
    used = threads["step"] | threads["frames"]
    assert loop_thread not in used
    assert len(used) == 1, "one thread steps and encodes: the twin state has a single writer"
