"""The demo's caller stops talking once the agent has said goodbye, even before the line goes dead."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from local.call_simulator import SimulatedCall
from local.demo import call_is_over
from streaming_service.engines.base import CallContext


def _session(call: CallContext) -> Any:
    return SimpleNamespace(call=call)


def test_the_caller_says_nothing_after_the_goodbye() -> None:
    caller = SimulatedCall("ws://127.0.0.1:1/twilio-stream", custom_parameters={})
    context = CallContext(call_sid=caller.call_sid, stream_sid=caller.stream_sid, tenant_id="t")
    assert not call_is_over(caller, _session(context))
    context.end_call("caller said goodbye")  # the stream is still open while the goodbye plays
    assert call_is_over(caller, _session(context))


def test_a_dead_line_is_over() -> None:
    caller = SimulatedCall("ws://127.0.0.1:1/twilio-stream", custom_parameters={})
    context = CallContext(call_sid=caller.call_sid, stream_sid=caller.stream_sid, tenant_id="t")
    caller.closed.set()
    assert call_is_over(caller, _session(context))
