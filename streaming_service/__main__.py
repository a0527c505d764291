"""`python -m streaming_service`: the streaming service alone (as deployed on Fargate); with `WORKERS` > 1, a
supervisor and that many worker processes on one port (streaming_service/workers.py).

The service itself (the app, the engines, the data layer) is imported in `run`, not here: a supervisor never
runs it, so it stays a small process (it imports streaming_service/workers.py only), and each worker, which
re-imports this module as it starts (multiprocessing's spawn), imports the service once, in `run`."""

from __future__ import annotations

import logging
import socket
import sys

from shared.settings import Settings, get_settings
from shared.structured_logging import configure_logging
from streaming_service.workers import WorkerSlot, supervise

log = logging.getLogger("voice_agent")


async def run(settings: Settings, worker: WorkerSlot | None = None, handed: socket.socket | None = None) -> int:
    """The service in this process. `worker` and `handed` (the channel its connections come over): set in a
    worker of several (streaming_service/workers.py)."""
    from streaming_service.app import create_app
    from streaming_service.data_layer import ServiceData
    from streaming_service.engines.factory import build_engines, describe
    from streaming_service.server import serve_until_signalled
    from streaming_service.telemetry.service_telemetry import ServiceTelemetry

    telemetry = ServiceTelemetry.from_settings(settings)
    telemetry.tracing.instrument_clients()  # before any client exists: vendor HTTP and Redis calls get spans
    data = None
    if settings.database_dsn():
        data = await ServiceData.connect(settings.database_dsn(), settings.redis_url, settings.cache_ttl_s)
    else:
        log.warning("no database configured: calls run on default settings and are not recorded")
    engines = build_engines(settings, data)
    log.info("engines", extra=describe(engines))
    app = create_app(settings, engines, recorder=data.recorder if data else None,
                     tenant_settings=data.tenant_settings() if data else None, telemetry=telemetry,
                     stream_claims=data.stream_claims() if data else None,
                     capacity=data.capacity(settings) if data and settings.redis_url else None, data=data,
                     worker=worker)
    if data is not None:
        data.mount_tenant_api(app)
    try:
        return await serve_until_signalled(app, "0.0.0.0", settings.port, settings.drain.drain_timeout_s,
                                           handed=handed)
    finally:
        if data is not None:
            await data.close()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    if settings.insecure_skip_twilio_verification:
        log.warning("INSECURE: Twilio signature and stream token checks are OFF (local development only)")
    if settings.workers > 1:
        sys.exit(supervise(settings))
    from streaming_service.server import run_event_loop  # here: the supervisor never imports aiohttp's server

    run_event_loop(run(settings))


if __name__ == "__main__":
    main()
