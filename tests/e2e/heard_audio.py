"""What a caller heard of a reply, frame by frame, against what the reply's audio was.

The fake ElevenLabs voice is deterministic per text, so the audio of a reply is known exactly from the
texts it was asked to say. A reply that survived an interruption was heard as `E[:cut] + E[resume:]`:
the frames before the `clear`, then the rest from the point the replay began. The gap is how much was
replayed (cut > resume) or lost (resume > cut).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.audio import mulaw
from tests.fakes.elevenlabs_server import speech_like_ulaw

SILENT_FRAME = mulaw.silence(mulaw.FRAME_MS)


def expected_frames(texts: Sequence[str]) -> list[bytes]:
    """The frames the service sends for these sentences (each padded to whole frames)."""
    return [f for text in texts for f in mulaw.frames(speech_like_ulaw(text)) if f != SILENT_FRAME]


def played_frames(agent_recording: bytes | bytearray) -> list[bytes]:
    """The agent side as played, without the silence between pieces of audio."""
    return [f for f in mulaw.frames(bytes(agent_recording)) if f != SILENT_FRAME]


@dataclass(frozen=True)
class HeardReply:
    complete: bool  # every frame of the reply's end was heard, in order, once
    cut_frame: int  # frames heard before the first divergence (len(expected) if none)
    gap_frames: int  # > 0: frames replayed, < 0: frames lost, at the point of divergence

    @property
    def gap_ms(self) -> int:
        return abs(self.gap_frames) * mulaw.FRAME_MS


def compare(played: Sequence[bytes], expected: Sequence[bytes]) -> HeardReply:
    """Is `played` = expected[:cut] + expected[resume:] (one jump at most), and by how much did it jump?"""
    cut = 0
    while cut < min(len(played), len(expected)) and played[cut] == expected[cut]:
        cut += 1
    if cut == len(expected):
        return HeardReply(complete=len(played) == len(expected), cut_frame=cut, gap_frames=len(played) - cut)
    rest = len(played) - cut
    resume = len(expected) - rest
    complete = 0 <= resume <= len(expected) and list(played[cut:]) == list(expected[resume:]) and rest > 0
    return HeardReply(complete=complete, cut_frame=cut, gap_frames=cut - resume)
