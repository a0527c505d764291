"""Every log line of a full call, at DEBUG and from every library, is one JSON object, carries the
call's identity where the call wrote it, and holds none of the configured secrets and no audio."""

from __future__ import annotations

import base64
import io
import json
import logging

from shared.structured_logging import JsonFormatter
from tests.e2e.observability_support import SECRETS, secret_fakes  # noqa: F401 (fixture)
from tests.e2e.test_observability import ObservedStack, observed, scripted_call  # noqa: F401 (fixture)


async def test_logs_of_a_full_call_hold_no_secret_and_no_audio(observed: ObservedStack) -> None:  # noqa: F811
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # the most a misconfigured service could write
    try:
        session = await scripted_call(observed)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

    lines = captured.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]  # one JSON object per line
    assert len(entries) > 20
    text = captured.getvalue() + "\n".join(observed.emf_lines)
    assert [secret for secret in SECRETS if secret in text] == []
    token = next(p for p in [observed.stack.calls[0].custom_parameters.get("stream_token", "")] if p)
    assert token not in text  # the signed stream token is a bearer credential for the call

    # No audio: not one frame of what the agent said.
    agent_audio = bytes(observed.stack.calls[0].recording.agent)
    frame = next(agent_audio[i:i + 160] for i in range(0, len(agent_audio), 160)
                 if len(set(agent_audio[i:i + 160])) > 8)
    assert base64.b64encode(frame).decode() not in text

    call_lines = [e for e in entries if e["logger"].startswith("voice_agent.") and e.get("call_sid")]
    assert any(e["message"] == "turn complete" and e.get("turn") == 2 for e in call_lines)
    assert {e["tenant_id"] for e in call_lines} == {"acme"}
    assert {e["call_sid"] for e in call_lines} == {session.call.call_sid}
