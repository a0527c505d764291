"""Every TwiML document the webhook answers with, built with twilio's VoiceResponse. No I/O."""

from __future__ import annotations

from dataclasses import dataclass

from twilio.twiml.voice_response import Connect, VoiceResponse

UNKNOWN_NUMBER_TEXT = "Sorry, this number is not in service. Goodbye."
APOLOGY_TEXT = "Sorry, we are having technical difficulties."
APOLOGY_TRANSFER_TEXT = "Sorry, we are having technical difficulties. Let me connect you to someone."


@dataclass(frozen=True)
class StreamParameters:
    """What the streaming service needs about the call; returned to it in `start.customParameters`."""

    tenant_id: str
    stream_token: str
    caller: str
    dialled: str
    trace_header: str = ""


def connect_stream(stream_url: str, after_stream_url: str, params: StreamParameters) -> str:
    """`<Connect action=…><Stream url=wss://…>` with the call's parameters (no query string: Twilio
    rejects one in a Stream URL)."""
    response = VoiceResponse()
    connect = Connect(action=after_stream_url, method="POST")
    stream = connect.stream(url=stream_url)
    for name, value in (("tenant_id", params.tenant_id), ("stream_token", params.stream_token),
                        ("caller", params.caller), ("dialled", params.dialled),
                        ("trace_header", params.trace_header)):
        if value:
            stream.parameter(name=name, value=value)
    response.append(connect)
    return str(response)


def unknown_number() -> str:
    response = VoiceResponse()
    response.say(UNKNOWN_NUMBER_TEXT)
    response.hangup()
    return str(response)


def apology(fallback_number: str | None) -> str:
    """The answer to any internal failure: a short apology, then a human when the tenant has one."""
    response = VoiceResponse()
    if fallback_number:
        response.say(APOLOGY_TRANSFER_TEXT)
        response.dial(fallback_number)
    else:
        response.say(APOLOGY_TEXT)
        response.hangup()
    return str(response)


def dial(number: str) -> str:
    response = VoiceResponse()
    response.dial(number)
    return str(response)


def hangup() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


def empty() -> str:
    return str(VoiceResponse())
