"""Turn-taking benchmark: false interruptions, true barge-ins and voice-to-voice by turn type.

The service (`python -m streaming_service`), the vendor fakes and the simulated callers each run in their
own process; the fakes have realistic delays (300 ms endpointing, 350 ms to the model's first token plus
15 ms a token, 250 ms to the voice's first byte). Each call greets, then plays rounds of three turns:

- a plain answer, a long first sentence (both ~5-8 s of audio), a tool call on a plain question (routed
  to the general agent by its words), a handoff with a tool call (words triage must route), and a
  hesitant question (a 140-260 ms pause mid-sentence, under the endpointing: one turn, whose first
  draft the caller's later words outrun);
- the questions are spoken in espeak-ng's voice, with its real 20-240 ms gaps between words (the
  backchannels and barge-ins stay in the synthetic, gapless `marked_speech`);
- over the first two answers the caller does one thing, in turn: a backchannel ("mm-hm", "uh-huh",
  "yeah", "right", "okay", "sure"), a cough or a burst of line noise (200-800 ms at three loudness
  levels), or a true barge-in (real words).

Reported per scenario:
- false-interruption survival: a reply survived when the caller heard it to the end, in order, with at
  most 300 ms replayed or lost where it was cut (frames compared with the reply's known audio); sounds
  too quiet to clear anything are counted apart;
- backchannels that reached the model as a turn (target 0);
- true barge-in p50/p95: the first frame of the caller's words sent -> `clear` received;
- voice-to-voice p50/p95 by turn type: the caller's speech end -> the first reply frame received;
- preemptive-generation hit rate (when the service reports it), and the drafts discarded per turn (model
  runs paid for and not used).
First, with no service: the gaps inside 15 caller questions (espeak-ng) at least 40/60/80/120 ms long, per
question: the drafts a preemptive pause of that length would start, and pay for, before the caller is done.
`--hold-clear` measures the other design: `clear` only once the recogniser has heard words.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import uvloop

from bench.call_bench import REALISTIC, _pct, _proc_cpu_s, _wait_ready, loop_stalls, service_env
from local.call_simulator import SimulatedCall
from shared.audio import mulaw
from shared.settings import SilenceOptions
from shared.stream_token import mint_stream_token
from streaming_service.backchannel import is_backchannel
from streaming_service.engines.offline_tts import OfflineTextToSpeech
from streaming_service.sentence_chunker import SentenceChunker
from streaming_service.voice_activity import CallerSpeechDetector
from tests.e2e.conftest import STREAM_SECRET, TWILIO_TOKEN, free_port
from tests.e2e.heard_audio import compare, expected_frames, played_frames
from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall, _pieces
from tests.fakes.speech_marker import marked_speech, sound_without_words, with_words

ROOT = Path(__file__).resolve().parent.parent
LLM_TOKEN_MS = 15
MAX_GAP_MS = 300

PLAIN_Q = "What are your opening hours"
PLAIN_A = ("We are open from nine in the morning to five in the evening on weekdays. "
           "On Saturdays we open at ten and close at two.")
LONG_Q = "What services do you offer"
LONG_A = ("We offer general checkups and cleanings, fillings, crowns and bridges, whitening, and same day "
          "emergency visits for adults and children. Just ask if you would like to book any of them.")
TOOL_Q = "Are you open on Sunday"  # a plain question: routed to general by its words, which calls a tool
TOOL_A = "No, on Sundays we are closed, but we are open six days a week."
HANDOFF_Q = "I was wondering about Sunday"  # unclear words: triage hands off, then the tool
HANDOFF_A = "On Sundays we are closed, but we are open the other six days."
FILLER = SilenceOptions().thinking_filler_text
BARGE_Q = "Sorry can you say that again"
BARGE_A = "Of course."
HESITANT_PARTS = ("I would like to know", "your opening hours")  # said with a pause between
TURNS = {"plain": (PLAIN_Q, PLAIN_A), "long_first_sentence": (LONG_Q, LONG_A), "routed_tool": (TOOL_Q, TOOL_A),
         "handoff_tool": (HANDOFF_Q, HANDOFF_A), "hesitant": (" ".join(HESITANT_PARTS), PLAIN_A)}

BACKCHANNELS = ["mm-hm", "uh-huh", "yeah", "right", "okay", "sure"]
SOUNDS = [(kind, ms, gain) for kind in ("cough", "noise") for ms in (200, 350, 500, 800) for gain in (0.5, 1.0, 2.0)]


# --- the fakes process -----------------------------------------------------------------------------------

class BenchModel(FakeOpenAI):
    """Answers by the caller's question; the Sunday question is routed (handoff) and looked up (tool)."""

    backchannel_turns = 0
    _body: ClassVar[dict[str, Any]] = {}

    async def _admit(self, request: Any) -> Any:
        admitted = await super()._admit(request)
        BenchModel._body = admitted[0]  # one request at a time reaches _next_reply (no await in between)
        return admitted

    def _next_reply(self, kind: str, last_user: str) -> Reply:
        messages = self._body.get("messages", [])
        last_user_at = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=0)
        called = {c.get("function", {}).get("name") for m in messages[last_user_at:] for c in m.get("tool_calls") or []}
        tools = {t.get("function", {}).get("name") for t in self._body.get("tools", [])}
        if is_backchannel(last_user):
            BenchModel.backchannel_turns += 1
            return Reply(text="Sure.")
        if last_user in (TOOL_Q, HANDOFF_Q):
            if not called and "transfer_to_general" in tools:
                return Reply(tool_calls=(ToolCall("transfer_to_general"),))
            if "business_info" not in called and "business_info" in tools:
                return Reply(tool_calls=(ToolCall("business_info", {"question": "open on Sunday"}),))
            return Reply(text=TOOL_A if last_user == TOOL_Q else HANDOFF_A)
        for question, answer in (*TURNS.values(), (BARGE_Q, BARGE_A)):
            if last_user == question:
                return Reply(text=answer)
        return Reply(text="I see.")


