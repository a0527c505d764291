"""A fake OpenAI-compatible server speaking Chat Completions (SSE and JSON) over a real socket.

Tests script replies (`script("Hi!", ToolCall("end_call"), "Goodbye!")`, one step per model call);
unscripted calls echo the last user message, so multi-turn conversations need no scripting. Every
request body is recorded (tests inspect `messages`, `tools` and the system prompt), failures included.
A minimal `POST /v1/responses` (text deltas, function calls, `response.completed`) is there too.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)  # a str is sent verbatim

    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass(frozen=True)
class Reply:
    """One model response: text, tool calls, or both."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


Step = str | ToolCall | Reply | Sequence[ToolCall]

# A call to a tool the agent does not have, with arguments cut off mid-JSON.
MALFORMED_TOOL_CALL = ToolCall("lookup_reservation", '{"date": "tomor')


def _as_reply(step: Step) -> Reply:
    if isinstance(step, Reply):
        return step
    if isinstance(step, str):
        return Reply(text=step)
    if isinstance(step, ToolCall):
        return Reply(tool_calls=(step,))
    return Reply(tool_calls=tuple(step))


def _pieces(text: str) -> list[str]:
    """Word-sized deltas, as a real model streams them."""
    return re.findall(r"\S+\s*|\s+", text) or [text]


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


