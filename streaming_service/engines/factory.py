"""Which engines a call gets: configuration, not `if`s in the pipeline.

A vendor engine is used when its key is set (or it is forced with `*_ENGINE=vendor`); the offline
engine otherwise. Vendor engines are wrapped so a vendor failure falls back to the offline twin.
Heavy engine modules are imported only when chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.settings import Settings
from streaming_service.call_session import Engines
from streaming_service.engines.base import AgentRuntime, CallContext, SpeechToText, TextToSpeech

if TYPE_CHECKING:
    from streaming_service.data_layer import ServiceData
    from streaming_service.fleet_capacity import ServiceCapacity


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


def build_agent(settings: Settings, data: ServiceData | None = None) -> AgentRuntime:
    """OpenAI (falling back to the offline policy) with a key; the offline policy alone without.
    Bookings go to the tenant's Postgres schema when there is a database."""
    from streaming_service.agents.booking_store import PostgresBookingStore
    from streaming_service.agents.runtime_builder import build_agent_runtime

    return build_agent_runtime(settings, PostgresBookingStore(data.db) if data else None,
                               tool_proxy_secret=settings.secret("tool_proxy_secret"),
                               cache=data.cache if data else None)


def build_engines(settings: Settings, data: ServiceData | None = None) -> Engines:
    stt, stt_fallback = build_stt(settings)
    return Engines(stt=stt, tts=build_tts(settings), agent=build_agent(settings, data), stt_fallback=stt_fallback)


def describe(engines: Engines) -> dict[str, str]:
    """For the start-up banner."""
    def name(engine: object) -> str:
        primary = getattr(engine, "primary", None)
        return f"{type(primary).__name__} (falls back offline)" if primary is not None else type(engine).__name__

    return {"stt": name(engines.stt) if engines.stt_fallback is None else f"{type(engines.stt).__name__} "
            "(falls back offline)", "tts": name(engines.tts), "agent": name(engines.agent)}


OFFLINE_NOTICE = ("Our lines are very busy right now, so you're talking to our basic automated assistant. "
                  "It can still take a booking.")


def offline_engines(engines: Engines) -> Engines:
    """The offline twins of a set of engines: what a call gets when its vendors are at capacity."""
    stt = engines.stt_fallback or engines.stt
    tts = getattr(engines.tts, "backup", engines.tts)
    agent = getattr(engines.agent, "offline", engines.agent)
    return Engines(stt=stt, tts=tts, agent=agent, stt_fallback=None)


class CallEngineFactory:
    """Engines for one call: the process's engines (the platform's vendor accounts), each vendor engine
    holding a slot of its account's budget while it works (streaming_service/engines/vendor_capacity.py),
    or their offline twins when the webhook answered the call in `offline` capacity mode."""

    def __init__(self, settings: Settings, engines: Engines, capacity: ServiceCapacity | None) -> None:
        self.settings = settings
        self.engines = engines
        self.capacity = capacity

    async def for_call(self, call: CallContext, capacity_mode: str = "") -> Engines:
        if capacity_mode == "offline":
            return offline_engines(self.engines)
        if self.capacity is None:
            return self.engines
        from streaming_service.engines.fallback_tts import FallbackTextToSpeech
        from streaming_service.engines.vendor_capacity import LeasedSpeechToText, LeasedTextToSpeech

        accounts = await self.capacity.accounts(call.tenant_id, call.tenant_settings)
        options, ledger = self.settings.capacity, self.capacity.ledger
        base = self.engines
        stt = base.stt
        if base.stt_fallback is not None:  # a vendor recogniser
            stt = LeasedSpeechToText(base.stt, ledger, accounts["deepgram"],
                                     renew_interval_s=options.lease_renew_interval_s)
        tts = base.tts
        if isinstance(tts, FallbackTextToSpeech):  # a vendor voice with its offline twin
            tts = FallbackTextToSpeech(LeasedTextToSpeech(tts.primary, ledger, accounts["elevenlabs"],
                                                          slot_wait_ms=options.tts_slot_wait_ms,
                                                          first_byte_budget_ms=options.tts_first_byte_budget_ms),
                                       tts.backup)
        return Engines(stt=stt, tts=tts, agent=base.agent, stt_fallback=base.stt_fallback)
