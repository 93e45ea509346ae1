"""The device end of a pseudo-terminal: the stub owns the master, the gateway opens the slave.

The stub also keeps the slave open itself, in raw mode: then the master never reads EIO
while the gateway has the port closed, and the line discipline never echoes or edits what
the stub sends. Closing the pty makes the slave path vanish, as an unplugged USB adapter
does; a new pty (with a new path) plays the adapter plugged back in, and the optional link
is re-pointed at it atomically.
"""

from __future__ import annotations

import contextlib
import os
import tty
from pathlib import Path


class Pty:
    """One pseudo-terminal pair, reopened on demand."""

    def __init__(self, link: Path | None = None) -> None:
        self.link = link
        self.master: int | None = None
        self._slave: int | None = None
        self.path = ""
        self.dropped = 0  # bytes the slave's input queue had no room for

    @property
    def is_open(self) -> bool:
        """Whether the pty exists (the port is "plugged in")."""
        return self.master is not None

    def open(self) -> None:
        """Create the pair (a no-op when open) and point the link at the slave."""
        if self.master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.master, self._slave, self.path = master, slave, os.ttyname(slave)
        if self.link is not None:
            tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.path)
            tmp.replace(self.link)

    def close(self) -> None:
        """Destroy the pair: whoever has the slave open sees the port vanish."""
        for fd in (self.master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self._slave = None

    def unlink(self) -> None:
        """Remove the link, if it still points at this pty."""
        if self.link is not None and self.link.is_symlink():
            with contextlib.suppress(OSError):
                if os.readlink(self.link) == self.path:
                    self.link.unlink()

    def write(self, data: bytes) -> bool:
        """Send ``data``; False if the pty is closed or could not take all of it."""
        if self.master is None:
            return False
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                # Nobody is reading the port and its input queue is full: a real UART with
                # nobody listening loses bytes too.
                self.dropped += len(view)
                return False
            except OSError:
                return False
            view = view[n:]
        return True

    def read(self) -> bytes:
        """What the gateway wrote (empty if nothing)."""
        if self.master is None:
            return b""
        try:
            return os.read(self.master, 4096)
        except (BlockingIOError, OSError):
            return b""
