"""Data stores failing under a live call: a throwaway redis-server flushed, killed and restarted; Postgres
connections cut (tests/fakes/tcp_proxy.py) while a booking is written and while transcripts are flushed.

The service runs with its real data layer (ServiceData: pool, cache, recorder, booking store) and the
OpenAI fake scripts the booking tool calls; the caller is the simulator."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import pytest
import redis

from shared.tenancy import bookings, calls
from shared.tenancy.embedded import app_dsn
from shared.tenancy.models import TenantProfile
from streaming_service.data_layer import ServiceData
from tests.chaos.harness import DEAD_AIR_LIMIT_S, TimedCall, start_chaos_stack
from tests.e2e.conftest import VoiceStack, free_port, wait_until
from tests.fakes.deepgram_server import FakeDeepgram
from tests.fakes.elevenlabs_server import FakeElevenLabs
from tests.fakes.openai_server import FakeOpenAI, ToolCall
from tests.fakes.speech_marker import marked_speech
from tests.fakes.tcp_proxy import TcpProxy

pytestmark = pytest.mark.chaos_long

TZ = ZoneInfo("America/New_York")
TENANT_SETTINGS: dict[str, Any] = {
    "timezone": "America/New_York",
    "business_hours": {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
}


class ThrowawayRedis:
    """A redis-server of our own on a spare port, without persistence: killing it loses everything."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                subprocess.run(["sleep", "0.02"], check=True)
        client.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def flushall(self) -> None:
        client = redis.Redis.from_url(self.url)
        client.flushall()
        client.close()


@dataclass
class DataStack:
    stack: VoiceStack
    data: ServiceData
    redis: ThrowawayRedis
    postgres: TcpProxy
    tenant: TenantProfile


@pytest.fixture
async def data_stack(admin_dsn: str, make_tenant: Any) -> AsyncIterator[DataStack]:
    tenant: TenantProfile = await make_tenant("chaos", **TENANT_SETTINGS)
    server = ThrowawayRedis()
    await asyncio.to_thread(server.start)
    dsn = urlsplit(app_dsn(admin_dsn))
    proxy = TcpProxy(dsn.hostname or "127.0.0.1", dsn.port or 5432)
    await proxy.start()
    via_proxy = urlunsplit(dsn._replace(netloc=f"{dsn.netloc.rsplit('@', 1)[0]}@127.0.0.1:{proxy.port}"))
    data = await ServiceData.connect(via_proxy, server.url, 900)
    fakes = FakeDeepgram(), FakeElevenLabs(), FakeOpenAI()
    for fake in fakes:
        await fake.start()
    stack = await start_chaos_stack(fakes, recorder=data.recorder, tenant_settings=data.tenant_settings(),
                                    engines_data=data)
    yield DataStack(stack, data, server, proxy, tenant)
    await stack.close()
    for fake in fakes:
        await fake.stop()
    await data.close()
    await proxy.stop()
    server.kill()


async def _turn(caller: TimedCall, text: str) -> float:
    spoken_at = await caller.say(marked_speech(text))
    await caller.wait_for_agent(since=spoken_at, timeout_s=20)
    return caller.dead_air_s(spoken_at)


async def _transcript(ds: DataStack, call_sid: str) -> list[tuple[int, str, str]]:
    turns = await calls.list_transcript(ds.data.db, ds.tenant.tenant_id, call_sid)
    return [(t.seq, t.role, t.text) for t in turns]


