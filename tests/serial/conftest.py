"""Serial tests: a leak check (tasks, threads, file descriptors) around every test."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator

import pytest


def _fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def _ptys(fds: set[int]) -> dict[int, str]:
    targets = {}
    for fd in fds:
        try:
            targets[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile, or /proc's own listing fd
            continue
    return {fd: t for fd, t in targets.items() if "pts" in t or "ptmx" in t}


@pytest.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    """Fail a test that leaves tasks, threads or open file descriptors (ptys) behind."""
    threads = set(threading.enumerate())
    fds = _fds()
    yield
    me = asyncio.current_task()
    left: list[asyncio.Task[object]] = []
    for _ in range(200):  # cancelled tasks need a few loop turns to finish
        left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not left:
            break
        await asyncio.sleep(0.01)
    assert not left, f"tasks left behind: {left}"
    # pyserial-asyncio opens and closes ports on the default executor: end its threads.
    await asyncio.get_running_loop().shutdown_default_executor()
    extra = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
    assert not extra, f"threads left behind: {extra}"
    ptys = _ptys(_fds() - fds)
    assert not ptys, f"ptys left open: {ptys}"
