"""Serving an app with uvicorn (h11), with a deadline on each request's headers.

uvicorn has no timeout covering the arrival of a request: its keep-alive timer starts only after
a response, and any byte received cancels it, so a client that opens a connection and trickles
(or never finishes) its headers would hold that connection for ever. ``HeaderDeadline`` closes
it after ``Settings.header_timeout_s``; the body has its own deadline in the app (408).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .settings import Settings

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_CONNECTIONS = 1000  # beyond this uvicorn answers 503 at once
KEEP_ALIVE_S = 5


def run(app: Any, host: str, port: int, settings: Settings) -> None:
    """Serve ``app`` until interrupted (SIGINT / SIGTERM)."""
    import uvicorn

    if host not in LOOPBACK:
        log.warning("Listening on %s: the server is reachable from other machines.", host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            http=header_deadline_protocol(settings.header_timeout_s),
                            timeout_keep_alive=KEEP_ALIVE_S, limit_concurrency=MAX_CONNECTIONS,
                            timeout_graceful_shutdown=5)
    uvicorn.Server(config).run()


def header_deadline_protocol(timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, closing a connection whose next request's headers are late.

    The deadline runs from the moment the connection opens, or its last response ends, until
    the next request's headers are complete. It also bounds how long a client may keep sending
    a body the server has already answered (a 408 or 413).
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _armed_for: object = None  # the request cycle that was current when armed

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            if self._deadline is not None and self.cycle is not self._armed_for:
                self._disarm()  # a new request's headers have arrived

        def on_response_complete(self) -> None:
            super().on_response_complete()
            # Not when a pipelined request has already started: it is past its headers.
            if self.cycle is None or self.cycle.response_complete:
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            if not self.transport.is_closing():
                self._armed_for = self.cycle
                self._deadline = self.loop.call_later(timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.cycle is self._armed_for and not self.transport.is_closing():
                log.info("Closing a connection: no complete request headers within %g s",
                         timeout_s)
                self.transport.close()

    return HeaderDeadline
