"""Per-turn latency: the figures an operator reads to know how the call felt.

All times are `time.monotonic()` seconds; durations are reported in milliseconds.
- stt_ms: caller speech end (last voiced frame) -> final transcript
- llm_ttft_ms: agent run start -> first text delta
- tts_ttfb_ms: first sentence sent to TTS -> first audio byte
- voice_to_voice_ms: caller speech end -> first reply frame sent to Twilio
- preemptive: whether the agent had already started on the words (streaming_service/preemptive_reply.py)
- draft_after_quiet_ms: for a preemptive hit, how long the caller had been quiet (in audio) when it started
- drafts_discarded: drafts the caller's later words outran (a pause mid-sentence): model runs paid for, unused
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("voice_agent.turns")


def _ms(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) * 1000, 1)


@dataclass
class TurnMetrics:
    turn: int
    user_text: str = ""
    speech_end_at: float | None = None
    transcript_at: float | None = None
    agent_started_at: float | None = None
    first_token_at: float | None = None
    tts_started_at: float | None = None
    tts_first_byte_at: float | None = None
    first_frame_sent_at: float | None = None
    barge_in: bool = False
    preemptive: str | None = None  # "hit": answered by its preemptive draft; "miss": drafts discarded
    draft_after_quiet_ms: int | None = None  # a hit: the caller's pause (audio) when the agent started on it
    drafts_discarded: int = 0
    errors: list[str] = field(default_factory=list)

    def mark_first_token(self, now: float) -> None:
        if self.first_token_at is None:
            self.first_token_at = now

    def mark_tts_start(self, now: float) -> None:
        if self.tts_started_at is None:
            self.tts_started_at = now

    def mark_tts_first_byte(self, now: float) -> None:
        if self.tts_first_byte_at is None:
            self.tts_first_byte_at = now

    def mark_first_frame(self, now: float) -> None:
        if self.first_frame_sent_at is None:
            self.first_frame_sent_at = now

    def summary(self) -> dict[str, Any]:
        return {
            "turn": self.turn,
            "stt_ms": _ms(self.speech_end_at, self.transcript_at),
            "llm_ttft_ms": _ms(self.agent_started_at, self.first_token_at),
            "tts_ttfb_ms": _ms(self.tts_started_at, self.tts_first_byte_at),
            "voice_to_voice_ms": _ms(self.speech_end_at, self.first_frame_sent_at),
            "barge_in": self.barge_in,
            "preemptive": self.preemptive,
            # How long before the final transcript the agent had started on the words (a preemptive hit).
            "agent_lead_ms": _ms(self.agent_started_at, self.transcript_at) if self.preemptive == "hit" else None,
            "draft_after_quiet_ms": self.draft_after_quiet_ms,
            "drafts_discarded": self.drafts_discarded,
            "errors": list(self.errors),
        }

    def log(self) -> dict[str, Any]:
        summary = self.summary()
        log.info("turn complete", extra={"metrics": summary})
        return summary
