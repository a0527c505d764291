"""The three seams of a call: speech to text, the agent, text to speech.

Each has a vendor implementation (Deepgram, OpenAI Agents, ElevenLabs) and an offline one
(pocketsphinx, a rule-based policy, espeak-ng). The call session only sees these types.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class EngineError(RuntimeError):
    """A vendor or engine failed; the session apologises and carries on (or falls back)."""

    def __init__(self, vendor: str, message: str) -> None:
        super().__init__(f"{vendor}: {message}")
        self.vendor = vendor


class VendorCapacityError(EngineError):
    """The vendor account is at its concurrency limit (ours or the vendor's 429): not an outage."""


# --- speech to text --------------------------------------------------------------------------

class TranscriptKind(Enum):
    SPEECH_STARTED = "speech_started"
    INTERIM = "interim"
    FINAL = "final"  # this stretch of audio is final; speech_final says the turn may be over
    UTTERANCE_END = "utterance_end"
    DELAYED = "delayed"  # the recogniser is not hearing the caller for now (an outage being ridden out)


@dataclass(frozen=True)
class TranscriptEvent:
    kind: TranscriptKind
    text: str = ""
    speech_final: bool = False
    from_finalize: bool = False  # a FINAL asked for with `finalize()`: every word heard so far is in


class SpeechToTextStream(abc.ABC):
    """One live recognition stream for one call."""

    @abc.abstractmethod
    async def send_audio(self, ulaw: bytes) -> None:
        """Push mu-law 8 kHz bytes. Never blocks on the network for long; buffers instead."""

    async def finalize(self) -> bool:
        """The caller went quiet: ask for the final of what was heard so far now, rather than when the
        recogniser's own endpointing decides. True if this recogniser can (its FINAL then says
        `from_finalize`); the default cannot."""
        return False

    def words_awaited(self, awaited: bool) -> None:  # noqa: B027 - deliberately optional: most recognisers do not batch
        """Whether something waits on the caller's words as they are spoken (the agent is talking, and a
        barge-in is judged by them). Told before each `send_audio`; a recogniser that sends speech in batches
        sends each frame at once while it is True. Nothing to do by default."""

    @abc.abstractmethod
    def events(self) -> AsyncIterator[TranscriptEvent]:
        """Transcript events until the stream is closed."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush and close; idempotent."""


class SpeechToText(abc.ABC):
    name: str = "stt"

    @abc.abstractmethod
    async def open_stream(self, call_sid: str) -> SpeechToTextStream: ...

    async def warm_up(self) -> None:  # noqa: B027 - deliberately optional: most recognisers have nothing to load
        """Pay one-off loading costs at start-up, not in a call (nothing to pay by default)."""


# --- text to speech --------------------------------------------------------------------------

class TextToSpeech(abc.ABC):
    name: str = "tts"

    @abc.abstractmethod
    def synthesize(self, text: str, voice_id: str | None = None, *, previous_text: str = "",
                   next_text: str = "") -> AsyncIterator[bytes]:
        """mu-law 8 kHz chunks (any size) for `text`, as soon as they exist.

        `previous_text` / `next_text` are the reply's neighbouring text, so a voice that can stitch
        requests keeps one prosody across pieces (ElevenLabs); others ignore them.

        Cancellation is the caller's: cancel the consuming task (or `aclose()` the iterator) and the
        implementation stops its request. Raises EngineError on vendor failure.
        """

    async def aclose(self) -> None:
        """Release what the voice holds across calls (a vendor's connection pool)."""
        return None


# --- agent -----------------------------------------------------------------------------------

class AgentEventKind(Enum):
    TEXT_DELTA = "text_delta"
    TOOL_STARTED = "tool_started"  # the model began a tool or handoff call (its name only, arguments to come)
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    HANDOFF = "handoff"


@dataclass(frozen=True)
class AgentEvent:
    kind: AgentEventKind
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class CallOutcome:
    """What the call should do when the stream closes (read by the `<Connect action>` callback)."""

    action: str = "continue"  # continue | hangup | transfer
    transfer_to: str = ""
    reason: str = ""


@dataclass
class CallContext:
    """What an agent may know about and change in the call it is serving."""

    call_sid: str
    stream_sid: str
    tenant_id: str
    caller_number: str = ""
    dialled_number: str = ""
    tenant_settings: dict[str, Any] = field(default_factory=dict)
    outcome: CallOutcome = field(default_factory=CallOutcome)
    current_agent: str = "triage"  # every call starts at triage, which hands off to booking or general

    def end_call(self, reason: str = "agent ended the call") -> None:
        self.outcome = CallOutcome(action="hangup", reason=reason)

    def transfer(self, number: str, reason: str = "caller asked for a person") -> None:
        self.outcome = CallOutcome(action="transfer", transfer_to=number, reason=reason)

    @property
    def ending(self) -> bool:
        return self.outcome.action != "continue"


class Conversation:
    """The call's history as Responses-API input items (the Agents SDK's own format).

    After a barge-in the last assistant message is cut down to what the caller heard, so the agent
    never believes it said what was never played.
    """

    def __init__(self, items: list[dict[str, Any]] | None = None) -> None:
        self.items: list[dict[str, Any]] = list(items or [])

    def add_user(self, text: str) -> None:
        self.items.append({"role": "user", "content": text})

    def add_assistant(self, text: str) -> None:
        self.items.append({"role": "assistant", "content": text})

    def replace(self, items: list[dict[str, Any]]) -> None:
        self.items = list(items)

    def last_assistant_text(self) -> str | None:
        for item in reversed(self.items):
            if item.get("role") == "assistant":
                return _message_text(item)
        return None

    def truncate_last_assistant(self, heard: str) -> None:
        for index in range(len(self.items) - 1, -1, -1):
            if self.items[index].get("role") == "assistant":
                if heard.strip():
                    self.items[index] = {"role": "assistant", "content": heard.strip()}
                else:
                    del self.items[index]
                return


def _message_text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


class AgentRuntime(abc.ABC):
    name: str = "agent"

    @abc.abstractmethod
    def run_turn(self, call: CallContext, conversation: Conversation, user_text: str
                 ) -> AsyncIterator[AgentEvent]:
        """Run one caller turn: append the user text to `conversation`, stream events, and leave
        the full turn (assistant text, tool items) in `conversation` when the iterator completes.

        Tools act on `call` (e.g. `call.end_call()`). Cancelling the consuming task cancels the run.
        Raises EngineError on vendor failure.
        """

    async def prepare_call(self, call: CallContext) -> None:
        """The call has started (the greeting is playing): open what its turns will need, e.g. the
        tenant's MCP session, so the first turn does not pay for it. Failures are the first turn's."""
        return None

    async def release_call(self, call: CallContext) -> None:
        """The call is over: release what the runtime holds for it (e.g. an MCP session)."""
        return None
