"""Word error rate of the offline recogniser on booking-call phrases, as a phone call carries them.

Each phrase is synthesised by OfflineTextToSpeech (mu-law 8 kHz), framed in 20 ms packets with
silence either side like a caller's turn, pushed through OfflineSpeechToText's streaming interface,
and scored against the text. espeak is a single clean synthetic voice, so this measures the
pipeline and the language model, not how well real callers are understood.

    .venv/bin/python -m bench.offline_stt_wer [--lm domain|default]

`--full` is the harder set: every phrase of `PHRASES + MORE_PHRASES` (over 100) in two espeak-ng voices
(American, British) at two speeds (140 and 185 words a minute), band-limited to the telephone band
(300-3400 Hz) with band-limited noise at 20 dB SNR, decoded on one core. It reports WER, the real-time
factor and the recogniser's memory (RSS growth of the process and its decoder host, the child process
that decodes, over the process before the first decoder loaded).

    taskset -c 0 .venv/bin/python -m bench.offline_stt_wer --full [--lm domain|default]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass

import numpy as np

from bench.call_bench import _proc_rss_mb
from shared.audio import mulaw
from streaming_service.engines.base import TranscriptKind
from streaming_service.engines.offline_stt import LanguageModel, OfflineSpeechToText, domain_sentences
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

# The demo's caller lines, then more of what callers say when booking: yes/no to a read-back, names,
# times, dates and numbers.
MORE_PHRASES = [
    "yes please", "my name is john smith", "no thank you goodbye", "yes", "no", "yes that's right",
    "no thanks", "that's right", "yes please book it", "no that's wrong", "sure", "okay", "perfect",
    "my name is anna miller", "it's peter garcia", "this is laura wilson", "my name is james brown",
    "my name is maria davis", "it's robert jones", "my name is kate williams", "this is tom johnson",
    "my name is susan smith", "my name is mark wilson", "michael garcia", "jennifer miller",
    "tomorrow at three", "tomorrow at four thirty", "monday at ten", "friday at two pm",
    "saturday morning", "next wednesday at eleven am", "thursday at three fifteen", "at noon",
    "how about five pm", "nine thirty in the morning", "two o'clock", "ten fifteen",
    "on march third", "on april twenty first", "the fifteenth", "june tenth at one",
    "i'd like to book a haircut on friday", "can i book a beard trim tomorrow",
    "i need an appointment next monday", "do you have anything on saturday",
    "i'd like to book a haircut for tomorrow at four", "can i get a trim on thursday at two",
    "i'd like to cancel my appointment", "can i reschedule my appointment", "what are your opening hours",
    "when are you open", "where are you located", "can i talk to a person", "i want to speak to a person",
    "the number i'm calling from", "is there anything later", "anything in the morning",
    "can you repeat that", "sorry i didn't catch that", "hello", "thank you", "thanks bye",
    "that works for me", "sounds good", "not really", "that's all thank you", "good morning",
    "i'd like to make a booking", "do you have any availability", "what times do you have",
    "yes that works", "no that's all", "bye", "four forty five", "eleven thirty am",
    "can i book a cleaning on tuesday", "my name is daniel jones",
]
ALL_PHRASES = list(dict.fromkeys(PHRASES + MORE_PHRASES))
DEMO_LINES = ["i'd like to book a haircut tomorrow at three", "my name is john smith", "yes please",
              "no thank you goodbye", "tomorrow at three", "the number i'm calling from"]
DEMO_VOICE = ("en-us", 150)  # the demo's caller: local/demo.py speaks its lines with this voice and rate
VOICES = ["en-us", "en-gb-x-rp"]
SPEEDS_WPM = [140, 185]
SNR_DB = 20.0


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


async def measure_demo_lines() -> list[PhraseResult]:
    """The demo's six caller lines as `make demo` sends them: the caller's voice, clean mu-law 8 kHz."""
    voice, wpm = DEMO_VOICE
    tts, stt = OfflineTextToSpeech(voice=voice, rate_wpm=wpm), OfflineSpeechToText()
    results: list[PhraseResult] = []
    for line in DEMO_LINES:
        audio = await synthesise_call_audio(tts, line)
        hypothesis, _ = await transcribe(stt, audio)
        results.append(PhraseResult(line, hypothesis, word_errors(line, hypothesis), mulaw.duration_ms(audio) / 1000))
    return results


def telephone_band(ulaw: bytes, rng: np.random.Generator, snr_db: float = SNR_DB) -> bytes:
    """Speech and added noise both limited to 300-3400 Hz, as a phone line carries them."""
    pcm = mulaw.decode(ulaw).astype(np.float64)

    def band(x: np.ndarray) -> np.ndarray:
        spectrum = np.fft.rfft(x)
        freqs = np.fft.rfftfreq(len(x), 1 / mulaw.SAMPLE_RATE)
        spectrum[(freqs < 300) | (freqs > 3400)] = 0
        return np.fft.irfft(spectrum, len(x))

    speech = band(pcm)
    noise = band(rng.normal(0.0, 1.0, len(pcm)))
    speech_power = float(np.mean(speech[np.abs(speech) > 100] ** 2)) if np.any(np.abs(speech) > 100) else 1.0
    noise *= np.sqrt(speech_power / 10 ** (snr_db / 10) / max(1e-9, float(np.mean(noise**2))))
    return mulaw.encode(np.clip(speech + noise, -32768, 32767).astype(np.int16))


@dataclass(frozen=True)
class FullReport:
    report: WerReport
    rss_growth_mb: float
    conditions: int
    by_condition: dict[str, float]  # "voice @ wpm" -> WER


async def measure_full(language_model: LanguageModel = "domain", phrases: list[str] | None = None) -> FullReport:
    """Every phrase in every voice at every speed, telephone band and noise; WER, RTF, memory."""
    before_mb = _proc_rss_mb(os.getpid())
    stt = OfflineSpeechToText(language_model=language_model)
    rng = np.random.default_rng(16)
    results: list[PhraseResult] = []
    by_condition: dict[str, float] = {}
    decode_s = 0.0
    for voice in VOICES:
        for wpm in SPEEDS_WPM:
            tts = OfflineTextToSpeech(voice=voice, rate_wpm=wpm)
            first = len(results)
            for phrase in phrases or ALL_PHRASES:
                audio = telephone_band(await synthesise_call_audio(tts, phrase), rng)
                started = time.perf_counter()
                hypothesis, _ = await transcribe(stt, audio)
                decode_s += time.perf_counter() - started
                results.append(PhraseResult(phrase, hypothesis, word_errors(phrase, hypothesis),
                                            mulaw.duration_ms(audio) / 1000))
            by_condition[f"{voice} @ {wpm} wpm"] = WerReport(results[first:], 0.0).wer
    growth_mb = _proc_rss_mb(os.getpid()) - before_mb  # the decoder host is alive still: its RSS counts
    return FullReport(WerReport(results, decode_s), growth_mb, len(VOICES) * len(SPEEDS_WPM), by_condition)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", choices=["domain", "default"], default="domain")
    parser.add_argument("--full", action="store_true", help="2 voices x 2 speeds, telephone band + noise")
    args = parser.parse_args()
    if args.full:
        full = asyncio.run(measure_full(args.lm))
        for r in full.report.results:
            if r.errors:
                print(f"{r.errors:2d} {r.reference!r:55} -> {r.hypothesis!r}")
        words = sum(len(r.reference.split()) for r in full.report.results)
        print(f"\nWER {full.report.wer:.1%} over {len(full.report.results)} utterances ({words} words, "
              f"{len(ALL_PHRASES)} phrases x {full.conditions} voice/speed conditions), "
              f"real-time factor {full.report.real_time_factor:.3f}, memory +{full.rss_growth_mb:.0f} MB RSS "
              f"(LM: {args.lm})")
        for condition, wer in full.by_condition.items():
            print(f"  {condition}: WER {wer:.1%}")
        if args.lm == "domain":
            # Most phrases are sentences the domain LM is trained on (its fixed answers, every full name);
            # the rest it can only put together from its n-grams.
            corpus = set(domain_sentences())
            unseen = [r for r in full.report.results if r.reference not in corpus]
            print(f"  phrases not verbatim in the LM's training text ({len({r.reference for r in unseen})} of "
                  f"{len(ALL_PHRASES)}): WER {WerReport(unseen, 0.0).wer:.1%}; the rest: "
                  f"{WerReport([r for r in full.report.results if r.reference in corpus], 0.0).wer:.1%}")
        exact = [r for r in full.report.results if r.reference in DEMO_LINES]
        print(f"demo caller lines exact in the noisy set: {sum(r.errors == 0 for r in exact)}/{len(exact)}")
        demo = asyncio.run(measure_demo_lines())
        print(f"demo caller lines exact as make demo sends them ({DEMO_VOICE[0]} @ {DEMO_VOICE[1]} wpm, clean "
              f"mu-law): {sum(r.errors == 0 for r in demo)}/{len(demo)}")
        for r in demo:
            print(f"  {'ok' if r.errors == 0 else f'{r.errors:2d}'} {r.reference!r} -> {r.hypothesis!r}")
        return
    report = asyncio.run(measure_wer(language_model=args.lm))
    for r in report.results:
        mark = "  " if r.errors == 0 else f"{r.errors:2d}"
        print(f"{mark} {r.reference!r:55} -> {r.hypothesis!r}")
    print(f"\nWER {report.wer:.1%} over {len(report.results)} phrases "
          f"({sum(len(r.reference.split()) for r in report.results)} words), "
          f"real-time factor {report.real_time_factor:.3f} (LM: {args.lm})")


if __name__ == "__main__":
    main()
