"""Which engines a call gets: configuration, not `if`s in the pipeline.

A vendor engine is used when its key is set (or it is forced with `*_ENGINE=vendor`); the offline
engine otherwise. Vendor engines are wrapped so a vendor failure falls back to the offline twin.
Heavy engine modules are imported only when chosen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from shared.settings import Settings
from streaming_service.call_session import Engines
from streaming_service.engines.base import AgentRuntime, CallContext, SpeechToText, TextToSpeech

log = logging.getLogger("voice_agent.engines")

if TYPE_CHECKING:
    from streaming_service.data_layer import ServiceData
    from streaming_service.fleet_capacity import ServiceCapacity


def _offline_tts() -> TextToSpeech:
    from streaming_service.engines.offline_tts import OfflineTextToSpeech

    return OfflineTextToSpeech()


def _offline_stt(settings: Settings) -> SpeechToText:
    from streaming_service.engines.offline_stt import OfflineSpeechToText

    return OfflineSpeechToText(max_streams=settings.capacity.offline_stt_max_streams)


def build_stt(settings: Settings) -> tuple[SpeechToText, SpeechToText | None]:
    """The recogniser and its fallback (None when the recogniser already is the offline one)."""
    if settings.uses_vendor(settings.stt_engine, settings.deepgram_api_key):
        from streaming_service.engines.deepgram_stt import DeepgramSpeechToText

        return DeepgramSpeechToText(settings), _offline_stt(settings)
    return _offline_stt(settings), None


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
    """Engines for one call, built from its tenant's settings at the call's start:

    - the tenant's own vendor accounts where it brought keys (shared/tenancy/vendor_secrets.py), with its
      models (`stt_model`, `tts_model`, `llm_model`) and language; the platform's accounts otherwise. Engines
      are kept per (vendor, key fingerprint, model), so a rotated key builds new ones on the next call and a
      key in use keeps its pooled connections;
    - each vendor engine holding a slot of its account's budget while it works
      (streaming_service/engines/vendor_capacity.py);
    - or the offline twins when the webhook answered the call in `offline` capacity mode."""

    MAX_TENANT_ENGINES = 256
    # An engine dropped from the kept ones may still serve live calls: it is closed once the longest call
    # (Twilio's four hours) has surely ended, or when the service stops.
    RETIRED_CLOSE_AFTER_S = 4 * 3600.0

    def __init__(self, settings: Settings, engines: Engines, capacity: ServiceCapacity | None,
                 data: ServiceData | None = None) -> None:
        self.settings = settings
        self.engines = engines
        self.capacity = capacity
        self.data = data
        self._tenant_engines: dict[tuple[str, ...], Any] = {}
        self._retired: dict[int, tuple[Any, asyncio.TimerHandle]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        from shared.tenancy.vendor_secrets import cipher_from_settings

        self._cipher = cipher_from_settings(settings)

    async def _tenant_keys(self, call: CallContext) -> dict[str, str]:
        if self.data is None or not call.tenant_id:
            return {}
        from uuid import UUID

        from shared.tenancy.vendor_secrets import decrypt_all

        try:
            ciphertexts = await self.data.directory.vendor_ciphertexts(UUID(call.tenant_id))
        except Exception as exc:  # no database: the platform's accounts
            log.warning("tenant vendor keys unavailable", extra={"error": type(exc).__name__})
            return {}
        return {vendor: key.value for vendor, key in decrypt_all(self._cipher, ciphertexts, call.tenant_id).items()}

    def _kept(self, identity: tuple[str, ...], build: Callable[[], Any]) -> Any:
        engine = self._tenant_engines.get(identity)
        if engine is None:
            if len(self._tenant_engines) >= self.MAX_TENANT_ENGINES:
                self._retire(self._tenant_engines.pop(next(iter(self._tenant_engines))))
            engine = self._tenant_engines[identity] = build()
        return engine

    def _retire(self, engine: Any) -> None:
        def close() -> None:
            self._retired.pop(id(engine), None)
            task = asyncio.create_task(close_engines(engine))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

        self._retired[id(engine)] = (engine, asyncio.get_running_loop().call_later(self.RETIRED_CLOSE_AFTER_S, close))

    async def aclose(self) -> None:
        """At shutdown, after the calls: every engine's connections, the process's and the tenants'."""
        for _, timer in self._retired.values():
            timer.cancel()
        retired = [engine for engine, _ in self._retired.values()]
        self._retired.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)
        base = self.engines
        await close_engines(*self._tenant_engines.values(), *retired, base.stt, base.stt_fallback, base.tts,
                            base.agent)
        self._tenant_engines.clear()

    def _tenant_base(self, keys: dict[str, str], tenant: dict[str, Any]) -> Engines:
        """The process's engines, with the tenant's own account (or model, or language) where it has one."""
        base, settings = self.engines, self.settings
        stt_model, tts_model, llm_model = (tenant.get("stt_model"), tenant.get("tts_model"), tenant.get("llm_model"))
        language = tenant.get("language") or ""
        stt, stt_fallback, tts, agent = base.stt, base.stt_fallback, base.tts, base.agent
        deepgram_key = keys.get("deepgram") or (settings.deepgram_api_key.get_secret_value()
                                                if settings.deepgram_api_key else "")
        wants_deepgram = "deepgram" in keys or (base.stt_fallback is not None and (stt_model or language != "en"))
        if wants_deepgram and deepgram_key and settings.stt_engine != "offline":
            tenant_settings = settings.model_copy(update={
                "deepgram_api_key": SecretStr(deepgram_key), "deepgram_model": stt_model or settings.deepgram_model,
                "deepgram_language": language if language and language != "en" else settings.deepgram_language})
            from streaming_service.engines.deepgram_stt import DeepgramSpeechToText

            stt = self._kept(("deepgram", _fingerprint(deepgram_key), tenant_settings.deepgram_model,
                              tenant_settings.deepgram_language), lambda: DeepgramSpeechToText(tenant_settings))
            stt_fallback = base.stt_fallback or _offline_stt(settings)
        eleven_key = keys.get("elevenlabs") or (settings.elevenlabs_api_key.get_secret_value()
                                                if settings.elevenlabs_api_key else "")
        own_language = language if language and language != "en" else ""
        if ("elevenlabs" in keys or ((tts_model or own_language) and hasattr(base.tts, "backup"))) \
                and eleven_key and settings.tts_engine != "offline":
            tenant_settings = settings.model_copy(update={
                "elevenlabs_api_key": SecretStr(eleven_key),
                "elevenlabs_model": tts_model or settings.elevenlabs_model,
                "elevenlabs_language": own_language or settings.elevenlabs_language})
            from streaming_service.engines.elevenlabs_tts import ElevenLabsTextToSpeech
            from streaming_service.engines.fallback_tts import FallbackTextToSpeech

            primary = self._kept(("elevenlabs", _fingerprint(eleven_key), tenant_settings.elevenlabs_model,
                                  tenant_settings.elevenlabs_language),
                                 lambda: ElevenLabsTextToSpeech(tenant_settings))
            tts = FallbackTextToSpeech(primary, getattr(base.tts, "backup", None) or _offline_tts())
        openai_key = keys.get("openai") or (settings.openai_api_key.get_secret_value()
                                            if settings.openai_api_key else "")
        if ("openai" in keys or (llm_model and hasattr(base.agent, "offline"))) and openai_key \
                and settings.agent_engine != "offline":
            tenant_settings = settings.model_copy(update={
                "openai_api_key": SecretStr(openai_key), "openai_model": llm_model or settings.openai_model})
            agent = self._kept(("openai", _fingerprint(openai_key), tenant_settings.openai_model),
                               lambda: build_agent(tenant_settings, self.data))
        return Engines(stt=stt, tts=tts, agent=agent, stt_fallback=stt_fallback)

    async def for_call(self, call: CallContext, capacity_mode: str = "") -> Engines:
        if capacity_mode == "offline":
            return offline_engines(self.engines)
        keys = await self._tenant_keys(call)
        base = self._tenant_base(keys, call.tenant_settings) if (keys or call.tenant_settings) else self.engines
        if self.capacity is None:
            return base
        from streaming_service.engines.fallback_tts import FallbackTextToSpeech
        from streaming_service.engines.vendor_capacity import (
            LeasedSpeechToText,
            LeasedTextToSpeech,
            RateBudgetedAgent,
        )

        accounts = await self.capacity.accounts(call.tenant_id, call.tenant_settings, frozenset(keys))
        options, ledger = self.settings.capacity, self.capacity.ledger
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
        agent = base.agent
        offline_agent = getattr(agent, "offline", None)
        if accounts["openai"].budget > 0 and offline_agent is not None:  # a vendor agent, with a rate budget
            agent = RateBudgetedAgent(agent, offline_agent, ledger, accounts["openai"])
        return Engines(stt=stt, tts=tts, agent=agent, stt_fallback=base.stt_fallback)


async def close_engines(*engines: object) -> None:
    """Closes each engine that holds connections (a vendor voice's or model's HTTP pool) once; one failing to
    close does not keep the others open."""
    seen: set[int] = set()
    for engine in engines:
        close = getattr(engine, "aclose", None)
        if close is None or id(engine) in seen:
            continue
        seen.add(id(engine))
        try:
            await close()
        except Exception:
            log.warning("engine did not close cleanly", extra={"engine": type(engine).__name__}, exc_info=True)


def _fingerprint(key: str) -> str:
    """Engines are kept per key without keeping the key itself as a dictionary key in plain sight."""
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()[:16]
