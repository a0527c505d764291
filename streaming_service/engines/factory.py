"""Which engines a call gets: configuration, not `if`s in the pipeline.

A vendor engine is used when its key is set (or it is forced with `*_ENGINE=vendor`); the offline
engine otherwise. Vendor engines are wrapped so a vendor failure falls back to the offline twin.
Heavy engine modules are imported only when chosen.
"""

from __future__ import annotations

from shared.settings import Settings
from streaming_service.call_session import Engines
from streaming_service.engines.base import AgentRuntime, SpeechToText, TextToSpeech


def _offline_tts() -> TextToSpeech:
    from streaming_service.engines.offline_tts import OfflineTextToSpeech

    return OfflineTextToSpeech()


def _offline_stt() -> SpeechToText:
    from streaming_service.engines.offline_stt import OfflineSpeechToText

    return OfflineSpeechToText()


def build_stt(settings: Settings) -> tuple[SpeechToText, SpeechToText | None]:
    """The recogniser and its fallback (None when the recogniser already is the offline one)."""
    if settings.uses_vendor(settings.stt_engine, settings.deepgram_api_key):
        from streaming_service.engines.deepgram_stt import DeepgramSpeechToText

        return DeepgramSpeechToText(settings), _offline_stt()
    return _offline_stt(), None


def build_tts(settings: Settings) -> TextToSpeech:
    if settings.uses_vendor(settings.tts_engine, settings.elevenlabs_api_key):
        from streaming_service.engines.elevenlabs_tts import ElevenLabsTextToSpeech
        from streaming_service.engines.fallback_tts import FallbackTextToSpeech

        return FallbackTextToSpeech(ElevenLabsTextToSpeech(settings), _offline_tts())
    return _offline_tts()


def build_agent(settings: Settings) -> AgentRuntime:
    from streaming_service.engines.openai_agent import OpenAIAgentRuntime

    return OpenAIAgentRuntime(settings)


def build_engines(settings: Settings) -> Engines:
    stt, stt_fallback = build_stt(settings)
    return Engines(stt=stt, tts=build_tts(settings), agent=build_agent(settings), stt_fallback=stt_fallback)


def describe(engines: Engines) -> dict[str, str]:
    """For the start-up banner."""
    return {"stt": type(engines.stt).__name__, "tts": type(getattr(engines.tts, "primary", engines.tts)).__name__,
            "agent": type(engines.agent).__name__}