async def serve_fakes() -> None:
    from tests.fakes.deepgram_server import FakeDeepgram
    from tests.fakes.elevenlabs_server import FakeElevenLabs

    dg, el = FakeDeepgram(), FakeElevenLabs(first_byte_delay_s=REALISTIC.tts_first_byte_ms / 1000)
    oa = BenchModel(first_token_delay_s=REALISTIC.llm_first_token_ms / 1000, inter_token_delay_s=LLM_TOKEN_MS / 1000)
    for fake in (dg, el, oa):
        await fake.start()
    print(json.dumps({"deepgram": dg.ws_url, "deepgram_key": dg.api_key, "elevenlabs": el.base_url,
                      "elevenlabs_key": el.api_key, "openai": oa.base_url, "openai_key": oa.api_key}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the bench closes stdin
    print(json.dumps({"backchannel_turns": BenchModel.backchannel_turns}), flush=True)
    for fake in (dg, el, oa):
        await fake.stop()


# --- the callers -----------------------------------------------------------------------------------------

_spoken: dict[str, bytes] = {}


async def natural_speech(text: str) -> bytes:
    """`text` in espeak-ng's voice (the offline TTS) with its own pauses between words, 20-240 ms, where
    `marked_speech` has none: the pauses that make a preemptive draft start too early cost what they cost.
    Cut to its first and last voiced frames (the clip's end is the speech end) and carrying `text` for the
    fake recogniser. Made once per text."""
    if text not in _spoken:
        frames = mulaw.frames(b"".join([chunk async for chunk in OfflineTextToSpeech().synthesize(text)]))
        voiced = [i for i, loud in enumerate(_voiced(frames)) if loud]
        _spoken[text] = with_words(b"".join(frames[voiced[0] : voiced[-1] + 1]), text)
    return _spoken[text]


def _voiced(frames: list[bytes]) -> list[bool]:
    """Each frame: speech, as the service's own detector hears it."""
    detector = CallerSpeechDetector()
    return [detector.process(frame).voiced for frame in frames]


CALLER_QUESTIONS = (
    "What are your opening hours", "I would like to book a cleaning for next Tuesday afternoon",
    "Can I speak to Doctor Smith about my appointment", "My name is John Smith and I need a checkup",
    "Do you take my insurance or do I have to pay up front", "Could you tell me how much a filling costs",
    "I think I have a cavity because my tooth hurts when I eat something cold", "Is there parking near the clinic",
    "Please cancel my appointment on Friday at three", "What time do you close on Saturday",
    "I need to reschedule, something came up at work", "Yes that works for me, thank you very much",
    "Are you open on Sunday", "Can you send me a text with the address",
    "My daughter needs a checkup before school starts next week")


async def pauses_inside_questions(min_ms: tuple[int, ...] = (40, 60, 80, 120)) -> dict[str, float]:
    """Gaps between voiced frames inside a question at least this long, per question (espeak-ng's voice): the
    drafts a preemptive pause of that length starts before the caller has finished, each a model run."""
    gaps: list[int] = []
    for question in CALLER_QUESTIONS:
        voiced = _voiced(mulaw.frames(await natural_speech(question)))
        runs = "".join("v" if v else "." for v in voiced).strip(".").split("v")
        gaps += [len(run) * mulaw.FRAME_MS for run in runs if run]
    return {f">={ms}ms": round(sum(g >= ms for g in gaps) / len(CALLER_QUESTIONS), 2) for ms in min_ms}


def reply_frames(text: str) -> list[bytes]:
    """The reply's audio as the service sends it: the fake model's word pieces through the chunker."""
    chunker = SentenceChunker()
    pieces = [p for piece in _pieces(text) for p in chunker.push(piece)] + chunker.flush()
    return expected_frames(pieces)


@dataclass
class Results:
    v2v_ms: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in TURNS})
    barge_in_ms: list[float] = field(default_factory=list)
    false_cleared: list[tuple[str, bool, int]] = field(default_factory=list)  # (what, survived, gap ms)
    false_not_cleared: list[tuple[str, bool]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _disturbance(index: int) -> tuple[str, Any]:
    """The n-th thing a caller does over an answer: backchannels, sounds and barge-ins in turn."""
    schedule: list[tuple[str, Any]] = [("backchannel", w) for w in BACKCHANNELS] + \
        [("sound", s) for s in SOUNDS] + [("barge_in", BARGE_Q)] * 6
    random.Random(7).shuffle(schedule)  # any prefix is a mix
    return schedule[index % len(schedule)]


async def _wait(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def _turn(sim: SimulatedCall, kind: str, disturbance: tuple[str, Any] | None, results: Results,
                rng: random.Random) -> None:
    question, answer = TURNS[kind]
    if kind == "hesitant":
        pause_ms = 20 * rng.randint(7, 13)
        speech = await natural_speech(HESITANT_PARTS[0]) + mulaw.silence(pause_ms) \
            + await natural_speech(HESITANT_PARTS[1])
    else:
        speech = await natural_speech(question)
    spoken_at = await sim.say(speech)
    recording_from = len(sim.recording.agent)
    if not await _wait(lambda: sim.first_audio_after(spoken_at) is not None, 20):
        raise TimeoutError(f"no answer to {kind}")
    first = sim.first_audio_after(spoken_at)
    assert first is not None
    results.v2v_ms[kind].append((first - spoken_at) * 1000)
    if disturbance is None:
        await sim.wait_for_agent(since=spoken_at, timeout_s=30)
        return
    await asyncio.sleep(rng.uniform(1.0, 2.0))  # somewhere in the answer
    what, detail = disturbance
    started = time.monotonic()
    if what == "barge_in":
        sim.say_nowait(marked_speech(detail))
        if await _wait(lambda: bool(sim.clears_after(started)), 5):
            results.barge_in_ms.append((sim.clears_after(started)[0] - started) * 1000)
        else:
            results.errors.append("barge-in not cleared")
        ended = time.monotonic()
        await _wait(lambda: sim.first_audio_after(ended) is not None, 10)
        await sim.wait_for_agent(since=ended, timeout_s=30)
        return
    audio = marked_speech(detail) if what == "backchannel" else sound_without_words(detail[1], detail[0], detail[2],
                                                                                      seed=rng.randrange(1000))
    label = detail if what == "backchannel" else f"{detail[0]} {detail[1]} ms x{detail[2]}"
    ended = await sim.say(audio)
    await _wait(lambda: sim.first_audio_after(ended) is not None, 3)  # the resumed answer, if it stopped
    await sim.wait_for_agent(since=spoken_at, timeout_s=30, quiet_s=0.8)
    played = played_frames(sim.recording.agent[recording_from:])
    filler = expected_frames([FILLER])  # said first when the model is slow to start (a loaded machine)
    if played[: len(filler)] == filler:
        played = played[len(filler):]
    heard = compare(played, reply_frames(answer))
    survived = heard.complete and heard.gap_ms <= MAX_GAP_MS
    if sim.clears_after(started):
        results.false_cleared.append((label, survived, heard.gap_frames * 20))
    else:
        results.false_not_cleared.append((label, survived))


async def _one_call(ws_url: str, http: aiohttp.ClientSession, index: int, rounds: int, start_after_s: float,
                    results: Results) -> None:
    await asyncio.sleep(start_after_s)
    rng = random.Random(index)
    sim = SimulatedCall(ws_url, custom_parameters={}, auth_token=TWILIO_TOKEN, http=http)
    sim.custom_parameters = {"tenant_id": "bench", "caller": "+15550001111",
                             "stream_token": mint_stream_token(STREAM_SECRET, "bench", sim.call_sid)}
    try:
        await sim.connect()
        await sim.wait_for_agent(since=0, timeout_s=30)
        for r in range(rounds):
            n = index * rounds * 2 + r * 2
            await _turn(sim, "plain", _disturbance(n), results, rng)
            await _turn(sim, "long_first_sentence", _disturbance(n + 1), results, rng)
            await _turn(sim, "routed_tool", None, results, rng)
            await _turn(sim, "handoff_tool", None, results, rng)
            await _turn(sim, "hesitant", None, results, rng)
    except Exception as exc:  # a failed call is a figure, not a crash of the bench
        results.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        await sim.hang_up()


def _preemptive(log_path: Path) -> dict[str, int]:
    counts = {"hits": 0, "misses": 0, "turns": 0, "discarded": 0}
    for line in log_path.read_text().splitlines():
        if '"preemptive' in line:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            metrics = entry.get("metrics") or {}  # the "turn complete" figures
            outcome = metrics.get("preemptive")
            if metrics.get("stt_ms") is not None:  # a caller's turn
                counts["turns"] += 1
                counts["discarded"] += int(metrics.get("drafts_discarded") or 0)
            if outcome in ("hit", "miss"):
                counts["hits" if outcome == "hit" else "misses"] += 1
    return counts


async def run_scenario(calls: int, rounds: int, hold_clear: bool) -> dict[str, Any]:
    fakes = subprocess.Popen([sys.executable, "-m", "bench.turn_bench", "--serve-fakes"], cwd=ROOT,  # noqa: ASYNC220
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert fakes.stdout is not None and fakes.stdin is not None
    urls = json.loads(fakes.stdout.readline())
    port = free_port()
    env = {**service_env(port, urls, REALISTIC), "INTERRUPTION__CONFIRM_WITH_TRANSCRIPT": str(hold_clear).lower()}
    log_path = ROOT / ".bench" / f"turns-{calls}{'-hold' if hold_clear else ''}.log"
    log_path.parent.mkdir(exist_ok=True)
    results = Results()
    cpu_shares: list[float] = []
    for text in (*(question for question, _ in TURNS.values()), *HESITANT_PARTS):
        await natural_speech(text)  # before the clock starts
    with log_path.open("w") as log_file:
        server = await asyncio.create_subprocess_exec(sys.executable, "-m", "streaming_service", cwd=ROOT, env=env,
                                                      stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_ready(http, port)
            ws_url = f"ws://127.0.0.1:{port}/twilio-stream"
            stagger_s = min(5.0, 0.1 * calls)
            cpu_before = (_proc_cpu_s(server.pid), _proc_cpu_s(fakes.pid), time.process_time(), time.monotonic())
            await asyncio.gather(*(_one_call(ws_url, http, i, rounds, stagger_s * i / max(1, calls), results)
                                   for i in range(calls)))
            wall_s = time.monotonic() - cpu_before[3]
            cpu_shares = [round((_proc_cpu_s(server.pid) - cpu_before[0]) / wall_s, 2),
                          round((_proc_cpu_s(fakes.pid) - cpu_before[1]) / wall_s, 2),
                          round((time.process_time() - cpu_before[2]) / wall_s, 2)]
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), timeout=30)
        fakes.stdin.close()
        stats = json.loads(fakes.stdout.readline() or "{}")
        fakes.wait(timeout=10)
    cleared = results.false_cleared
    survived = sum(1 for _, ok, _ in cleared if ok) + sum(1 for _, ok in results.false_not_cleared if ok)
    total = len(cleared) + len(results.false_not_cleared)
    preemptive = _preemptive(log_path)
    tried = preemptive["hits"] + preemptive["misses"]
    row: dict[str, Any] = {
        "calls": calls, "design": "hold clear until words" if hold_clear else "clear at once, resume",
        "false_interruptions": total, "that_cleared": len(cleared),
        "survival_rate": round(survived / total, 3) if total else None,
        "survival_rate_of_cleared": round(sum(1 for _, ok, _ in cleared if ok) / len(cleared), 3) if cleared else None,
        "gap_ms_p50_p95_of_cleared": [_pct([abs(g) for _, _, g in cleared], 0.5),
                                      _pct([abs(g) for _, _, g in cleared], 0.95)],
        "backchannel_turns": stats.get("backchannel_turns"),
        "barge_in_p50_ms": round(_pct(results.barge_in_ms, 0.5), 1),
        "barge_in_p95_ms": round(_pct(results.barge_in_ms, 0.95), 1),
        "barge_ins": len(results.barge_in_ms),
        "v2v_ms_p50_p95": {k: [round(_pct(v, 0.5)), round(_pct(v, 0.95))] for k, v in results.v2v_ms.items()},
        "preemptive_hit_rate": round(preemptive["hits"] / tried, 3) if tried else "not measured (none reported)",
        "drafts_discarded_per_turn": round(preemptive["discarded"] / preemptive["turns"], 2)
        if preemptive["turns"] else None,
        "lost": [(label, gap) for label, ok, gap in cleared if not ok][:8],
        "errors": len(results.errors), "first_error": results.errors[0] if results.errors else "",
        "cpu_share_service_fakes_callers": cpu_shares,
        "loop_stalls_count_longest_ms": loop_stalls(log_path),
    }
    return row


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, nargs="*", default=[1, 50])
    parser.add_argument("--rounds", type=int, default=0, help="rounds per call (default: 6 alone, 1 at 50 calls)")
    parser.add_argument("--hold-clear", action="store_true", help="measure the hold-the-clear design instead")
    parser.add_argument("--serve-fakes", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_fakes:
        uvloop.run(serve_fakes())
        return []
    rows = []
    print(json.dumps({"pauses_inside_a_question": asyncio.run(pauses_inside_questions())}), flush=True)
    for calls in args.calls:
        rounds = args.rounds or (6 if calls == 1 else 1)
        row = asyncio.run(run_scenario(calls, rounds, args.hold_clear))
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(f"targets: survival >= 0.95, backchannel turns 0, barge-in p95 <= 250 ms, "
          f"v2v p95 <= 1000 ms per turn type at 50 calls (vendor floor {REALISTIC.total_ms} ms)")
    return rows


if __name__ == "__main__":
    main()