async def test_redis_flushed_then_stopped_then_back_calls_go_on_and_nothing_is_lost(data_stack: DataStack) -> None:
    ds = data_stack
    lines = ["Hello there", "What are your opening hours", "Do you have parking", "Where are you",
             "Thanks that is all"]
    dead_air: list[float] = []
    async with ds.stack.call(tenant_id=str(ds.tenant.tenant_id)) as caller:
        await caller.wait_for_agent(since=0)
        dead_air.append(await _turn(caller, lines[0]))
        await asyncio.to_thread(ds.redis.flushall)
        dead_air.append(await _turn(caller, lines[1]))
        await asyncio.to_thread(ds.redis.kill)
        dead_air.append(await _turn(caller, lines[2]))
        await asyncio.to_thread(ds.redis.start)  # back, empty
        await asyncio.sleep(ds.data.cache.retry_after_s + 0.1)  # the cache tries Redis again after this
        dead_air.append(await _turn(caller, lines[3]))  # pooled sockets to the old server fail once here
        dead_air.append(await _turn(caller, lines[4]))
        session = ds.stack.session(caller)
        assert session is not None
        # State rebuilds in the new Redis: the call's whole history is there again.
        history = await ds.data.recorder.state.read_history(ds.tenant.tenant_id, caller.call_sid)
        assert [item.get("content") for item in history if item.get("role") == "user"] == lines
    assert max(dead_air) <= DEAD_AIR_LIMIT_S
    record = ds.data.recorder
    await wait_until(lambda: caller.call_sid not in record._writers, timeout_s=10)
    stored = await _transcript(ds, caller.call_sid)
    assert [text for _, role, text in stored if role == "caller"] == lines  # whole, in order, no duplicate
    assert [seq for seq, _, _ in stored] == list(range(1, len(stored) + 1))
    assert [t["text"] for t in session.transcript] == [text for _, _, text in stored]


def _booking_day() -> str:
    return (datetime.now(TZ) + timedelta(days=3)).date().isoformat()


async def test_postgres_cut_while_a_booking_is_written_and_while_transcripts_flush(data_stack: DataStack) -> None:
    ds = data_stack
    args = {"service": "haircut", "date": _booking_day(), "time": "15:00", "customer_name": "Ann Lee",
            "callback_number": ""}
    oa = ds.stack.openai
    oa.script(ToolCall("transfer_to_booking"), ToolCall("book_appointment", args), "Shall I book that?")
    async with ds.stack.call(tenant_id=str(ds.tenant.tenant_id)) as caller:
        await caller.wait_for_agent(since=0)
        await _turn(caller, "A haircut please my name is Ann Lee")
        # Postgres goes away as the caller says yes (the write), and comes back a moment later.
        oa.script(ToolCall("book_appointment", args), "Sorry, I could not save that just now. Shall I try again?")
        await ds.postgres.stop()

        async def restore() -> None:
            await asyncio.sleep(1.0)
            await ds.postgres.start()

        restoring = asyncio.create_task(restore())
        await _turn(caller, "Yes please")
        await restoring
        session = ds.stack.session(caller)
        assert session is not None
        if not await bookings.list_bookings(ds.data.db, ds.tenant.tenant_id, include_cancelled=True):
            # The write failed while Postgres was away, and the agent was told so (not told it booked).
            tool_says = [m["content"] for m in oa.requests[-1]["messages"] if m.get("role") == "tool"]
            assert '"status": "error"' in tool_says[-1] or '"status":"error"' in tool_says[-1], tool_says
            # Postgres is back; the confirmation gate wants a fresh read-back and a fresh yes.
            oa.script(ToolCall("book_appointment", args), "Shall I book that?")
            await _turn(caller, "Please try again")
            oa.script(ToolCall("book_appointment", args), "You're all booked.")
            await _turn(caller, "Yes")
        # Postgres away again while the call ends: the transcript waits, then the periodic flush writes it.
        await ds.postgres.stop()
    await wait_until(lambda: caller.call_sid not in ds.data.recorder._writers, timeout_s=10)
    await ds.postgres.start()
    await ds.data.recorder.transcripts.flush_pending()
    rows = await bookings.list_bookings(ds.data.db, ds.tenant.tenant_id, include_cancelled=True)
    assert [(r.customer_name, r.call_sid) for r in rows] == [("Ann Lee", caller.call_sid)]  # exactly one
    stored = await _transcript(ds, caller.call_sid)
    assert [text for _, _, text in stored] == [t["text"] for t in session.transcript]  # whole, no duplicate
    assert [seq for seq, _, _ in stored] == list(range(1, len(stored) + 1))
