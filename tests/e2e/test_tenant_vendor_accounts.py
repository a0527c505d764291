"""Tenants with their own vendor accounts (issue 17), through the whole service with real Postgres and Redis:

- each tenant's calls reach the vendor fakes with its own key (checked at the fakes: Deepgram's
  `Authorization: Token …`, ElevenLabs' `xi-api-key`, OpenAI's `Authorization: Bearer …`), its own models
  and voice, Deepgram Flux (`/v2/listen`) when it chose it; a tenant without keys uses the platform's;
- keys are stored encrypted, never in the tenant's settings or the tenant API, never in a log line;
- `voice-agent vendor-keys rotate` takes effect on the next call of a running service.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import moto
import pytest
from aiohttp import web

from shared.settings import Settings
from shared.tenancy.admin import TenantAdmin
from shared.tenancy.cache import JsonCache
from shared.tenancy.call_state import CallStateStore
from shared.tenancy.database import TenantDatabase
from shared.tenancy.directory import TenantDirectory
from shared.tenancy.http_api import build_tenant_api
from shared.tenancy.transcript_buffer import TranscriptRecorder
from shared.tenancy.vendor_secrets import VendorKeyCipher, cipher_for_admin
from streaming_service.app import create_app
from streaming_service.data_layer import ServiceData
from streaming_service.engines.factory import build_engines
from streaming_service.tenancy_recorder import TenancyCallRecorder, tenant_settings_lookup
from tests.conftest import MakeTenant
from tests.e2e.conftest import STREAM_SECRET, VoiceStack, free_port, vendor_settings
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.speech_marker import marked_speech

ROOT = Path(__file__).resolve().parents[2]
A = {"deepgram": "dg-tenant-a-1111", "elevenlabs": "xi-tenant-a-2222", "openai": "sk-tenant-a-3333"}
B = {"deepgram": "dg-tenant-b-4444", "elevenlabs": "xi-tenant-b-5555", "openai": "sk-tenant-b-6666"}
A_ROTATED = "dg-tenant-a-rotated-7777"
ALL_KEYS = [*A.values(), *B.values(), A_ROTATED]


class Everything(logging.Handler):
    """Every log record, with its message, arguments and extra fields, as text."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + " " + json.dumps(record.__dict__, default=str))


@pytest.fixture
def every_log_line() -> Iterator[Everything]:
    handler, root = Everything(), logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.fixture
async def service(fakes: tuple[FakeDeepgram, FakeElevenLabs, FakeOpenAI], db: TenantDatabase,
                  redis_url: str) -> AsyncIterator[tuple[VoiceStack, TenantDirectory]]:
    dg, el, oa = fakes
    for fake in (dg, el, oa):
        fake.other_keys.update(k for keys in (A, B) for k in keys.values())
    dg.other_keys.add(A_ROTATED)
    settings = vendor_settings(dg, el, oa)
    # The prefix a running server and the admin CLI share ("va"), so the CLI's invalidation reaches it.
    cache = JsonCache(redis_url, default_ttl_s=900)
    directory = TenantDirectory(db, cache)
    data = ServiceData(db, cache, directory, TenancyCallRecorder(db, CallStateStore(db, cache),
                                                                 TranscriptRecorder(db, cache)))
    app = create_app(settings, build_engines(settings, data), recorder=data.recorder,
                     tenant_settings=tenant_settings_lookup(directory), data=data)
    app.add_subapp("/api", build_tenant_api(db))
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stack = VoiceStack(dg, el, oa, settings, port, app, runner)
    yield stack, directory
    await stack.close()
    await cache.close()


async def _one_turn(stack: VoiceStack, tenant_id: str) -> str:
    async with stack.call(tenant_id) as caller:
        await caller.wait_for_agent(since=0)
        spoken_at = await caller.say(marked_speech("What are your opening hours"))
        await caller.wait_for_agent(since=spoken_at)
        return caller.call_sid


