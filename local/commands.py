"""`voice-agent serve | call | demo`: the local, one-process way to run and try the agent."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from shared.settings import Settings, get_settings
from shared.structured_logging import configure_logging

log = logging.getLogger("voice_agent.local")


def _serve(args: argparse.Namespace) -> int:
    from local.stack import DEMO_NUMBER, build_local_stack
    from streaming_service.server import serve_until_signalled

    settings = get_settings()
    configure_logging(settings.log_level)
    _metrics_to_their_own_stream()
    port = args.port or settings.port

    async def run() -> int:
        stack = await build_local_stack(settings, port)
        banner = {"url": stack.base_url, "voice_webhook": f"{stack.base_url}/voice",
                  "stream": f"{stack.base_url.replace('http', 'ws', 1)}/twilio-stream",
                  "engines": stack.engines, "postgres": stack.admin_dsn.split("@")[-1],
                  "redis": stack.redis_url.split("@")[-1], "demo_number": DEMO_NUMBER}
        print("voice-agent serving:\n" + json.dumps(banner, indent=2), flush=True)
        return await serve_until_signalled(stack.app, "0.0.0.0", port, stack.settings.drain.drain_timeout_s)

    cut = asyncio.run(run())
    return 0 if cut == 0 else 1


def _metrics_to_their_own_stream() -> None:
    """The Lambdas' EMF metric lines (Powertools prints them, ColdStart included) go to a file, not the console."""
    from local.metrics_stream import split_metrics_from_console
    from shared.tenancy.embedded import data_dir

    split_metrics_from_console(data_dir())


def _local_secrets() -> dict[str, str]:
    from shared.tenancy.embedded import data_dir

    stored = data_dir() / "local-secrets.json"
    return dict(json.loads(stored.read_text())) if stored.exists() else {}


def _local_auth_token(settings: Settings) -> str:
    return settings.secret("twilio_auth_token") or _local_secrets().get("twilio_auth_token", "")


async def _print_transcript(http: Any, base_url: str, tenant_id: str, call_sid: str) -> None:
    """Read the call back through the tenant API, as the tenant would (the local demo key)."""
    local = _local_secrets()
    if local.get("demo_tenant_id") != tenant_id or not local.get("demo_api_key"):
        print("(transcript: pass a tenant API key to read it; only the local demo tenant's key is known here)")
        return
    headers = {"X-Tenant-Id": tenant_id, "Authorization": f"Bearer {local['demo_api_key']}"}
    for _ in range(20):  # the transcript is flushed to Postgres as the call ends
        async with http.get(f"{base_url}/api/calls/{call_sid}/transcript", headers=headers) as response:
            turns = (await response.json()).get("items", []) if response.status == 200 else []
        if turns:
            break
        await asyncio.sleep(0.25)
    async with http.get(f"{base_url}/api/calls/{call_sid}", headers=headers) as response:
        record = await response.json() if response.status == 200 else {}
    print("\ntranscript (as stored for the tenant):")
    for turn in turns:
        cut = f"  [cut off; heard: {turn.get('heard_text')!r}]" if turn.get("interrupted") else ""
        print(f"  {turn['role']:>6}: {turn['text']}{cut}")
    for figures in record.get("turn_metrics") or []:
        print(f"  turn {figures.get('turn')}: voice-to-voice {figures.get('voice_to_voice_ms')} ms "
              f"(STT {figures.get('stt_ms')}, agent {figures.get('llm_ttft_ms')}, TTS {figures.get('tts_ttfb_ms')} ms)")


class _LivePrinter:
    """Prints a call as it happens from the server's live feed (`/phone/api/calls/{sid}/events`, local
    operator only): the agent's words as it produces them, what the recogniser heard, tool calls."""

    def __init__(self) -> None:
        self.agent_open = False  # an agent line is being printed word by word
        self.streamed = False  # words of the current agent reply were printed
        self.printed_entries = 0

    def end_agent_line(self) -> None:
        if self.agent_open:
            print(flush=True)
            self.agent_open = False

    def show(self, view: dict[str, Any]) -> None:
        for event in view.get("events", []):
            kind = event.get("kind")
            if kind == "agent_words":
                if not self.agent_open:
                    print("  agent: ", end="")
                    self.agent_open = self.streamed = True
                print(event.get("text", ""), end="", flush=True)
            elif kind in ("tool_call", "tool_result"):
                self.end_agent_line()
                detail = event.get("arguments", "") if kind == "tool_call" else str(event.get("output", ""))[:160]
                print(f"   tool {'→' if kind == 'tool_call' else '←'} {event.get('name')}: {detail}", flush=True)
        transcript = view.get("transcript", [])
        for entry in transcript[self.printed_entries:]:
            self.end_agent_line()
            if entry.get("role") == "caller":
                print(f"  heard: {entry.get('text')}", flush=True)
                continue
            if not self.streamed:  # said without the agent (greeting, reprompt, filler)
                print(f"  agent: {entry.get('text')}", flush=True)
            if entry.get("interrupted"):
                print(f"  [agent cut off; the caller heard: {entry.get('heard')!r}]", flush=True)
            self.streamed = False
        self.printed_entries = len(transcript)


