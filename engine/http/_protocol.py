"""uvicorn's HTTP/1.1 protocol with a time limit on request headers: a client that opens a
connection and never finishes its headers (slowloris) is closed after `header_timeout` seconds.
uvicorn's own keep-alive timeout covers only the wait between requests."""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

#: seconds a client has to send a request's line and headers, from its first byte or connection
HEADER_TIMEOUT = 10.0


class HeaderTimeoutProtocol(H11Protocol):
    header_timeout: float = HEADER_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self._header_timer is None:
                self._arm()  # a request has begun (or may): its headers have a deadline
        else:
            self._disarm()  # the headers are in

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        waiting = self.cycle is None or self.cycle.response_complete
        if self.conn.their_state is h11.IDLE and waiting and not self.transport.is_closing():
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # between requests, uvicorn's keep-alive timeout applies


def with_header_timeout(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class with its own header time limit (tests use a short one)."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})