async def test_each_tenant_reaches_the_vendors_with_its_own_keys_and_rotation_takes_the_next_call(
        service: tuple[VoiceStack, TenantDirectory], make_tenant: MakeTenant, admin: TenantAdmin,
        admin_dsn: str, redis_url: str, every_log_line: Everything) -> None:
    stack, directory = service
    dg, el, oa = stack.deepgram, stack.elevenlabs, stack.openai
    cipher = VendorKeyCipher.from_material("", STREAM_SECRET)  # the service's data key: from STREAM_TOKEN_SECRET
    a = await make_tenant("own_a", stt_model="nova-2-phonecall", tts_model="eleven_turbo_v2_5",
                          llm_model="gpt-tenant-a", voice_id="voiceTenantA")
    b = await make_tenant("own_b", stt_model="flux-general-en", language="es")
    platform = await make_tenant("platform")
    for profile, keys in ((a, A), (b, B)):
        for vendor, key in keys.items():
            await admin.set_vendor_key(profile.tenant_id, vendor, cipher.encrypt(key))

    await _one_turn(stack, str(a.tenant_id))
    assert dg.authorizations[-1] == f"Token {A['deepgram']}" and dg.records[-1].query["model"] == "nova-2-phonecall"
    assert {r.headers["xi-api-key"] for r in el.requests} == {A["elevenlabs"]}
    assert {r.body.get("model_id") for r in el.requests} == {"eleven_turbo_v2_5"}
    assert {r.voice_id for r in el.requests} == {"voiceTenantA"}
    assert {h["Authorization"] for h in oa.headers} == {f"Bearer {A['openai']}"}
    assert {body.get("model") for body in oa.requests} == {"gpt-tenant-a"}

    seen_el, seen_oa = len(el.requests), len(oa.headers)
    await _one_turn(stack, str(b.tenant_id))
    assert dg.authorizations[-1] == f"Token {B['deepgram']}"
    assert dg.records[-1].flux and dg.records[-1].query["model"] == "flux-general-en"  # Deepgram Flux, /v2/listen
    assert {r.headers["xi-api-key"] for r in el.requests[seen_el:]} == {B["elevenlabs"]}
    assert {r.body.get("language_code") for r in el.requests[seen_el:]} == {"es"}  # the tenant's language
    assert {r.body.get("language_code") for r in el.requests[:seen_el]} == {None}  # A: the model decides
    assert {h["Authorization"] for h in oa.headers[seen_oa:]} == {f"Bearer {B['openai']}"}
    assert any(event == "EndOfTurn" for event in (m.get("event") for m in dg.records[-1].sent))

    seen_el, seen_oa = len(el.requests), len(oa.headers)
    await _one_turn(stack, str(platform.tenant_id))
    assert dg.authorizations[-1] == f"Token {dg.api_key}"
    assert {r.headers["xi-api-key"] for r in el.requests[seen_el:]} == {el.api_key}
    assert {h["Authorization"] for h in oa.headers[seen_oa:]} == {f"Bearer {oa.api_key}"}

    # Rotation through the admin CLI, against the running service: the next call uses the new key.
    env = {**os.environ, "REDIS_URL": redis_url, "STREAM_TOKEN_SECRET": STREAM_SECRET, "NEW_DG_KEY": A_ROTATED}
    cli = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "local.cli", "vendor-keys", "rotate", a.slug, "deepgram",
                         "--from-env", "NEW_DG_KEY", "--dsn", admin_dsn],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert cli.returncode == 0, cli.stderr
    await _one_turn(stack, str(a.tenant_id))
    assert dg.authorizations[-1] == f"Token {A_ROTATED}"

    # Stored encrypted; never in the settings, the tenant API, the CLI's output or any log line.
    conn = await asyncpg.connect(admin_dsn)
    try:
        stored = {r["vendor"]: r["ciphertext"] for r in await conn.fetch(
            "SELECT vendor, ciphertext FROM public.tenant_vendor_secrets WHERE tenant_id = $1", a.tenant_id)}
    finally:
        await conn.close()
    assert cipher.decrypt(stored["deepgram"]) == A_ROTATED and A_ROTATED not in stored["deepgram"]
    api_key = await admin.create_api_key(a.tenant_id)
    api_output = await _tenant_api_dump(stack, str(a.tenant_id), api_key)
    read_back = await directory.tenant_profile(a.tenant_id)
    assert read_back is not None
    exposed = {"settings": json.dumps(read_back.to_json()), "tenant API": api_output,
               "CLI": cli.stdout + cli.stderr, "logs": "\n".join(every_log_line.lines)}
    assert len(every_log_line.lines) > 50  # the capture saw the calls
    for where, text in exposed.items():
        for key in ALL_KEYS:
            assert key not in text, f"{key} in {where}"
        assert stored["deepgram"] not in text, f"ciphertext in {where}"


async def _tenant_api_dump(stack: VoiceStack, tenant_id: str, api_key: str) -> str:
    headers = {"X-Tenant-Id": tenant_id, "Authorization": f"Bearer {api_key}"}
    out: list[str] = []
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{stack.http_url}/api/calls") as response:
            assert response.status == 200
            listing: dict[str, Any] = await response.json()
            out.append(json.dumps(listing))
        for call in listing.get("calls", listing.get("items", [])):
            for path in (f"/api/calls/{call['call_sid']}", f"/api/calls/{call['call_sid']}/transcript"):
                async with http.get(stack.http_url + path) as response:
                    out.append(await response.text())
    assert len(out) > 1  # the calls were listed and read back
    return "\n".join(out)


def test_the_admin_cli_takes_the_data_key_from_secrets_manager_in_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """In AWS the CLI has no key in its environment: it reads the app secret (Powertools over boto3, the real
    code path; moto stands in for Secrets Manager). What it encrypts, a task with that secret decrypts."""
    import boto3

    for name, value in (("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    with moto.mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="voice-agent/test/app", SecretString=json.dumps({"STREAM_TOKEN_SECRET": "from-secrets-manager"})
        )["ARN"]
        admin_cipher = cipher_for_admin(Settings(_env_file=None, app_secret_arn=arn))  # type: ignore[call-arg]
        ciphertext = admin_cipher.encrypt("dg-key-in-aws")
    task_cipher = VendorKeyCipher.from_material("", "from-secrets-manager")  # ECS injects STREAM_TOKEN_SECRET
    assert task_cipher.decrypt(ciphertext) == "dg-key-in-aws"
    with pytest.raises(ValueError):
        VendorKeyCipher.from_material("", "another-secret").decrypt(ciphertext)
