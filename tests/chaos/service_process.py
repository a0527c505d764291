"""`python -m streaming_service` in a subprocess with the vendor fakes in another, for tests that need the
service's own process: its RSS, its log (tracebacks), its signals."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import aiohttp

from bench.call_bench import ZERO, Delays, _proc_rss_mb, _start_fakes, _wait_ready, service_env
from shared.stream_token import mint_stream_token
from tests.chaos.harness import ROOT, TimedCall
from tests.e2e.conftest import STREAM_SECRET, TWILIO_TOKEN, free_port


@dataclass
class ServiceProcess:
    log_path: Path
    extra_env: dict[str, str]
    delays: Delays = ZERO
    port: int = 0
    server: subprocess.Popen[bytes] | None = None
    fakes: subprocess.Popen[str] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/twilio-stream"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.server is not None
        return self.server.pid

    def rss_mb(self) -> float:
        return _proc_rss_mb(self.pid)

    def log_text(self) -> str:
        return self.log_path.read_text()

    def tracebacks(self) -> int:
        return self.log_text().count("Traceback")

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.launch()
        await _wait_ready(http, self.port)

    def launch(self) -> None:
        self.fakes, urls = _start_fakes(self.delays)
        self.port = free_port()
        env = {**service_env(self.port, urls, self.delays), **self.extra_env}
        with self.log_path.open("w") as log_file:
            self.server = subprocess.Popen([sys.executable, "-m", "streaming_service"], cwd=ROOT, env=env,
                                           stdout=subprocess.DEVNULL, stderr=log_file)

    def stop(self) -> None:
        for proc in (self.server, self.fakes):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def call(self, http: aiohttp.ClientSession, tenant_id: str = "acme") -> TimedCall:
        sim = TimedCall(self.ws_url, custom_parameters={}, auth_token=TWILIO_TOKEN, http=http)
        sim.custom_parameters = {"tenant_id": tenant_id, "caller": "+15550001111",
                                 "stream_token": mint_stream_token(STREAM_SECRET, tenant_id, sim.call_sid)}
        return sim

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
