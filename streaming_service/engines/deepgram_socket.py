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

`server_messages` reads a connection's messages as the SDK's own models, as its socket client's `async for`
does, but picks the model by the message's `type` and validates it with pydantic-core (about 50 us a result),
where the SDK's generic `construct_type` tries its union's models one by one in Python (about 80 us: 5 % of the
service's CPU at 50 calls, one interim result every 200 ms of speech).
"""

from __future__ import annotations

import asyncio
import logging
import typing
from collections.abc import AsyncIterator
from functools import cache
from typing import Any

import orjson
import pydantic
from deepgram.core.api_error import ApiError
from deepgram.core.unchecked_base_model import construct_type
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.protocol import State
from websockets.typing import Data

logger = logging.getLogger(__name__)


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


def transport_of(sdk_socket: Any) -> UncompressedSocket | None:
    """The transport of an SDK socket client (`AsyncV1SocketClient`/`AsyncV2SocketClient`) when it is this class
    (the SDK's socket clients keep it as `_websocket`: generated code, the same in every client); else None."""
    transport = getattr(sdk_socket, "_websocket", None)
    return transport if isinstance(transport, UncompressedSocket) else None


async def complete_handshake(sdk_socket: Any) -> None:
    """Awaits the handshake of an SDK socket client made through `UncompressedSocket`, so a refused or slow
    handshake fails inside the caller's connect timeout."""
    if (transport := transport_of(sdk_socket)) is not None:
        await transport.open()


@cache
def _models_by_type(union: Any) -> dict[str, type[pydantic.BaseModel]]:
    """The union's models by the literal value of their `type` field ("Results", "TurnInfo"...)."""
    models: dict[str, type[pydantic.BaseModel]] = {}
    for model in typing.get_args(union):
        field = model.model_fields.get("type")
        for value in typing.get_args(field.annotation) if field is not None else ():
            models.setdefault(value, model)
    return models


async def server_messages(sdk_socket: Any, union: Any) -> AsyncIterator[Any]:
    """The messages of an SDK socket client made through `UncompressedSocket`, as the SDK's models of `union`
    (its `V1SocketClientResponse`/`V2SocketClientResponse`). A message its model does not validate is built
    leniently as the SDK builds it; one the SDK cannot build either is skipped with a warning, as the SDK does.
    Another transport: the SDK's own iteration."""
    transport = transport_of(sdk_socket)
    if transport is None:
        async for message in sdk_socket:
            yield message
        return
    async for raw in transport:
        if isinstance(raw, bytes):
            yield raw
        elif (message := _sdk_message(raw, union)) is not None:
            yield message


def _sdk_message(raw: str, union: Any) -> Any:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        logger.warning("deepgram message skipped: not JSON", extra={"received": raw[:200]})
        return None
    model = _models_by_type(union).get(str(data.get("type"))) if isinstance(data, dict) else None
    if model is not None:
        try:
            return model.model_validate(data)
        except pydantic.ValidationError:
            pass  # not the documented shape: built leniently below, as the SDK would
    try:
        return construct_type(type_=union, object_=data)
    except Exception:  # as the SDK: a message it cannot build is skipped, not the end of the stream
        logger.warning("deepgram message skipped: not one the SDK knows", extra={"received": raw[:200]})
        return None