async def _follow_live(http: Any, base_url: str, call_sid: str) -> None:
    """Follow the server's live feed of this call, if it has one (`voice-agent serve` does)."""
    printer = _LivePrinter()
    try:
        async with http.get(f"{base_url}/phone/api/calls/{call_sid}/events") as response:
            if response.status != 200:
                return
            async for raw in response.content:
                line = raw.decode().strip()
                if line.startswith("data: ") and line != "data: {}":
                    printer.show(json.loads(line[6:]))
    except Exception as exc:  # the live view is a convenience: the call goes on without it
        log.debug("live feed unavailable", extra={"error": str(exc)})
    finally:
        printer.end_agent_line()


def _call(args: argparse.Namespace) -> int:
    """Place one call against a running server, as Twilio would, and speak the given lines."""
    import aiohttp

    from local.call_simulator import after_stream, dial
    from streaming_service.engines.offline_tts import OfflineTextToSpeech

    settings = get_settings()
    token = _local_auth_token(settings)

    async def run() -> int:
        voice = OfflineTextToSpeech(rate_wpm=150)
        async with aiohttp.ClientSession() as http:
            dialled = await dial(args.url, to=args.to, from_=args.from_, auth_token=token, http=http)
            call = dialled.call
            live = asyncio.create_task(_follow_live(http, args.url, call.call_sid))
            await call.connect()
            await call.wait_for_agent(since=0, timeout_s=30)
            for line in args.say:
                audio = b"".join([chunk async for chunk in voice.synthesize(line)])
                print(f"caller: {line}", flush=True)
                spoken_at = await call.say(audio)
                await call.wait_for_agent(since=spoken_at, quiet_s=1.0, timeout_s=30)
                first = call.first_audio_after(spoken_at)
                latency = f"{(first - spoken_at) * 1000:.0f} ms" if first else "no answer"
                print(f"  (voice-to-voice at the caller: {latency})", flush=True)
                if call.closed.is_set():
                    break
            await call.hang_up()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live, timeout=5)
            print(f"after the stream Twilio would run: {await after_stream(dialled, token, http)}")
            await _print_transcript(http, args.url, call.custom_parameters.get("tenant_id", ""), call.call_sid)
            if args.wav:
                call.recording.write_wav(args.wav)
                print(f"recording: {args.wav}")
        return 0

    return asyncio.run(run())


def _demo(args: argparse.Namespace) -> int:
    import os

    from local.demo import run_demo

    configure_logging("WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # the Lambdas' EMF lines would drown the transcript
    _metrics_to_their_own_stream()
    result = asyncio.run(run_demo(sys.stdout, Path(args.wav)))
    return 0 if result.booking else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser("serve", help="run everything in one process (webhook, stream, tool proxy, API)")
    serve.add_argument("--port", type=int, default=0, help="default: PORT (8080)")
    serve.set_defaults(handler=_serve)

    call = subparsers.add_parser("call", help="place a simulated Twilio call against a running server")
    call.add_argument("--url", default="http://127.0.0.1:8080")
    call.add_argument("--to", default="+15550100000")
    call.add_argument("--from", dest="from_", default="+15557654321")
    call.add_argument("--say", action="append", default=[], help="a caller line (repeatable)")
    call.add_argument("--wav", default="", help="write both sides of the call to this WAV file")
    call.set_defaults(handler=_call)

    demo = subparsers.add_parser("demo", help="a scripted booking call on the embedded defaults, end to end")
    demo.add_argument("--wav", default="demo.wav")
    demo.set_defaults(handler=_demo)
