"""The start-up warm-up leaves no lazy work for a caller's first turn on OpenAI.

Each case runs in a fresh interpreter: in the test process, earlier tests have built the schemas
already, so a missing warm-up would go unseen.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# Counts, over the first OpenAI turn of a fresh process, the pydantic schemas built and the modules imported.
_FIRST_TURN = textwrap.dedent("""
    import asyncio, cProfile, json, pstats, sys
    from pydantic import SecretStr
    from shared.settings import Settings
    from streaming_service.engines.base import CallContext, Conversation
    from streaming_service.engines.openai_agent import OpenAIAgentRuntime
    from streaming_service.warm_up import warm_up_agents
    from tests.fakes.openai_server import FakeOpenAI, Reply, ToolCall

    async def main(warm: bool) -> None:
        fake = FakeOpenAI()
        await fake.start()
        # A handoff, then the answer: the tool-call path and the text path.
        fake.script(Reply(tool_calls=(ToolCall("transfer_to_general"),)), Reply(text="We open at nine."))
        runtime = OpenAIAgentRuntime(Settings(openai_api_key=SecretStr("sk-test"), openai_base_url=fake.base_url))
        if warm:
            await warm_up_agents()
        call = CallContext(call_sid="CA1", stream_sid="MZ1", tenant_id="00000000-0000-0000-0000-000000000001")
        modules = set(sys.modules)
        profile = cProfile.Profile()
        profile.enable()
        text = "".join([e.text async for e in runtime.run_turn(call, Conversation(), "Hello")])
        profile.disable()
        built = sum(calls for (path, _, name), (calls, *_rest) in pstats.Stats(profile).stats.items()
                    if name == "complete_model_class" and "pydantic" in path)
        print(json.dumps({"text": text, "schemas_built": built, "imported": sorted(set(sys.modules) - modules)}))
        await runtime.aclose()
        await fake.stop()

    asyncio.run(main(sys.argv[1] == "warm"))
""")


def _in_fresh_interpreter(script: str, warm: bool) -> Any:
    """What `script` prints last (JSON), run with argv[1] "warm" or "cold" in a new interpreter."""
    done = subprocess.run([sys.executable, "-c", script, "warm" if warm else "cold"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _first_turn(warm: bool) -> dict[str, Any]:
    return dict(_in_fresh_interpreter(_FIRST_TURN, warm))


def test_first_openai_turn_after_warm_up_builds_no_schemas() -> None:
    cold, warm = _first_turn(warm=False), _first_turn(warm=True)
    assert cold["text"] == warm["text"] == "We open at nine."
    assert cold["schemas_built"], "the check must see the lazy work a cold process does"
    assert warm["schemas_built"] == 0
    agent_modules = [m for m in warm["imported"] if m.split(".")[0] in ("agents", "openai", "pydantic")]
    assert agent_modules == []


# Where a fresh process's offline recogniser loads its models: in a decoder host (a child process), never in
# the service's own, and, after the warm-up, before the first stream.
_FIRST_STREAM = textwrap.dedent("""
    import asyncio, json, sys
    from streaming_service.engines.offline_stt import OfflineSpeechToText, _Hosts, _host_models_loaded, _ModelFiles
    from streaming_service.warm_up import warm_up_recognisers

    async def main(warm: bool) -> None:
        recogniser = OfflineSpeechToText()
        if warm:
            await warm_up_recognisers(recogniser, None)
        hosts = list(_Hosts.hosts)
        ready = bool(hosts) and await hosts[0].call(_host_models_loaded)
        stream = await recogniser.open_stream("CA1")
        on_a_ready_host = ready and stream._recogniser.host in hosts
        await stream.close()
        print(json.dumps([on_a_ready_host, _ModelFiles._dir is None]))

    asyncio.run(main(sys.argv[1] == "warm"))
""")


def _first_stream(warm: bool) -> tuple[bool, bool]:
    """(the first stream went to a host whose models were loaded, the service's process loaded none)"""
    ready, service_loaded_nothing = _in_fresh_interpreter(_FIRST_STREAM, warm)
    return bool(ready), bool(service_loaded_nothing)


def test_offline_models_load_in_a_decoder_host_and_before_the_first_stream_after_warm_up() -> None:
    # Loading takes ~450 ms and each decode 100-200 ms, holding the GIL: in the service's own process either
    # would stop every other call's audio that long.
    assert _first_stream(warm=False) == (False, True)
    assert _first_stream(warm=True) == (True, True)
