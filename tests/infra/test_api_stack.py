from __future__ import annotations

import sys
from typing import Any

from aws_cdk.assertions import Match

from tests.infra.conftest import SynthesizedEnvironment
from tests.infra.secrets_in_env import plaintext_secret_names

# Whether each Handler string resolves is proven by running it (tests/rehearsal), not by comparing strings.
SERVICES = ("voice-webhook", "tool-proxy")


def _functions(env: SynthesizedEnvironment) -> dict[str, dict[str, Any]]:
    found = env.template("api").find_resources("AWS::Lambda::Function")
    props = (f["Properties"] for f in found.values())
    return {p["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]: p for p in props}


def test_both_lambdas_traced_in_the_vpc_with_powertools(every_env: SynthesizedEnvironment) -> None:
    functions = _functions(every_env)
    assert set(functions) == set(SERVICES)
    for props in functions.values():
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["Runtime"] == f"python{sys.version_info.major}.{sys.version_info.minor}"  # as tested
        assert props["VpcConfig"]["SubnetIds"]
        variables = props["Environment"]["Variables"]
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "VoiceAgent"
        assert variables["POWERTOOLS_SERVICE_NAME"]
        for ref in ("APP_SECRET_ARN", "DB_SECRET_ARN", "REDIS_URL_SECRET_ARN"):
            assert isinstance(variables[ref], dict), f"{ref} should reference a secret resource"


def test_no_plaintext_secrets_in_lambda_env(every_env: SynthesizedEnvironment) -> None:
    for props in _functions(every_env).values():
        assert plaintext_secret_names(props["Environment"]["Variables"]) == []


def test_reserved_concurrency_per_environment(dev: SynthesizedEnvironment, prod: SynthesizedEnvironment) -> None:
    assert all("ReservedConcurrentExecutions" not in p for p in _functions(dev).values())
    assert {p["ReservedConcurrentExecutions"] for p in _functions(prod).values()} == {100}


def test_routes_reach_the_right_lambdas(dev: SynthesizedEnvironment) -> None:
    template = dev.template("api")
    routes = {r["Properties"]["RouteKey"] for r in template.find_resources("AWS::ApiGatewayV2::Route").values()}
    assert routes == {"POST /voice", "POST /voice/after-stream", "POST /status", "POST /mcp"}
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Integration", {"IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "1.0"}
    )


def test_stage_throttles_and_logs_access(dev: SynthesizedEnvironment, prod: SynthesizedEnvironment) -> None:
    for env, rate in ((dev, 50), (prod, 200)):
        env.template("api").has_resource_properties(
            "AWS::ApiGatewayV2::Stage",
            {
                "StageName": "$default",
                "AutoDeploy": True,
                "DefaultRouteSettings": Match.object_like({"ThrottlingRateLimit": rate}),
                "AccessLogSettings": Match.object_like({"DestinationArn": Match.any_value()}),
            },
        )


def test_a_custom_api_domain_is_the_url_twilio_signs(tmp_path) -> None:
    from aws_cdk import App

    from infra.app import build_stacks, config_from_context
    from tests.infra.conftest import cdk_context

    context = {**cdk_context("dev"), "api_domain_name": "hooks.example.com",
               "api_certificate_arn": "arn:aws:acm:us-east-1:111111111111:certificate/api"}
    app = App(context=context, outdir=str(tmp_path / "cdk.out"))
    stacks = build_stacks(app, config_from_context(app), build_dir=tmp_path / "build")
    template = app.synth().get_stack_by_name(stacks.api.stack_name).template
    [webhook] = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
                 and r["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "voice-webhook"]
    assert webhook["Environment"]["Variables"]["PUBLIC_URL"] == "https://hooks.example.com"
    assert template["Outputs"]["VoiceWebhookUrl"]["Value"] == "https://hooks.example.com/voice"
    assert "ApiDomainTarget" in template["Outputs"]
    mappings = [r for r in template["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::ApiMapping"]
    assert len(mappings) == 1
