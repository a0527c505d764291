"""CDK entry point: `cdk synth -c env=dev|staging|prod` (cdk.json runs `python -m infra.app`).

Stacks by lifetime, in deploy order: network -> data -> api -> streaming -> observability.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Annotations, App, Environment, Stack, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from infra.config import DEPLOY_TIME_KEYS, EnvironmentConfig, build_config
from infra.lambda_assets import REPO_ROOT, stage_lambda_assets
from infra.stacks.api_stack import ApiStack
from infra.stacks.data_stack import DataStack
from infra.stacks.network_stack import NetworkStack
from infra.stacks.observability_stack import ObservabilityStack
from infra.stacks.streaming_stack import StreamingStack


@dataclass(frozen=True)
class VoiceAgentStacks:
    config: EnvironmentConfig
    network: NetworkStack
    data: DataStack
    api: ApiStack
    streaming: StreamingStack
    observability: ObservabilityStack

    def all(self) -> list[Stack]:
        return [self.network, self.data, self.api, self.streaming, self.observability]


def config_from_context(app: App) -> EnvironmentConfig:
    env_name = str(app.node.try_get_context("env") or "dev")
    environments = app.node.try_get_context("environments") or {}
    overrides = {key: app.node.try_get_context(key) for key in DEPLOY_TIME_KEYS}
    return build_config(env_name, environments, overrides)


def build_stacks(app: App, config: EnvironmentConfig, *, build_dir: Path | None = None) -> VoiceAgentStacks:
    assets = stage_lambda_assets(build_dir or REPO_ROOT / "build")
    # The region is pinned per environment; the account comes from the CLI's credentials when it has them
    # (deploy). Without one (tests, offline `make synth`) the stacks stay account-agnostic: no lookups.
    env = Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT") or None, region=config.region)
    prefix = config.stack_prefix

    network = NetworkStack(app, f"{prefix}-Network", config=config, env=env)
    data = DataStack(app, f"{prefix}-Data", config=config, vpc=network.vpc, lambda_assets=assets, env=env)
    api = ApiStack(
        app,
        f"{prefix}-Api",
        config=config,
        vpc=network.vpc,
        lambda_assets=assets,
        data_client_security_group=data.client_security_group,
        app_secret=data.app_secret,
        db_secret=data.database.app_secret,
        redis_url_secret=data.cache.url_secret,
        stream_url=network.ingress.stream_url,
        env=env,
    )
    streaming = StreamingStack(
        app,
        f"{prefix}-Streaming",
        config=config,
        vpc=network.vpc,
        listener=network.ingress.listener,
        load_balancer_security_group=network.ingress.security_group,
        data_client_security_group=data.client_security_group,
        app_secret=data.app_secret,
        db_secret=data.database.app_secret,
        redis_url_secret=data.cache.url_secret,
        stream_url=network.ingress.stream_url,
        mcp_url=api.mcp_url,
        env=env,
    )
    observability = ObservabilityStack(
        app,
        f"{prefix}-Observability",
        config=config,
        functions={"VoiceWebhook": api.voice_webhook, "ToolProxy": api.tool_proxy},
        load_balancer=network.ingress.load_balancer,
        target_group_full_name=streaming.streaming.target_group.target_group_full_name,
        service=streaming.streaming.service,
        database=data.database.cluster,
        cache_primary_node_id=data.cache.primary_node_id,
        env=env,
    )
    stacks = VoiceAgentStacks(config, network, data, api, streaming, observability)
    for stack in stacks.all():
        Tags.of(stack).add("project", "voice-agent")
        Tags.of(stack).add("environment", config.env_name)
    if assets.layer_is_placeholder:
        for stack in (data, api):
            Annotations.of(stack).add_warning_v2(
                "voice-agent:layer-placeholder",
                "Lambda layer is a placeholder: run `make layer` before `cdk deploy`.",
            )
    return stacks


def main() -> None:
    app = App()
    build_stacks(app, config_from_context(app))
    # cdk-nag on every synth (and so on every deploy): an unacknowledged finding fails the synth.
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()


if __name__ == "__main__":
    main()
