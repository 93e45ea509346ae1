"""One exception root; branches say what the caller does next, never the message text."""

from __future__ import annotations


class EdgetwinError(Exception):
    """Root of every error edgetwin raises on purpose."""


class ConfigError(EdgetwinError):
    """The configuration is invalid; ``problems`` lists every located problem."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConfigProblem:
    """One located configuration problem: file, line (if known), key path and message."""

    __slots__ = ("file", "line", "message", "path")

    def __init__(self, file: str, path: str, message: str, line: int | None = None) -> None:
        self.file = file
        self.path = path
        self.message = message
        self.line = line

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        key = f" [{self.path}]" if self.path else ""
        return f"{where}:{key} {self.message}"

    def __repr__(self) -> str:
        return f"ConfigProblem({self.file!r}, {self.path!r}, {self.message!r}, line={self.line!r})"


class TransientError(EdgetwinError):
    """Worth retrying after a backoff: a timeout, a lost link, a busy peer."""


class DeviceTimeoutError(TransientError):
    """The device did not answer in time."""


class ConnectionLostError(TransientError):
    """The transport to a device or broker is down."""


class ProtocolError(EdgetwinError):
    """Bytes arrived but do not form a valid message (bad CRC, bad length, exception response)."""


class DeviceExceptionError(ProtocolError):
    """The device answered with a protocol-level exception (e.g. a Modbus exception code)."""

    def __init__(self, message: str, code: int) -> None:
        self.code = code
        super().__init__(message)


class PayloadError(ProtocolError):
    """An uplink payload (frame, birth, command) cannot be decoded."""


class StorageError(EdgetwinError):
    """The durable store is unusable (corrupt, wrong schema version, disk full)."""


class FatalError(EdgetwinError):
    """The gateway cannot continue; the supervisor stops with a non-zero exit."""
