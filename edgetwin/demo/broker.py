"""An embedded MQTT 3.1.1 broker (amqtt) on a free loopback port, for the demo only."""

from __future__ import annotations

import logging
import socket
from types import TracebackType

from edgetwin.errors import FatalError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedBroker:
    """``async with EmbeddedBroker() as url:`` gives ``mqtt://127.0.0.1:PORT``."""

    def __init__(self) -> None:
        self.port = free_port()
        self._broker: object | None = None

    async def __aenter__(self) -> str:
        try:
            from amqtt.broker import Broker  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            raise FatalError(
                "the embedded demo broker needs amqtt: pip install 'edgetwin[demo]', "
                "or pass --broker mqtt://HOST:PORT"
            ) from exc
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }
        )
        await broker.start()
        self._broker = broker
        return f"mqtt://127.0.0.1:{self.port}"

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._broker is not None:
            await self._broker.shutdown()  # type: ignore[attr-defined]
            self._broker = None
