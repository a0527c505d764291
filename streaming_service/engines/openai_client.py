"""The OpenAI client the agents' Chat Completions model talks through: the request's messages and tools go out
as the Agents SDK made them.

The SDK hands `chat.completions.create` plain JSON (its converter's output, already dump-compatible). The
client still walks it against its TypedDicts before sending (`_utils._transform`): every message against each
of the six message types of the union, for aliases and formats these requests never use. That walk changes
nothing (tests/integration/test_agents_openai.py checks it on a conversation with a handoff and tool calls) and costs
about 0.25 ms a message, on every request: 3 ms at 12 messages, 12 ms at 42, 20 ms at 82, on the way to each
turn's first token, and as CPU. So the messages and tools travel in `extra_body`, which the client merges into
the JSON body unchanged; everything else still goes through `create` as before.

Each streamed chunk (one a token) becomes a `ChatCompletionChunk`. Without strict response validation the client
builds it with its own pure-Python `construct_type` (about 96 us a chunk, 6 % of the service's CPU at 50 calls);
pydantic-core's validation of the same model takes 4 us. So a chunk is validated first, and one that does not
validate (an OpenAI-compatible server's looser shape) is still built leniently, as the client always did.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import pydantic
from openai import AsyncOpenAI, Omit, omit
from openai._models import validate_type
from openai.resources.chat import AsyncChat, AsyncCompletions
from openai.types.chat import ChatCompletionChunk


class _Completions(AsyncCompletions):
    async def create(self, *, messages: Any, tools: Any = omit, extra_body: Any = None,
                     **params: Any) -> Any:
        body = {**(extra_body or {}), "messages": messages}
        if not isinstance(tools, Omit):
            body["tools"] = tools
        return await super().create(messages=[], extra_body=body, **params)


class _Chat(AsyncChat):
    @cached_property
    def completions(self) -> AsyncCompletions:
        return _Completions(self._client)


class AgentsOpenAI(AsyncOpenAI):
    @cached_property
    def chat(self) -> AsyncChat:
        return _Chat(self)

    def _process_response_data(self, *, data: object, cast_to: Any, response: Any) -> Any:
        if cast_to is ChatCompletionChunk:
            try:
                return validate_type(type_=ChatCompletionChunk, value=data)
            except pydantic.ValidationError:
                pass  # not OpenAI's exact shape: the lenient construction below
        return super()._process_response_data(data=data, cast_to=cast_to, response=response)
