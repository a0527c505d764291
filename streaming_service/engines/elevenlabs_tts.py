"""ElevenLabs text to speech over HTTP streaming (`elevenlabs` SDK), mu-law 8 kHz straight for Twilio.

Each sentence is one `POST /v1/text-to-speech/{voice}/stream?output_format=ulaw_8000` request,
stitched to its neighbours with `previous_text` / `next_text` so the pieces of one reply keep one
prosody. The SDK does not retry streaming calls, so a failure surfaces at once and the session decides
what to do. Pooled connections are kept alive well past a caller's turn, so no turn pays a handshake.

The SDK's `httpx` client runs on aiohttp's transport (`httpx-aiohttp`, by httpx's maintainers; the openai SDK
ships the same one as its `DefaultAioHttpClient`): a sentence's request and streamed audio cost 1.4 ms of CPU
against 3.0 over httpcore, and one pool serves every call (httpcore 1.x checked each pooled connection against
every other on each request, which had needed eight pools). bench/profile-50-calls.md has the figures.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
from elevenlabs import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError
from elevenlabs.core.request_options import RequestOptions
from httpx_aiohttp import HttpxAiohttpClient

from shared.settings import Settings
from streaming_service.engines.base import EngineError, TextToSpeech

log = logging.getLogger(__name__)

VENDOR = "elevenlabs"
# A stalled stream must not hold a caller in silence: bound each read, not the whole sentence.
READ_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
KEEPALIVE_S = 120.0  # the pool's default (aiohttp's 15 s) can be shorter than a caller's turn
MAX_CONNECTIONS = 1000  # one per sentence being spoken; the transport's default (100) would queue calls
STITCH_CHARS = 300  # of neighbouring text sent for prosody
STREAMING_LATENCY = 3  # max latency optimisations, text normaliser still on (4 mangles numbers)


class ElevenLabsTextToSpeech(TextToSpeech):
    name = "elevenlabs"

    def __init__(self, settings: Settings) -> None:
        key = settings.elevenlabs_api_key
        self._model = settings.elevenlabs_model
        self._default_voice = settings.elevenlabs_voice_id
        self._language = {"language_code": settings.elevenlabs_language} if settings.elevenlabs_language else {}
        self._http = HttpxAiohttpClient(timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                                        limits=httpx.Limits(max_connections=MAX_CONNECTIONS,
                                                            keepalive_expiry=KEEPALIVE_S))
        self._client = AsyncElevenLabs(api_key=key.get_secret_value() if key else None,
                                       base_url=settings.elevenlabs_base_url, httpx_client=self._http)

    async def synthesize(self, text: str, voice_id: str | None = None, *, previous_text: str = "",
                         next_text: str = "") -> AsyncIterator[bytes]:
        if not text.strip():
            return
        stitching: dict[str, str] = {}
        if previous_text.strip():
            stitching["previous_text"] = previous_text.strip()[-STITCH_CHARS:]
        if next_text.strip():
            stitching["next_text"] = next_text.strip()[:STITCH_CHARS]
        stream = self._client.text_to_speech.stream(
            voice_id=voice_id or self._default_voice,
            text=text,
            model_id=self._model,
            output_format="ulaw_8000",
            optimize_streaming_latency=STREAMING_LATENCY,
            **self._language,
            **stitching,
            request_options=_AS_IT_ARRIVES,
        )
        try:
            async for chunk in stream:
                if chunk:
                    yield chunk
        except ApiError as exc:
            raise EngineError(VENDOR, f"HTTP {exc.status_code}: {_detail(exc.body)}") from exc
        except httpx.HTTPError as exc:
            # A connection dropped mid-body shows up here (RemoteProtocolError / ReadError): never
            # let a cut stream pass for a short sentence.
            raise EngineError(VENDOR, f"audio stream failed: {type(exc).__name__}: {exc}") from exc
        finally:
            # On cancellation or aclose this closes the response, which drops the connection.
            await stream.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()


# Each network read is handed on as it arrives (httpx's chunk_size None). The SDK's default, 1024 bytes, holds
# the sentence's first audio until 128 ms of it has arrived, and every later piece until the next kilobyte.
_AS_IT_ARRIVES = RequestOptions(chunk_size=cast(int, None))


def _detail(body: Any) -> str:
    """The vendor's error message, e.g. `{"detail": {"status": "invalid_api_key", "message": …}}`."""
    if isinstance(body, dict):
        detail = body.get("detail", body)
        if isinstance(detail, dict):
            return str(detail.get("message") or detail.get("status") or detail)
        return str(detail)
    return str(body)[:200]
