"""The WebSocket under the Deepgram SDK's live clients: no permessage-deflate, and a handshake we await.

deepgram-sdk 7.x opens its sockets with the `websockets` library's defaults, which offer permessage-deflate:
every frame of mu-law audio was deflated before it was sent (mu-law barely compresses, so it gained nothing;
5 % of the service's CPU at 50 calls, bench/profile-50-calls.md). The SDK's own hook for its socket is
`transport_factory` (`AsyncDeepgramClient(transport_factory=...)`, deepgram/transport_interface.py): the SDK calls
`factory(url, headers)` with the URL and headers it built and wraps what it gets in its socket client
(`AsyncV1SocketClient`), which then only calls `send`, `recv`, `async for` and `close`. The SDK installs the
factory process-wide, so every client passes this same class.

The factory is called synchronously, so the handshake starts on `open()`: deepgram_stt.py calls it right after
the SDK's `connect()`, inside its connect timeout (`complete_handshake`). A refused handshake raises the SDK's
`ApiError` with the HTTP status, as the SDK's own transport does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from deepgram.core.api_error import ApiError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.protocol import State
from websockets.typing import Data


class UncompressedSocket:
    """An `AsyncTransport` for the Deepgram SDK: the `websockets` asyncio client without compression."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self._url = url
        self._headers = dict(headers)
        self._opening: asyncio.Task[ClientConnection] | None = None
        self._connection: ClientConnection | None = None

    async def open(self) -> ClientConnection:
        """The handshake (once; later calls wait for the same one)."""
        if self._connection is not None:
            return self._connection
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._handshake())
        self._connection = await self._opening
        return self._connection

    async def _handshake(self) -> ClientConnection:
        try:
            # proxy=None: as the SDK's own (legacy) client, which never used the environment's proxy settings.
            # Timeouts are the caller's (deepgram_stt.py's connect and close timeouts).
            return await connect(self._url, additional_headers=self._headers, compression=None, proxy=None,
                                 open_timeout=None, close_timeout=2.0)
        except InvalidStatus as exc:
            raise ApiError(status_code=exc.response.status_code, headers=self._headers,
                           body=exc.response.body.decode("utf-8", "replace") if exc.response.body else None
                           ) from None

    async def send(self, data: Data) -> None:
        connection = self._connection or await self.open()
        await connection.send(data)

    def send_now(self, data: bytes, max_buffered: int = 64 * 1024) -> bool:
        """Writes one binary frame at once, without a task hop or the async send's context manager: a live
        call's caller audio, 50 frames a second. False when it cannot (not open, or the socket is backed up
        past `max_buffered`, where the async `send` would wait for it to drain): the caller sends it the
        usual way instead. A failed write is left to the connection's reader, which sees the socket die."""
        connection = self._connection
        if connection is None or connection.protocol.state is not State.OPEN \
                or connection.transport.get_write_buffer_size() > max_buffered:
            return False
        connection.protocol.send_binary(data)
        try:
            connection.send_data()
        except OSError:
            return False
        return True

    async def recv(self) -> Data:
        connection = self._connection or await self.open()
        return await connection.recv()

    async def __aiter__(self) -> AsyncIterator[Data]:
        connection = self._connection or await self.open()
        async for message in connection:
            yield message

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        elif self._opening is not None and not self._opening.done():
            self._opening.cancel()


async def complete_handshake(sdk_socket: Any) -> None:
    """Awaits the handshake of an SDK socket client (`AsyncV1SocketClient`/`AsyncV2SocketClient`) made through
    `UncompressedSocket`, so a refused or slow handshake fails inside the caller's connect timeout. The SDK's socket
    clients keep their transport as `_websocket` (generated code, the same in every client)."""
    transport = getattr(sdk_socket, "_websocket", None)
    if isinstance(transport, UncompressedSocket):
        await transport.open()
