"""Speech that survives a TTS vendor failing: the offline voice says what the vendor could not."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from streaming_service.engines.base import EngineError, TextToSpeech
from streaming_service.telemetry.call_hooks import current_call_hooks

log = logging.getLogger("voice_agent.tts")


class FallbackTextToSpeech(TextToSpeech):
    def __init__(self, primary: TextToSpeech, backup: TextToSpeech) -> None:
        self.primary = primary
        self.backup = backup
        self.name = primary.name
        self.fallbacks = 0

    async def synthesize(self, text: str, voice_id: str | None = None, *, previous_text: str = "",
                         next_text: str = "") -> AsyncIterator[bytes]:
        sent = 0
        try:
            async for chunk in self.primary.synthesize(text, voice_id, previous_text=previous_text,
                                                       next_text=next_text):
                sent += len(chunk)
                yield chunk
            return
        except EngineError as exc:
            self.fallbacks += 1
            log.warning("tts vendor failed; offline voice takes over",
                        extra={"vendor": exc.vendor, "error": str(exc), "bytes_before_failure": sent})
            hooks = current_call_hooks()
            hooks.vendor_error(exc.vendor, exc)
            hooks.offline_fallback("tts")
        # The vendor's partial audio already played; the sentence is said again whole, so no words are lost.
        async for chunk in self.backup.synthesize(text, None):
            yield chunk

    async def aclose(self) -> None:
        await self.primary.aclose()
        await self.backup.aclose()
