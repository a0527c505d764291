"""`make demo` as a test: a booking call through the one-process server on the offline engines and
embedded Postgres/Redis, then a second start on the same data folder."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import wave
from pathlib import Path
from uuid import UUID

from local.demo import CALLER_NAME, run_demo
from shared.settings import Settings
from shared.tenancy import calls

ROOT = Path(__file__).resolve().parents[2]


async def test_demo_call_books_and_records_everything(tmp_path):
    out = io.StringIO()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]  # no keys: offline engines, embedded data
    result = await run_demo(out, tmp_path / "demo.wav", settings=settings, data_folder=tmp_path / "data")
    printed = out.getvalue()
    assert "OfflinePolicyRuntime" in printed and "voice-to-voice" in printed
    spoken = [line for line in printed.splitlines() if "agent:" in line or "caller says:" in line]
    assert "agent:" in spoken[-1] and "Goodbye" in spoken[-1], printed  # nothing said after the goodbye

    assert result.booking is not None, printed
    assert result.booking["customer_name"].lower().startswith(CALLER_NAME.split()[0].lower())
    assert result.booking["customer_phone"] == "+15557654321"
    assert result.booking["status"] == "confirmed"
    assert "<Hangup" in result.after_stream_twiml
    roles = [entry["role"] for entry in result.transcript]
    assert roles[0] == "agent" and "caller" in roles and len(result.turns) >= 3

    with wave.open(str(result.wav_path)) as recording:
        assert recording.getnchannels() == 2 and recording.getframerate() == 8000
        assert recording.getnframes() / 8000 > 10


def test_embedded_servers_stop_cleanly_and_a_second_start_reuses_the_data(tmp_path):
    env = {**os.environ, "VOICE_AGENT_DATA_DIR": str(tmp_path / "data"), "POWERTOOLS_METRICS_DISABLED": "true"}
    for key in ("AURORA_DSN", "REDIS_URL", "OPENAI_API_KEY", "DEEPGRAM_API_KEY", "ELEVENLABS_API_KEY"):
        env.pop(key, None)
    probe = (
        "import asyncio\n"
        "from uuid import UUID\n"
        "from local.stack import build_local_stack\n"
        "from shared.settings import Settings\n"
        "from shared.tenancy import bookings\n"
        "async def main():\n"
        "    stack = await build_local_stack(Settings(_env_file=None), 0)\n"
        "    rows = await bookings.list_bookings(stack.data.db, UUID(stack.demo_tenant_id))\n"
        "    print(stack.demo_tenant_id, len(rows))\n"
        "    await stack.data.close()\n"
        "asyncio.run(main())\n"
    )
    first = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0, first.stderr
    tenant_id, count = first.stdout.split()
    # Exit stopped the embedded Postgres: no postmaster is left behind.
    assert not list((tmp_path / "data" / "postgres").rglob("postmaster.pid"))
    second = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == [tenant_id, count]  # same tenant, same data
    assert UUID(tenant_id)


async def test_demo_transcript_is_durable_in_postgres(tmp_path):
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    result = await run_demo(io.StringIO(), tmp_path / "demo.wav", settings=settings, data_folder=tmp_path / "d")
    from local.stack import build_local_stack

    stack = await build_local_stack(settings, 0, tmp_path / "d")
    try:
        tenant = UUID(stack.demo_tenant_id)
        call_sid = result.booking["call_sid"] if result.booking else ""
        turns = await calls.list_transcript(stack.data.db, tenant, call_sid)
        record = await calls.get_call(stack.data.db, tenant, call_sid)
    finally:
        await stack.data.close()
    assert [t.text for t in turns] == [e["text"] for e in result.transcript]
    assert record is not None and record.ended_at is not None
