"""Runs the gateway until told to stop, and swaps in a new configuration on SIGHUP.

A reload validates the file first: a bad file keeps the running gateway untouched and logs
every problem. A good one stops the running gateway in order (its outbox is delivered or
kept) and starts a new session with the new configuration.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from edgetwin.config import Config, load_config
from edgetwin.errors import ConfigError
from edgetwin.runtime import systemd
from edgetwin.runtime.gateway import Gateway

log = logging.getLogger(__name__)


async def supervise(path: Path, cfg: Config, stop: asyncio.Event, reload: asyncio.Event) -> None:
    """Run gateways from ``cfg`` until ``stop``; ``reload`` re-reads ``path``."""
    while True:
        ends = asyncio.Event()
        gateway = Gateway(cfg)
        task = asyncio.create_task(gateway.run(ends), name="gateway")
        while True:
            waiters = {
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(reload.wait()),
            }
            try:
                await asyncio.wait({task, *waiters}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)
            if task.done() or stop.is_set():
                ends.set()
                await task
                return
            reload.clear()
            new = _reread(path)
            if new is not None:
                break
        systemd.notify("RELOADING=1")
        log.info("reloading %s: stopping session %s", path, gateway.session)
        ends.set()
        await task
        cfg = new


def _reread(path: Path) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as err:
        problems = err.problems
    # The problems are the message; a traceback would only bury them.
    for problem in problems:
        log.error("reload refused: %s", problem)
    log.error("reload refused: keeping the running configuration")
    return None
