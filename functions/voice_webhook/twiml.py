"""Every TwiML document the webhook answers with, built with twilio's VoiceResponse. No I/O."""

from __future__ import annotations

from dataclasses import dataclass

from twilio.twiml.voice_response import Connect, VoiceResponse

UNKNOWN_NUMBER_TEXT = "Sorry, this number is not in service. Goodbye."
APOLOGY_TEXT = "Sorry, we are having technical difficulties."
APOLOGY_TRANSFER_TEXT = "Sorry, we are having technical difficulties. Let me connect you to someone."
HOLD_TEXT = "All of our lines are busy right now. Please hold, and we will be with you shortly."
HOLD_AGAIN_TEXT = "Thank you for holding."
BUSY_TEXT = "Sorry, all of our lines are busy right now. Please call again in a few minutes. Goodbye."
FORWARD_TEXT = "All of our lines are busy right now. Let me connect you to someone."


@dataclass(frozen=True)
class StreamParameters:
    """What the streaming service needs about the call; returned to it in `start.customParameters`."""

    tenant_id: str
    stream_token: str
    caller: str
    dialled: str
    trace_header: str = ""
    # "offline": the caller's vendors are at capacity; the service answers with the offline engines and
    # says so. "" = the normal engines.
    capacity_mode: str = ""


def connect_stream(stream_url: str, after_stream_url: str, params: StreamParameters) -> str:
    """`<Connect action=…><Stream url=wss://…>` with the call's parameters (no query string: Twilio
    rejects one in a Stream URL)."""
    response = VoiceResponse()
    connect = Connect(action=after_stream_url, method="POST")
    stream = connect.stream(url=stream_url)
    for name, value in (("tenant_id", params.tenant_id), ("stream_token", params.stream_token),
                        ("caller", params.caller), ("dialled", params.dialled),
                        ("trace_header", params.trace_header), ("capacity_mode", params.capacity_mode)):
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


def hold(redirect_url: str, *, first: bool, music_url: str, pause_s: int) -> str:
    """Hold audio, then back to the webhook (`redirect_url`) to try for room again."""
    response = VoiceResponse()
    if first:
        response.say(HOLD_TEXT)
    if music_url:
        response.play(music_url)
    else:  # no clip: a few seconds of quiet between spoken lines, never a long silence
        if not first:
            response.say(HOLD_AGAIN_TEXT)
        response.pause(length=max(1, pause_s))
    response.redirect(redirect_url, method="POST")
    return str(response)


def busy() -> str:
    """No room and nobody to forward to: an apology, then hang up (never a silent line or an error)."""
    response = VoiceResponse()
    response.say(BUSY_TEXT)
    response.hangup()
    return str(response)


def forward(number: str) -> str:
    response = VoiceResponse()
    response.say(FORWARD_TEXT)
    response.dial(number)
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