@dataclass
class FakeOpenAI:
    api_key: str = "sk-test"
    first_token_delay_s: float = 0.0
    inter_token_delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)  # every body, failed ones too
    headers: list[dict[str, str]] = field(default_factory=list)
    other_keys: set[str] = field(default_factory=set)  # more accounts' keys this fake accepts (tenants' own)
    client_disconnects: int = 0  # streams the client abandoned (a cancelled run)
    # Chunks without `object` and `created`, as some OpenAI-compatible servers send them.
    loose_chunks: bool = False
    chunks: list[dict[str, Any]] = field(default_factory=list)  # every streamed chat chunk sent

    def __post_init__(self) -> None:
        self._script: list[Reply] = []
        self._injections: list[tuple[str, int]] = []  # consumed one per request, in order
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._release = asyncio.Event()  # frees hung handlers on stop()
        self.client_disconnected = asyncio.Event()

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/v1/responses", self._responses)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])  # port 0 above: the OS picked a free one

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    # --- scripting and failure injection ----------------------------------------------------

    def script(self, *steps: Step) -> None:
        self._script.extend(_as_reply(step) for step in steps)

    def fail_next(self, status: int = 500) -> None:
        """The next request gets `status`; call twice to fail two requests (e.g. a retry)."""
        self._injections.append(("fail", status))

    def hang_next(self) -> None:
        """The next request never gets an answer (until the client gives up or the fake stops)."""
        self._injections.append(("hang", 0))

    def cut_next_after_deltas(self, n: int) -> None:
        """The next stream sends `n` chunks, then the connection drops."""
        self._injections.append(("cut", n))

    def malformed_tool_call_next(self) -> None:
        self._injections.append(("malformed", 0))

    @property
    def system_prompts(self) -> list[str]:
        return [_message_text(m) for body in self.requests for m in body.get("messages", [])
                if m.get("role") in ("system", "developer")]

    # --- shared request handling ------------------------------------------------------------

    async def _admit(self, request: web.Request) -> tuple[dict[str, Any], str, int, web.Response | None]:
        """Record the request and apply auth and injected failures: (body, injection, arg, early answer)."""
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if request.headers.get("Authorization") not in {f"Bearer {k}" for k in (self.api_key, *self.other_keys)}:
            return body, "", 0, _error(401, "invalid_api_key", "Incorrect API key provided.")
        kind, arg = self._injections.pop(0) if self._injections else ("", 0)
        if kind == "fail":
            return body, kind, arg, _error(arg, "server_error", "Injected failure.")
        if kind == "hang":
            await self._release.wait()
            return body, kind, arg, _error(503, "server_error", "Fake stopped.")
        return body, kind, arg, None

    def _next_reply(self, kind: str, last_user: str) -> Reply:
        if kind == "malformed":
            return Reply(tool_calls=(MALFORMED_TOOL_CALL,))
        if self._script:
            return self._script.pop(0)
        return Reply(text=f"You said: {last_user}. What else can I do for you?")

    async def _send_events(self, request: web.Request, events: list[str], cut_after: int | None,
                           arrived: float, first_token: int = 0) -> web.StreamResponse:
        """`events` from index `first_token` on are the model's tokens: the first `first_token_delay_s` after
        the request arrived, the next ones `inter_token_delay_s` apart; what comes before them (the role
        chunk, which carries no token) goes with the first."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        try:
            for index, event in enumerate(events):
                if cut_after is not None and index >= cut_after:
                    await asyncio.sleep(0.02)  # let what was sent arrive, then drop mid-body
                    assert request.transport is not None
                    request.transport.close()
                    return response
                # On the model's clock from the request's arrival: this fake's own work and the timer's
                # lateness never add to the delays it is set to play (a relative sleep per token drifted
                # ~1.5 ms a token).
                due = arrived + self.first_token_delay_s + max(0, index - first_token) * self.inter_token_delay_s
                await asyncio.sleep(max(0.0, due - loop.time()))
                await response.write(event.encode())
            await response.write_eof()
        except ConnectionError:  # the client went away (a cancelled run)
            self.client_disconnects += 1
            self.client_disconnected.set()
        return response

    # --- POST /v1/chat/completions ----------------------------------------------------------

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        arrived = asyncio.get_running_loop().time()
        body, kind, arg, early = await self._admit(request)
        if early is not None:
            return early
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        reply = self._next_reply(kind, _message_text(users[-1]) if users else "")
        calls = [(f"call_{next(self._ids)}", call) for call in reply.tool_calls]
        finish = "tool_calls" if calls else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
            if calls:
                message["tool_calls"] = [
                    {"id": cid, "type": "function",
                     "function": {"name": c.name, "arguments": c.arguments_json()}}
                    for cid, c in calls]
            return web.json_response({
                "id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion", "created": 0,
                "model": body.get("model", ""),
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            })
        chunk_id = f"chatcmpl-{next(self._ids)}"

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
            payload = {"id": chunk_id, "object": "chat.completion.chunk", "created": 0,
                       "model": body.get("model", ""),
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
            if self.loose_chunks:
                del payload["object"], payload["created"]
            self.chunks.append(payload)
            return f"data: {json.dumps(payload)}\n\n"

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in (_pieces(reply.text) if reply.text else [])]
        for index, (cid, call) in enumerate(calls):
            # id and name only on the first piece; arguments follow in fragments joined by index.
            events.append(chunk({"tool_calls": [{"index": index, "id": cid, "type": "function",
                                                 "function": {"name": call.name, "arguments": ""}}]}))
            args = call.arguments_json()
            half = len(args) // 2
            events += [chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
                       for part in (args[:half], args[half:]) if part]
        events += [chunk({}, finish), "data: [DONE]\n\n"]
        return await self._send_events(request, events, arg + 1 if kind == "cut" else None, arrived, first_token=1)

    # --- POST /v1/responses (minimal) -------------------------------------------------------

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        arrived = asyncio.get_running_loop().time()
        body, kind, arg, early = await self._admit(request)
        if early is not None:
            return early
        items = body.get("input", [])
        users = [i for i in items if isinstance(i, dict) and i.get("role") == "user"]
        last_user = body.get("input") if isinstance(items, str) else _message_text(users[-1]) if users else ""
        reply = self._next_reply(kind, str(last_user))
        msg_id = f"msg_{next(self._ids)}"
        output: list[dict[str, Any]] = []
        if reply.text:
            output.append({"type": "message", "id": msg_id, "role": "assistant", "status": "completed",
                           "content": [{"type": "output_text", "text": reply.text, "annotations": []}]})
        for call in reply.tool_calls:
            n = next(self._ids)
            output.append({"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}",
                           "name": call.name, "arguments": call.arguments_json(), "status": "completed"})
        response = {"id": f"resp_{next(self._ids)}", "object": "response", "created_at": 0,
                    "status": "completed", "model": body.get("model", ""), "output": output,
                    "parallel_tool_calls": False, "tool_choice": "auto", "tools": [],
                    "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
                              "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                              "output_tokens_details": {"reasoning_tokens": 0}}}
        if not body.get("stream"):
            return web.json_response(response)
        seq = itertools.count()

        def event(kind_: str, **data: Any) -> str:
            payload = {"type": kind_, "sequence_number": next(seq), **data}
            return f"event: {kind_}\ndata: {json.dumps(payload)}\n\n"

        events = [event("response.output_text.delta", item_id=msg_id, output_index=0, content_index=0,
                        delta=piece, logprobs=[]) for piece in (_pieces(reply.text) if reply.text else [])]
        events.append(event("response.completed", response=response))
        return await self._send_events(request, events, arg if kind == "cut" else None, arrived)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "server_error" if status >= 500 else "invalid_request_error",
                   "param": None, "code": code}}, status=status)
