"""Fail a test that leaves asyncio tasks or threads behind (for areas that opt in)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest


@pytest.fixture(autouse=True)
async def no_leaks() -> AsyncIterator[None]:
    """Fail a test that leaves tasks or threads behind."""
    threads = set(threading.enumerate())
    yield
    me = asyncio.current_task()
    left: list[asyncio.Task[object]] = []
    for _ in range(200):  # cancelled tasks need a few loop turns to finish
        left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not left:
            break
        await asyncio.sleep(0.01)
    assert not left, f"tasks left behind: {left}"
    # asyncio's waitpid threads end just after their child: give them a moment.
    extra = [
        t
        for t in threading.enumerate()
        if t not in threads and t.is_alive() and not t.join(timeout=2.0) and t.is_alive()
    ]
    assert not extra, f"threads left behind: {extra}"
