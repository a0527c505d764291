"""`python -m streaming_service`: the streaming service alone (as deployed on Fargate)."""

from __future__ import annotations

import asyncio
import logging

from shared.settings import get_settings
from shared.structured_logging import configure_logging
from streaming_service.app import create_app
from streaming_service.engines.factory import build_engines, describe
from streaming_service.server import serve_until_signalled


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    if settings.insecure_skip_twilio_verification:
        logging.getLogger("voice_agent").warning(
            "INSECURE: Twilio signature and stream token checks are OFF (local development only)")
    engines = build_engines(settings)
    logging.getLogger("voice_agent").info("engines", extra=describe(engines))
    app = create_app(settings, engines)
    asyncio.run(serve_until_signalled(app, "0.0.0.0", settings.port, settings.drain.drain_timeout_s))


if __name__ == "__main__":
    main()
