"""Caller speech detection for barge-in: webrtcvad on 20 ms frames plus a minimum duration.

Echo, line clicks and short noises produce isolated voiced frames; only `min_speech_ms` of speech
(allowing one-frame dropouts) counts as the caller talking.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import webrtcvad

from shared.audio import mulaw

_FRAME_MS = mulaw.FRAME_MS
_MAX_GAP_FRAMES = 2  # voiced runs survive this many unvoiced frames
# webrtcvad keeps saying "speech" for ~80 ms after a burst (its hangover); frames that quiet are not
# the caller talking, so a click followed by silence cannot add up to a barge-in.
_MIN_RMS = 200
_BELOW_FLOOR = mulaw.codes_below(_MIN_RMS)


@dataclass(frozen=True)
class VadUpdate:
    speech_confirmed: bool  # the caller has now spoken for min_speech_ms (edge, fires once per run)
    speech_ended: bool  # a confirmed run just ended
    voiced: bool


# Every update there can be, made once: process() runs 50 times a second per call.
_UPDATES = {(c, e, v): VadUpdate(c, e, v) for c in (False, True) for e in (False, True) for v in (False, True)}


class CallerSpeechDetector:
    def __init__(self, aggressiveness: int = 2, min_speech_ms: int = 200,
                 end_silence_ms: int = 300) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._min_frames = max(1, min_speech_ms // _FRAME_MS)
        self._end_frames = max(1, end_silence_ms // _FRAME_MS)
        self._pending = b""
        self._run_frames = 0
        self._gap_frames = 0
        self._confirmed = False
        self.speaking = False
        self.run_started_at: float | None = None  # monotonic time of the first voiced frame of the run
        self.last_voiced_at: float | None = None  # monotonic arrival time of the last voiced frame
        self._frames_since_voiced = 0  # the caller's quiet since then, in audio (arrival times jitter)

    def process(self, ulaw: bytes, now: float | None = None) -> VadUpdate:
        """Feed inbound caller audio (any length); returns what changed with it."""
        now = time.monotonic() if now is None else now
        if not self._pending and len(ulaw) == mulaw.FRAME_BYTES:  # Twilio's 20 ms frame: no copies
            voiced = self._voiced(ulaw)
            return _UPDATES[(*self._step(voiced, now), voiced)]
        self._pending += ulaw
        confirmed = ended = voiced_any = False
        while len(self._pending) >= mulaw.FRAME_BYTES:
            frame, self._pending = self._pending[: mulaw.FRAME_BYTES], self._pending[mulaw.FRAME_BYTES :]
            voiced = self._voiced(frame)
            voiced_any |= voiced
            c, e = self._step(voiced, now)
            confirmed |= c
            ended |= e
        return _UPDATES[(confirmed, ended, voiced_any)]

    @property
    def quiet_ms(self) -> int:
        """Audio heard since the last voiced frame: how long the caller has been quiet, whenever the frames
        arrived (by the clock, the 6th quiet frame is 120 ms after the last voiced one only half the time)."""
        return self._frames_since_voiced * _FRAME_MS

    def _voiced(self, frame: bytes) -> bool:
        if not frame.translate(None, _BELOW_FLOOR):  # no sample reaches the floor, so neither does the RMS
            return False
        pcm = mulaw.to_pcm16(frame)  # decoded once, for the loudness and for webrtcvad
        return mulaw.pcm16_rms(pcm) >= _MIN_RMS and self._vad.is_speech(pcm, mulaw.SAMPLE_RATE)

    def _step(self, voiced: bool, now: float) -> tuple[bool, bool]:
        if voiced:
            self._frames_since_voiced = 0
            if self._run_frames == 0:
                self.run_started_at = now
            self._run_frames += 1 + self._gap_frames
            self._gap_frames = 0
            self.last_voiced_at = now
            if not self._confirmed and self._run_frames >= self._min_frames:
                self._confirmed = self.speaking = True
                return True, False
            return False, False
        self._frames_since_voiced += 1
        self._gap_frames += 1
        if self._confirmed and self._gap_frames >= self._end_frames:
            self._reset()
            return False, True
        if not self._confirmed and self._gap_frames > _MAX_GAP_FRAMES:
            self._reset()
        return False, False

    def _reset(self) -> None:
        self._run_frames = self._gap_frames = 0
        self._confirmed = self.speaking = False
