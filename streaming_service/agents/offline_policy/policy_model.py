"""The offline policy as an Agents SDK `Model`: a deterministic, rule-based stand-in for an LLM.

It is not a language model. It reads the history the SDK passes in, re-derives the dialogue state
(`dialogue_state.py`), picks one action with fixed rules (`decisions.py`) and answers in the SDK's
own output items: a message, or a function call to a tool or handoff. Because it sits behind the
`Model` interface, the very same agents, handoffs, tools and database writes run on it as on OpenAI.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from agents import Handoff, Model, ModelResponse, ModelSettings, ModelTracing, Tool, Usage
from agents.agent_output import AgentOutputSchemaBase
from agents.items import TResponseInputItem, TResponseOutputItem, TResponseStreamEvent
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam

from streaming_service.agents.offline_policy.decisions import Action, CallTool, Say, decide
from streaming_service.agents.offline_policy.dialogue_state import replay

MODEL_NAME = "offline-rule-policy"


class OfflinePolicyModel(Model):
    """One per call: configured with the tenant's timezone and services, and a clock (fixed in tests)."""

    def __init__(self, timezone: ZoneInfo, services: list[str] | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.timezone = timezone
        self.services = list(services or [])
        self._clock = clock or (lambda: datetime.now(timezone))

    def next_action(self, input: str | list[TResponseInputItem], tools: list[Tool], handoffs: list[Handoff]
                    ) -> Action:
        items: list[dict[str, Any]] = ([{"role": "user", "content": input}] if isinstance(input, str)
                                       else [dict(i) for i in input])
        now = self._clock().astimezone(self.timezone)
        state = replay(items, now, self.services)
        return decide(state, {str(getattr(t, "name", "")) for t in tools}, {h.tool_name for h in handoffs},
                      now.date(), self.services)

    def _output(self, action: Action, input: str | list[TResponseInputItem]) -> TResponseOutputItem:
        serial = 1 if isinstance(input, str) else len(input) + 1  # deterministic, unique within the call
        if isinstance(action, CallTool):
            return ResponseFunctionToolCall(type="function_call", id=f"fc_policy_{serial}",
                                            call_id=f"call_policy_{serial}", name=action.name,
                                            arguments=json.dumps(action.arguments), status="completed")
        assert isinstance(action, Say)
        return ResponseOutputMessage(id=f"msg_policy_{serial}", type="message", role="assistant",
                                     status="completed", content=[ResponseOutputText(
                                         type="output_text", text=action.text, annotations=[])])

    async def get_response(
        self, system_instructions: str | None, input: str | list[TResponseInputItem],
        model_settings: ModelSettings, tools: list[Tool], output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff], tracing: ModelTracing, *, previous_response_id: str | None,
        conversation_id: str | None, prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        output = self._output(self.next_action(input, tools, handoffs), input)
        return ModelResponse(output=[output], usage=Usage(), response_id=None)

    async def stream_response(
        self, system_instructions: str | None, input: str | list[TResponseInputItem],
        model_settings: ModelSettings, tools: list[Tool], output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff], tracing: ModelTracing, *, previous_response_id: str | None,
        conversation_id: str | None, prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        action = self.next_action(input, tools, handoffs)
        output = self._output(action, input)
        sequence = 0
        if isinstance(action, Say):
            # Sentence by sentence, so the call session can start speaking before the reply is complete.
            for sentence in re.findall(r"[^.!?]+[.!?]*\s*", action.text) or [action.text]:
                yield ResponseTextDeltaEvent(type="response.output_text.delta", item_id=output.id or "",
                                             output_index=0, content_index=0, delta=sentence, logprobs=[],
                                             sequence_number=sequence)
                sequence += 1
        response = Response(id=f"resp_{output.id}", object="response", created_at=0, model=MODEL_NAME,
                            output=[output], parallel_tool_calls=False, tool_choice="auto", tools=[])
        yield ResponseCompletedEvent(type="response.completed", response=response, sequence_number=sequence)
