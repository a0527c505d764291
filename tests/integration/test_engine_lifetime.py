"""Vendor engines hold connection pools across calls; the service closes them when it stops, and a tenant's
engine dropped from the kept ones once no call can still be using it. A pool left open holds its sockets until
the collector finds it, and aiohttp logs every one as an error."""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import SecretStr

from shared.settings import Settings
from streaming_service.app import create_app
from streaming_service.engines.elevenlabs_tts import ElevenLabsTextToSpeech
from streaming_service.engines.factory import CallEngineFactory, build_engines
from streaming_service.engines.fallback_agent import FallbackAgentRuntime
from streaming_service.engines.fallback_tts import FallbackTextToSpeech
from streaming_service.engines.openai_agent import OpenAIAgentRuntime


def vendor_settings() -> Settings:
    # Nothing listens at these addresses: closing makes no request.
    return Settings(stt_engine="offline", elevenlabs_api_key=SecretStr("xi-test"),
                    elevenlabs_base_url="http://127.0.0.1:9", openai_api_key=SecretStr("sk-test"),
                    openai_base_url="http://127.0.0.1:9/v1")


def voice_of(tts: object) -> ElevenLabsTextToSpeech:
    assert isinstance(tts, FallbackTextToSpeech) and isinstance(tts.primary, ElevenLabsTextToSpeech)
    return tts.primary


def model_of(agent: object) -> OpenAIAgentRuntime:
    assert isinstance(agent, FallbackAgentRuntime) and isinstance(agent.primary, OpenAIAgentRuntime)
    return agent.primary


async def test_stopping_the_app_closes_its_vendor_pools() -> None:
    engines = build_engines(vendor_settings())
    runner = web.AppRunner(create_app(vendor_settings(), engines))
    await runner.setup()
    assert not voice_of(engines.tts)._http.is_closed
    await runner.cleanup()
    assert voice_of(engines.tts)._http.is_closed
    assert model_of(engines.agent)._client.is_closed()


async def test_a_dropped_tenant_engine_closes_after_the_longest_call_and_the_rest_at_shutdown() -> None:
    settings = vendor_settings()
    factory = CallEngineFactory(settings, build_engines(settings), capacity=None)
    factory.MAX_TENANT_ENGINES = 1
    factory.RETIRED_CLOSE_AFTER_S = 0.2
    first = factory._kept(("elevenlabs", "a"), lambda: ElevenLabsTextToSpeech(settings))
    second = factory._kept(("elevenlabs", "b"), lambda: ElevenLabsTextToSpeech(settings))  # drops the first
    await asyncio.sleep(0.05)
    assert not first._http.is_closed  # a call that began with it may still be speaking
    await asyncio.sleep(0.4)
    assert first._http.is_closed and not second._http.is_closed
    await factory.aclose()
    assert second._http.is_closed and voice_of(factory.engines.tts)._http.is_closed
