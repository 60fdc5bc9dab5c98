"""An embedded MQTT broker (amqtt) so that ``shouhu demo`` and small sites need no services.

amqtt is asyncio; the rest of Shouhu is threads. ``EmbeddedBroker`` runs the broker's event
loop in one daemon thread and offers a blocking ``start()``/``stop()``. It listens on
127.0.0.1 only: it has no accounts or ACLs, so it must never face a network.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from concurrent.futures import Future
from typing import Any

from shouhu.exceptions import BrokerError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (there is a small race; fine for a demo)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """amqtt broker on ``127.0.0.1:port`` in its own asyncio thread; MQTT 3.1.1, QoS 0/1."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # No $SYS plugin and no packet logger: quiet and cheap.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

    def start(self) -> None:
        """Start listening; returns once the port accepts connections."""
        if self._thread is not None:
            return
        # amqtt logs every connection at INFO; the demo's status line is enough.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        loop = asyncio.new_event_loop()
        started: Future[None] = Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start_broker(loop))
            except Exception as exc:  # amqtt raises its own errors; hand them to start()
                started.set_exception(exc)
                loop.close()
                return
            started.set_result(None)
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"mqtt-broker:{self.port}", daemon=True)
        self._thread.start()
        try:
            started.result(timeout=START_TIMEOUT_S)
        except Exception as exc:
            self._thread = None
            self._loop = None
            raise BrokerError(
                f"embedded broker could not listen on {self.host}:{self.port}: {exc}",
                hint="pick another port",
            ) from exc
        log.info("embedded MQTT broker listening on %s", self.url)

    async def _start_broker(self, loop: asyncio.AbstractEventLoop) -> None:
        from amqtt.broker import Broker  # lazy: only the embedded default needs amqtt

        self._broker = Broker(self._config(), loop=loop)
        await self._broker.start()

    def stop(self) -> None:
        """Shut the broker down and join its thread (bounded)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._thread = None
        self._loop = None
        if self._broker is not None:
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), loop)
            try:
                fut.result(timeout=START_TIMEOUT_S)
            except Exception as exc:  # shutting down anyway; log and carry on
                log.warning("embedded broker shutdown: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=START_TIMEOUT_S)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
