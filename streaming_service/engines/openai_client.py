"""The OpenAI client the agents' Chat Completions model talks through: the request's messages and tools go out
as the Agents SDK made them.

The SDK hands `chat.completions.create` plain JSON (its converter's output, already dump-compatible). The
client still walks it against its TypedDicts before sending (`_utils._transform`): every message against each
of the six message types of the union, for aliases and formats these requests never use. That walk changes
nothing (tests/integration/test_agents_openai.py checks it on a conversation with a handoff and tool calls) and costs
about 0.25 ms a message, on every request: 3 ms at 12 messages, 12 ms at 42, 20 ms at 82, on the way to each
turn's first token, and as CPU. So the messages and tools travel in `extra_body`, which the client merges into
the JSON body unchanged; everything else still goes through `create` as before.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from openai import AsyncOpenAI, Omit, omit
from openai.resources.chat import AsyncChat, AsyncCompletions


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
