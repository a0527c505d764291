"""Headless Chromium driven over the Chrome DevTools Protocol (no browser download, no driver):
Debian's `chromium`, a fresh profile, a fake microphone playing a WAV file."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import websockets

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
                  "--use-fake-device-for-media-stream", "--window-size=1400,900")


def find_chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


class Page:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.console: list[str] = []

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        await self.ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.ws.recv())
            if reply.get("method") == "Runtime.consoleAPICalled":
                self.console.append(" ".join(str(a.get("value", a.get("description", "")))
                                             for a in reply["params"]["args"]))
            elif reply.get("method") == "Runtime.exceptionThrown":
                self.console.append("exception: " + json.dumps(reply["params"]["exceptionDetails"])[:500])
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float, poll_s: float = 0.25) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"page never satisfied: {expression}")
            await asyncio.sleep(poll_s)

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def chromium_page(binary: str, profile: Path, fake_mic_wav: Path) -> AsyncIterator[Page]:
    """A headless Chromium with one blank page; the fake microphone plays `fake_mic_wav` once."""
    process = await asyncio.to_thread(_launch, binary, profile, fake_mic_wav)
    try:
        port = await asyncio.wait_for(asyncio.to_thread(_devtools_port, process), timeout=30)
        async with aiohttp.ClientSession() as http:
            for _ in range(50):
                async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
                    pages = [t for t in await answer.json() if t.get("type") == "page"]
                if pages:
                    break
                await asyncio.sleep(0.1)
        async with websockets.connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as ws:
            page = Page(ws)
            await page.send("Page.enable")
            await page.send("Runtime.enable")
            yield page
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _launch(binary: str, profile: Path, fake_mic_wav: Path) -> subprocess.Popen[str]:
    profile.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         f"--use-file-for-fake-audio-capture={fake_mic_wav}%noloop", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "LANG": "C"})


def _devtools_port(process: subprocess.Popen[str]) -> int:
    assert process.stderr is not None
    for line in process.stderr:
        found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
        if found:  # keep draining stderr, or a chatty browser blocks on a full pipe
            threading.Thread(target=lambda: [None for _ in process.stderr or []], daemon=True).start()
            return int(found.group(1))
    raise RuntimeError("chromium exited before DevTools listened")
