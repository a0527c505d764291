"""The templates' wiring, run rather than read: every Lambda's Handler loads from its own asset in a
process of its own (as Lambda's runtime loads it), the webhook checks signatures against the URL Twilio is
given, and the task role allows what the service's code asks the ECS agent to do. The whole deployed shape
runs in tests/rehearsal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.rehearsal.cloud_assembly import CloudAssembly, RehearsalFault, StackTemplate, role_actions
from local.rehearsal.rehearse import Rehearsal
from local.rehearsal.stand_ins import LambdaEnvironment, Network
from streaming_service.task_protection import TASK_ROLE_ACTIONS
from tests.infra.conftest import SynthesizedEnvironment


def _python_functions(assembly: CloudAssembly) -> list[tuple[StackTemplate, str, dict[str, Any]]]:
    return [hit for hit in assembly.find("AWS::Lambda::Function")
            if hit[2]["Properties"].get("Runtime", "").startswith("python")]


def test_every_lambda_handler_loads_from_its_asset(every_env: SynthesizedEnvironment, tmp_path: Path) -> None:
    assembly = CloudAssembly.load(every_env.outdir)
    functions = _python_functions(assembly)
    assert len(functions) == 3  # webhook, tool proxy, migration runner
    env = Network(tmp_path).process_env()  # isolated: the asset alone, never the repository's packages
    for stack, logical_id, resource in functions:
        props = resource["Properties"]
        # Raises RehearsalFault naming <stack>/<function>.Handler when Lambda would fail its init.
        function = LambdaEnvironment(stack.where(logical_id), logical_id, assembly.asset_dir(stack, logical_id),
                                     props["Handler"], env, 3, tmp_path / f"{logical_id}.log")
        function.stop()


def test_a_handler_string_naming_nothing_fails_with_the_resource_named(dev: SynthesizedEnvironment,
                                                                       tmp_path: Path) -> None:
    assembly = CloudAssembly.load(dev.outdir)
    stack, logical_id, _ = next(h for h in _python_functions(assembly) if "Webhook" in h[1])
    with pytest.raises(RehearsalFault, match=rf"{logical_id}\.Handler.*Runtime.HandlerNotFound"):
        LambdaEnvironment(stack.where(logical_id), logical_id, assembly.asset_dir(stack, logical_id),
                          "functions.voice_webhook.handler.handler", Network(tmp_path).process_env(), 3,
                          tmp_path / "broken.log")


def _webhook_variables(assembly: CloudAssembly, rehearsal: Rehearsal) -> dict[str, str]:
    stack, _, resource = next(h for h in _python_functions(assembly)
                              if h[2]["Properties"]["Environment"]["Variables"].get("POWERTOOLS_SERVICE_NAME")
                              == "voice-webhook")
    variables = rehearsal.resolver.resolve(stack, resource["Properties"]["Environment"]["Variables"])
    return {k: str(v) for k, v in variables.items()}


def test_webhook_checks_signatures_against_the_url_twilio_calls(every_env: SynthesizedEnvironment,
                                                                tmp_path: Path) -> None:
    assembly = CloudAssembly.load(every_env.outdir)
    rehearsal = Rehearsal(every_env.stacks.config.env_name, tmp_path)
    resolver = rehearsal.attach(assembly)
    api_stack = assembly.stacks[every_env.stacks.api.stack_name]
    webhook_url = resolver.resolve(api_stack, api_stack.template["Outputs"]["VoiceWebhookUrl"]["Value"])
    variables = _webhook_variables(assembly, rehearsal)
    # Twilio signs the URL the number is configured with (the output); the handler rebuilds it from PUBLIC_URL.
    assert variables["PUBLIC_URL"] + "/voice" == webhook_url
    assert webhook_url.startswith(f"https://{rehearsal.api_id}.execute-api.")
    # The stream URL is the streaming endpoint's own, the same the task verifies upgrades against.
    streaming = assembly.stacks[every_env.stacks.streaming.stack_name]
    [task] = [r for _, r in streaming.of_type("AWS::ECS::TaskDefinition")]
    [app] = [c for c in task["Properties"]["ContainerDefinitions"] if c.get("PortMappings")]
    task_env = {e["Name"]: resolver.resolve(streaming, e["Value"]) for e in app["Environment"]}
    assert variables["STREAM_PUBLIC_URL"] == task_env["STREAM_PUBLIC_URL"]
    assert variables["STREAM_PUBLIC_URL"].endswith("/twilio-stream")
    expected_scheme = "ws://" if every_env.stacks.config.env_name == "dev" else "wss://"
    assert variables["STREAM_PUBLIC_URL"].startswith(expected_scheme)


def test_task_role_allows_what_the_service_asks_of_the_ecs_agent(every_env: SynthesizedEnvironment) -> None:
    assembly = CloudAssembly.load(every_env.outdir)
    streaming = assembly.stacks[every_env.stacks.streaming.stack_name]
    [task] = [r for _, r in streaming.of_type("AWS::ECS::TaskDefinition")]
    allowed = role_actions(streaming, task["Properties"]["TaskRoleArn"])
    assert set(TASK_ROLE_ACTIONS) <= allowed, f"task role lacks {set(TASK_ROLE_ACTIONS) - allowed}"
    # ECS itself reads the container's secrets with the execution role before the task starts.
    assert "secretsmanager:GetSecretValue" in role_actions(streaming, task["Properties"]["ExecutionRoleArn"])
