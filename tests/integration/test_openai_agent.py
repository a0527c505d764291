"""OpenAIAgentRuntime through the real Agents SDK and `openai` client against the fake over a socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from shared.settings import Settings
from streaming_service.engines.base import (
    AgentEvent,
    AgentEventKind,
    CallContext,
    Conversation,
    EngineError,
)
from streaming_service.engines.openai_agent import OpenAIAgentRuntime
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.stop()


def make_runtime(fake: FakeOpenAI, timeout_s: float = 5.0) -> OpenAIAgentRuntime:
    return OpenAIAgentRuntime(Settings(
        openai_api_key=SecretStr("sk-test"), openai_base_url=fake.base_url,
        openai_model="fake-model", openai_timeout_s=timeout_s,
    ))


@pytest.fixture
async def runtime(fake: FakeOpenAI) -> AsyncIterator[OpenAIAgentRuntime]:
    engine = make_runtime(fake)
    yield engine
    await engine.aclose()


def new_call(**tenant_settings: object) -> CallContext:
    # These tests speak to the general agent directly (calls themselves start at triage).
    return CallContext(call_sid="CA1", stream_sid="MZ1", tenant_id="t1", tenant_settings=dict(tenant_settings),
                       current_agent="general")


async def turn(runtime: OpenAIAgentRuntime, call: CallContext, conv: Conversation, text: str
               ) -> list[AgentEvent]:
    return [event async for event in runtime.run_turn(call, conv, text)]


def spoken(events: list[AgentEvent]) -> str:
    return "".join(e.text for e in events if e.kind is AgentEventKind.TEXT_DELTA)


async def test_multi_turn_history_grows_and_is_sent(fake: FakeOpenAI, runtime: OpenAIAgentRuntime) -> None:
    call, conv = new_call(), Conversation()

    first = await turn(runtime, call, conv, "I need a table")
    second = await turn(runtime, call, conv, "For two people")

    assert spoken(first) == "You said: I need a table. What else can I do for you?"
    assert spoken(second) == "You said: For two people. What else can I do for you?"
    assert [item.get("role") for item in conv.items] == ["user", "assistant", "user", "assistant"]
    assert conv.last_assistant_text() == spoken(second)
    # The second request carried the whole first turn.
    messages = fake.requests[1]["messages"]
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", "I need a table"), ("assistant", spoken(first)), ("user", "For two people")]
    assert call.current_agent == "general"
    assert call.outcome.action == "continue"


async def test_text_streams_in_several_deltas(fake: FakeOpenAI, runtime: OpenAIAgentRuntime) -> None:
    fake.inter_token_delay_s = 0.001
    fake.script("Sure. We are open from nine until five, Monday to Friday.")
    events = await turn(runtime, new_call(), Conversation(), "When are you open?")
    deltas = [e for e in events if e.kind is AgentEventKind.TEXT_DELTA]
    assert len(deltas) > 5
    assert spoken(events) == "Sure. We are open from nine until five, Monday to Friday."


async def test_request_has_voice_instructions_tools_and_model(
    fake: FakeOpenAI, runtime: OpenAIAgentRuntime
) -> None:
    call = new_call(prompt="You are the receptionist at Luigi's.", greeting="Ciao, Luigi's!")
    await turn(runtime, call, Conversation(), "Hello")

    body = fake.requests[0]
    assert body["model"] == "fake-model" and body["stream"] is True
    system = fake.system_prompts[0]
    assert system.startswith("You are the receptionist at Luigi's.")
    assert "Ciao, Luigi's!" in system and "markdown" in system
    # The general agent's tools and handoffs (streaming_service/agents); the call tools are on every agent.
    assert {t["function"]["name"] for t in body["tools"]} == {
        "end_call", "transfer_to_human", "business_info", "transfer_to_triage", "transfer_to_booking"}
    assert fake.headers[0]["Authorization"] == "Bearer sk-test"


async def test_end_call_tool_hangs_up_after_goodbye(fake: FakeOpenAI, runtime: OpenAIAgentRuntime) -> None:
    fake.script(ToolCall("end_call"))  # no second step: end_call stops the run (StopAtTools)
    call, conv = new_call(), Conversation()
    events = await turn(runtime, call, conv, "That's all, bye")

    assert call.outcome.action == "hangup"
    kinds = [e.kind for e in events]
    assert kinds.index(AgentEventKind.TOOL_CALL) < kinds.index(AgentEventKind.TOOL_RESULT)
    tool_call = next(e for e in events if e.kind is AgentEventKind.TOOL_CALL)
    tool_result = next(e for e in events if e.kind is AgentEventKind.TOOL_RESULT)
    assert tool_call.data["name"] == tool_result.data["name"] == "end_call"
    assert spoken(events) == "Thanks for calling. Goodbye!"  # the tool's own line
    assert len(fake.requests) == 1  # no model round trip after end_call
    # History holds the call, its output and the goodbye, so a later turn stays coherent.
    assert [i.get("type", i.get("role")) for i in conv.items] == [
        "user", "function_call", "function_call_output", "assistant"]
    assert json.loads(json.dumps(conv.items)) == conv.items  # storable in Redis as JSON


async def test_transfer_to_human_uses_the_tenant_number(fake: FakeOpenAI, runtime: OpenAIAgentRuntime) -> None:
    fake.script(Reply(text="Let me connect you.", tool_calls=(ToolCall("transfer_to_human"),)))
    call = new_call(fallback_number="+15550100")
    events = await turn(runtime, call, Conversation(), "Can I speak to a person?")

    assert call.outcome.action == "transfer"
    assert call.outcome.transfer_to == "+15550100"
    assert spoken(events).startswith("Let me connect you.") and "connecting you" in spoken(events)
    assert len(fake.requests) == 1  # the transfer ends the run: no round trip after it


async def test_transfer_without_a_number_says_no_one_is_available(
    fake: FakeOpenAI, runtime: OpenAIAgentRuntime
) -> None:
    fake.script(ToolCall("transfer_to_human"))
    call = new_call()
    events = await turn(runtime, call, Conversation(), "A human please")

    assert call.outcome.action == "continue"
    result = next(e for e in events if e.kind is AgentEventKind.TOOL_RESULT)
    assert "No one is available" in result.data["output"]
    assert spoken(events).startswith("No one is available")


async def test_one_server_error_is_retried(fake: FakeOpenAI, runtime: OpenAIAgentRuntime) -> None:
    fake.fail_next(500)
    events = await turn(runtime, new_call(), Conversation(), "Hello")
    assert spoken(events).startswith("You said: Hello")
    assert len(fake.requests) == 2


async def test_two_server_errors_are_an_engine_error(fake: FakeOpenAI, runtime: OpenAIAgentRuntime) -> None:
    fake.fail_next(500)
    fake.fail_next(500)
    conv = Conversation()
    with pytest.raises(EngineError) as caught:
        await turn(runtime, new_call(), conv, "Hello")
    assert caught.value.vendor == "openai"
    assert "sk-test" not in str(caught.value)
    assert len(fake.requests) == 2  # the first attempt and exactly one retry
    assert conv.items == [{"role": "user", "content": "Hello"}]


async def test_a_hanging_server_is_an_engine_error(fake: FakeOpenAI) -> None:
    runtime = make_runtime(fake, timeout_s=0.3)
    fake.hang_next()
    fake.hang_next()  # the retry would hang too
    try:
        with pytest.raises(EngineError, match="no response"):
            await turn(runtime, new_call(), Conversation(), "Hello")
    finally:
        await runtime.aclose()


async def test_stream_cut_mid_sentence_is_an_engine_error(fake: FakeOpenAI, runtime: OpenAIAgentRuntime) -> None:
    fake.script("This answer will never be finished by the server.")
    fake.cut_next_after_deltas(3)
    received: list[AgentEvent] = []
    with pytest.raises(EngineError, match="openai"):
        async for event in runtime.run_turn(new_call(), Conversation(), "Tell me"):
            received.append(event)
    assert spoken(received) in ("", "This answer will ")  # never the whole sentence


async def test_malformed_tool_call_is_an_engine_error(fake: FakeOpenAI, runtime: OpenAIAgentRuntime) -> None:
    fake.malformed_tool_call_next()
    with pytest.raises(EngineError, match="ModelBehaviorError"):
        await turn(runtime, new_call(), Conversation(), "Book me in")


async def test_cancellation_mid_run_leaves_a_sane_conversation(
    fake: FakeOpenAI, runtime: OpenAIAgentRuntime
) -> None:
    call, conv = new_call(), Conversation()
    await turn(runtime, call, conv, "First question")

    fake.inter_token_delay_s = 0.05
    fake.script("A long answer that the caller interrupts before it is anywhere near finished.")
    first_delta = asyncio.Event()

    async def consume() -> None:
        async for event in runtime.run_turn(call, conv, "Second question"):
            if event.kind is AgentEventKind.TEXT_DELTA:
                first_delta.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_delta.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(fake.client_disconnected.wait(), 5)  # the model request really stopped

    # The user item is kept; the session appends what was actually heard.
    assert [i.get("role") for i in conv.items] == ["user", "assistant", "user"]
    assert conv.items[-1] == {"role": "user", "content": "Second question"}
    conv.add_assistant("A long answer")
    fake.inter_token_delay_s = 0.0
    events = await turn(runtime, call, conv, "Third question")
    assert spoken(events) == "You said: Third question. What else can I do for you?"
    assert [m["role"] for m in fake.requests[-1]["messages"]] == [
        "system", "user", "assistant", "user", "assistant", "user"]


async def test_closing_the_iterator_early_cancels_the_run(fake: FakeOpenAI, runtime: OpenAIAgentRuntime) -> None:
    fake.inter_token_delay_s = 0.05
    fake.script("One two three four five six seven eight nine ten.")
    conv = Conversation()
    stream = runtime.run_turn(new_call(), conv, "Count")
    async for event in stream:
        if event.kind is AgentEventKind.TEXT_DELTA:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert conv.items == [{"role": "user", "content": "Count"}]
    await asyncio.wait_for(fake.client_disconnected.wait(), 5)


def test_missing_key_is_refused() -> None:
    with pytest.raises(EngineError, match="OPENAI_API_KEY"):
        OpenAIAgentRuntime(Settings(openai_api_key=None, openai_base_url="http://127.0.0.1:9/v1"))


async def test_fake_also_answers_non_streamed_and_responses_requests(fake: FakeOpenAI) -> None:
    from agents import Agent, OpenAIChatCompletionsModel, OpenAIResponsesModel, RunConfig, Runner
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
    try:
        agent = Agent(name="plain", instructions="Be brief.",
                      model=OpenAIChatCompletionsModel(model="fake-model", openai_client=client))
        plain = await Runner.run(agent, "ping", run_config=RunConfig(tracing_disabled=True))
        assert plain.final_output == "You said: ping. What else can I do for you?"
        assert "stream" not in fake.requests[-1]

        fake.script("Pong from responses.")
        responses = Agent(name="r", instructions="Be brief.",
                          model=OpenAIResponsesModel(model="fake-model", openai_client=client))
        streamed = Runner.run_streamed(responses, "ping", run_config=RunConfig(tracing_disabled=True))
        async for _ in streamed.stream_events():
            pass
        assert streamed.final_output == "Pong from responses."
    finally:
        await client.close()
