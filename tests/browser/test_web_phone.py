"""The web phone in a real browser: headless Chromium (Debian's package) with a fake microphone that plays
a caller's lines, spoken by the project's offline espeak voice. The page places the call through the
signed `/voice` webhook and the signing relay, speaks Media Streams to the service, and books a haircut.
The booking row is read from Postgres, the transcript from the page; a screenshot is kept in
`.bench/browser/phone.png`.

Outside CI the test is skipped when chromium is missing; in CI (`CI` set) it fails instead.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path
from uuid import UUID

import numpy as np
import pytest
from aiohttp import web

from local.demo import free_previous_demo_booking
from local.stack import DEMO_CALLER, build_local_stack
from shared.audio import mulaw
from shared.settings import Settings
from shared.tenancy import bookings
from tests.browser.cdp import chromium_page, find_chromium
from tests.e2e.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / ".bench" / "browser" / "phone.png"

# (second the line starts, counted from when the microphone opens, what the caller says). The caller
# talks over the greeting (about 3.5 s long): the service must clear it, the page must drop what it had
# buffered and echo the pending marks. After that the gaps leave the agent time to answer (its longest
# line, the read-back, is about 11 s).
CALLER_LINES = [
    (2.0, "I'd like to book a haircut tomorrow at three"),
    (10.5, "My name is John Smith"),
    (25.5, "Yes"),
    (37.5, "No thank you goodbye"),
]

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                reason="chromium is not installed (make test installs it)")


async def caller_wav(path: Path) -> Path:
    """The caller's side as a WAV file for Chromium's fake microphone (PCM16 mono 8 kHz)."""
    from streaming_service.engines.offline_tts import OfflineTextToSpeech

    voice = OfflineTextToSpeech(voice="en-us", rate_wpm=150)
    track = np.zeros(int((CALLER_LINES[-1][0] + 6) * mulaw.SAMPLE_RATE), dtype=np.int16)
    for start_s, line in CALLER_LINES:
        pcm = mulaw.decode(b"".join([chunk async for chunk in voice.synthesize(line)]))
        at = int(start_s * mulaw.SAMPLE_RATE)
        track[at:at + len(pcm)] = pcm[: len(track) - at]
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(mulaw.SAMPLE_RATE)
        out.writeframes(track.astype("<i2").tobytes())
    return path


async def test_a_caller_books_a_haircut_from_the_browser(tmp_path: Path) -> None:
    assert CHROMIUM is not None, "chromium is required in CI (make test installs it with apt-get)"
    settings = Settings(_env_file=None)  # type: ignore[call-arg]  # no keys: offline engines
    port = free_port()
    stack = await build_local_stack(settings, port, tmp_path / "data")
    await free_previous_demo_booking(stack)
    runner = web.AppRunner(stack.app, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    wav = await caller_wav(tmp_path / "caller.wav")
    try:
        async with chromium_page(CHROMIUM, tmp_path / "profile", wav) as page:
            await page.send("Page.navigate", url=f"{stack.base_url}/phone")
            await page.wait_for("document.querySelectorAll('#tenant option').length > 0", timeout_s=15)
            await page.evaluate("document.getElementById('call').click()")
            await page.wait_for("window.phone.state === 'live'", timeout_s=15)
            # The agent says goodbye and the service closes the stream: the page shows the call ended.
            await page.wait_for("window.phone.state === 'ended'", timeout_s=75)
            await page.wait_for("document.querySelector('#transcript').innerText.includes('Goodbye')", timeout_s=10)
            # Once the stream closed, the relay requested <Connect action> as Twilio would: hang up.
            await page.wait_for("document.querySelector('#transcript').innerText.includes('<Hangup')", timeout_s=10)
            await page.wait_for("!document.getElementById('download').hidden", timeout_s=10)
            await page.wait_for("window.phone.recordingSaved === true", timeout_s=10)
            await page.screenshot(SCREENSHOT)
            call_sid = await page.evaluate("window.phone.callSid")
            on_page = await page.evaluate("document.querySelector('#transcript').innerText")
            turns_drawn = await page.evaluate("document.querySelectorAll('#turns tbody tr').length")
            tools_drawn = await page.evaluate("document.getElementById('tools').innerText")
            console = page.console
        made = [b for b in await bookings.list_bookings(stack.data.db, UUID(stack.demo_tenant_id), limit=500)
                if b.call_sid == call_sid]
    finally:
        await runner.cleanup()

    assert made, f"no booking for {call_sid}; page transcript:\n{on_page}\nconsole: {console}"
    assert made[0].status == "confirmed" and made[0].customer_phone == DEMO_CALLER
    assert made[0].customer_name.lower().startswith("john")
    text = on_page.lower()
    assert "thanks for calling demo salon" in text and "haircut" in text and "you're all booked" in text, on_page
    assert "caller (heard as)" in text
    # The barge-in, as the page saw it: a `clear` arrived, and the greeting is marked as cut off.
    assert "caller interrupted" in text and 'interrupted: the caller heard "' in text, on_page
    assert turns_drawn >= 3, on_page
    assert "book" in tools_drawn.lower(), tools_drawn  # the booking tool call, as it happened
    assert SCREENSHOT.stat().st_size > 10_000
    assert (tmp_path / "data" / "recordings" / f"{call_sid}.wav").stat().st_size > 100_000  # both sides, kept
