"""Word error rate of the offline recogniser on booking-call phrases, as a phone call carries them.

Each phrase is synthesised by OfflineTextToSpeech (mu-law 8 kHz), framed in 20 ms packets with
silence either side like a caller's turn, pushed through OfflineSpeechToText's streaming interface,
and scored against the text. espeak is a single clean synthetic voice, so this measures the
pipeline and the language model, not how well real callers are understood.

    .venv/bin/python -m bench.offline_stt_wer [--lm domain|default]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

from shared.audio import mulaw
from streaming_service.engines.base import TranscriptKind
from streaming_service.engines.offline_stt import LanguageModel, OfflineSpeechToText
from streaming_service.engines.offline_tts import OfflineTextToSpeech

PHRASES = [
    "i'd like to book a haircut tomorrow at three",
    "yes",
    "no",
    "goodbye",
    "what are your hours",
    "can i speak to a person",
    "i'd like to make an appointment",
    "three thirty pm",
    "friday at ten am",
    "do you have anything next tuesday",
    "my name is sarah johnson",
    "i need a cleaning on march fifth",
    "can i book a consultation for monday",
    "yes that works",
    "no thank you",
    "thank you goodbye",
    "what time do you close",
    "i want to cancel my appointment",
    "how about four fifteen",
    "the day after tomorrow",
    "is there anything earlier",
    "my name is david",
    "i'd like to book a massage on saturday at eleven",
    "can we do two thirty instead",
    "are you open on sunday",
    "that's correct",
    "this is emily brown",
    "i'd like to speak to someone",
    "wednesday at nine in the morning",
    "how much is a manicure",
]


@dataclass(frozen=True)
class PhraseResult:
    reference: str
    hypothesis: str
    errors: int
    audio_s: float


@dataclass(frozen=True)
class WerReport:
    results: list[PhraseResult]
    decode_s: float

    @property
    def wer(self) -> float:
        words = sum(len(r.reference.split()) for r in self.results)
        return sum(r.errors for r in self.results) / max(1, words)

    @property
    def real_time_factor(self) -> float:
        return self.decode_s / max(1e-9, sum(r.audio_s for r in self.results))


def word_errors(reference: str, hypothesis: str) -> int:
    """Levenshtein distance over words (substitutions + insertions + deletions)."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, hyp_word in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ref_word != hyp_word))
    return row[-1]


async def synthesise_call_audio(tts: OfflineTextToSpeech, text: str) -> bytes:
    speech = b"".join([chunk async for chunk in tts.synthesize(text)])
    return mulaw.silence(300) + speech + mulaw.silence(800)


async def transcribe(stt: OfflineSpeechToText, call_audio: bytes) -> tuple[str, list[TranscriptKind]]:
    """Stream audio in 20 ms frames; return the final text(s) and the event kinds seen."""
    stream = await stt.open_stream("bench")
    for frame in mulaw.frames(call_audio):
        await stream.send_audio(frame)
    await stream.close()
    finals: list[str] = []
    kinds: list[TranscriptKind] = []
    async for event in stream.events():
        kinds.append(event.kind)
        if event.kind is TranscriptKind.FINAL:
            finals.append(event.text)
    return " ".join(finals), kinds


async def measure_wer(phrases: list[str] | None = None, language_model: LanguageModel = "domain"
                      ) -> WerReport:
    tts, stt = OfflineTextToSpeech(), OfflineSpeechToText(language_model=language_model)
    results: list[PhraseResult] = []
    decode_s = 0.0
    for phrase in phrases or PHRASES:
        audio = await synthesise_call_audio(tts, phrase)
        started = time.perf_counter()
        hypothesis, _ = await transcribe(stt, audio)
        decode_s += time.perf_counter() - started
        results.append(PhraseResult(phrase, hypothesis, word_errors(phrase, hypothesis),
                                    mulaw.duration_ms(audio) / 1000))
    return WerReport(results, decode_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", choices=["domain", "default"], default="domain")
    args = parser.parse_args()
    report = asyncio.run(measure_wer(language_model=args.lm))
    for r in report.results:
        mark = "  " if r.errors == 0 else f"{r.errors:2d}"
        print(f"{mark} {r.reference!r:55} -> {r.hypothesis!r}")
    print(f"\nWER {report.wer:.1%} over {len(report.results)} phrases "
          f"({sum(len(r.reference.split()) for r in report.results)} words), "
          f"real-time factor {report.real_time_factor:.3f} (LM: {args.lm})")


if __name__ == "__main__":
    main()
