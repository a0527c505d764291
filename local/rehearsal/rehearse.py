"""`python -m local.rehearsal --env dev`: synthesize, stand the templates up locally, place a call.

The hops, in order: synth -> Secrets Manager (each secret as the template generates it, then the operator's
put-secret-value) -> Aurora's stand-in (TLS) and the migration custom resource's Lambda -> ElastiCache's
stand-in (TLS + auth token) -> the two Lambdas behind the HTTP API -> the task behind the ALB (health
check first) -> a Twilio call signed for the number's webhook URL -> /voice -> the TwiML's stream through
the ALB -> a booking -> the after-stream callback -> the transcript through the tenant API -> drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from local.rehearsal.caller import (
    OPENAI_HOST,
    TENANT_SETTINGS,
    BookingCall,
    DeployedShape,
    RehearsalReport,
    openai_outage,
)
from local.rehearsal.cloud_assembly import (
    ACCOUNT_ID,
    CloudAssembly,
    RehearsalFault,
    Resolver,
    StackTemplate,
    role_actions,
    synthesize,
)
from local.rehearsal.ecs import EcsAgent, Image, TaskProcess
from local.rehearsal.front_doors import (
    AlbFrontDoor,
    ApiRoute,
    HttpApiFrontDoor,
    ListenerRule,
    Target,
    TargetGroup,
    serve,
)
from local.rehearsal.stand_ins import (
    LambdaEnvironment,
    Network,
    RedisServer,
    SecretsManager,
    TlsTerminator,
    free_port,
    generated_secret,
)
from local.rehearsal.traces import OtlpReceiver, XRayDaemon, call_trace_summary


class Rehearsal:
    def __init__(self, env_name: str, workdir: Path, out: Callable[[str], None] = print) -> None:
        self.env_name = env_name
        self.workdir = workdir
        self.out = out
        self.report = RehearsalReport(env_name)
        self._t0 = time.monotonic()
        self._cleanup: list[Callable[[], Any]] = []
        self.physical: dict[tuple[str, str], str] = {}
        self.api_id = "rh" + secrets.token_hex(4)

    def hop(self, text: str) -> None:
        elapsed = time.monotonic() - self._t0
        self.report.hops.append((elapsed, text))
        self.out(f"[{elapsed:6.1f}s] {text}")

    # --- names AWS would give ------------------------------------------------------------------

    def physical_id(self, stack: StackTemplate, logical_id: str) -> str:
        key = (stack.name, logical_id)
        if key in self.physical:
            return self.physical[key]
        resource = stack.resources[logical_id]
        kind = resource["Type"]
        if kind == "AWS::SecretsManager::SecretTargetAttachment":
            return str(self.resolver.resolve(stack, resource["Properties"]["SecretId"]))
        if kind == "AWS::ApiGatewayV2::Api":
            return self.api_id
        if kind == "AWS::Lambda::Function":
            return f"{stack.name}-{logical_id}"[:64]
        return f"{logical_id}-rehearsal"

    def attribute(self, stack: StackTemplate, logical_id: str, attr: str) -> str:
        kind = stack.resources[logical_id]["Type"]
        region = stack.region
        if kind == "AWS::ApiGatewayV2::Api" and attr == "ApiEndpoint":
            return f"https://{self.api_id}.execute-api.{region}.amazonaws.com"
        if kind == "AWS::ApiGatewayV2::DomainName" and attr == "RegionalDomainName":
            return f"d-{self.api_id}.execute-api.{region}.amazonaws.com"
        if kind == "AWS::ElasticLoadBalancingV2::LoadBalancer":
            return {"DNSName": f"voiceagent-{self.env_name}-alb-rehearsal.{region}.elb.amazonaws.com",
                    "LoadBalancerFullName": f"app/voiceagent-{self.env_name}/rehearsal"}.get(attr, attr)
        if kind == "AWS::RDS::DBCluster":
            return {"Endpoint.Address": f"{logical_id.lower()}.cluster-rehearsal.{region}.rds.amazonaws.com",
                    "Endpoint.Port": "5432"}.get(attr, f"{logical_id}-{attr}")
        if kind == "AWS::ElastiCache::ReplicationGroup":
            return {"PrimaryEndPoint.Address": f"{logical_id.lower()}.rehearsal.cache.amazonaws.com",
                    "PrimaryEndPoint.Port": "6379"}.get(attr, f"{logical_id}-{attr}")
        if kind == "AWS::Lambda::Function" and attr == "Arn":
            return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{self.physical_id(stack, logical_id)}"
        if kind == "AWS::IAM::Role" and attr == "Arn":
            return f"arn:aws:iam::{ACCOUNT_ID}:role/{logical_id}"
        return f"{logical_id}-{attr}-rehearsal"

    def dynamic_reference(self, reference: str) -> str:
        return self.secrets.field(reference)

    def attach(self, assembly: CloudAssembly) -> Resolver:
        """Resolve an already synthesized assembly with this rehearsal's names (no secrets needed)."""
        self.assembly = assembly
        self.resolver = Resolver(assembly, self.physical_id, self.attribute, self.dynamic_reference)
        return self.resolver

    # --- the run --------------------------------------------------------------------------------

    async def run(self) -> RehearsalReport:
        try:
            await self._run()
        finally:
            for step in reversed(self._cleanup):
                with contextlib.suppress(Exception):
                    result = step()
                    if asyncio.iscoroutine(result):
                        await result
        return self.report

    async def _run(self) -> None:
        started = time.perf_counter()
        self.assembly = CloudAssembly.load(synthesize(self.env_name, self.workdir / "cdk.out"))
        self.hop(f"synthesized {len(self.assembly.stacks)} stacks ({time.perf_counter() - started:.1f} s), "
                 "cdk-nag clean")
        region = next(iter(self.assembly.stacks.values())).region
        self.secrets = SecretsManager(region)
        self._cleanup.append(self.secrets.stop)
        self.attach(self.assembly)
        self.network = Network(self.workdir)
        self.session = aiohttp.ClientSession()
        self._cleanup.append(self.session.close)
        self._check_runtimes()
        self._create_secrets()
        await self._data_tier()
        lambdas = await self._start_lambdas()
        await self._migrate(lambdas)
        tenant = await self._operator_setup()
        await self._api(lambdas)
        await self._task_and_alb()
        await self._call(tenant)
        await self._drain()

    def _check_runtimes(self) -> None:
        running = f"python{sys.version_info.major}.{sys.version_info.minor}"
        for stack, logical_id, resource in self.assembly.find("AWS::Lambda::Function"):
            runtime = resource["Properties"].get("Runtime", "")
            if runtime.startswith("python") and runtime != running:
                raise RehearsalFault(stack.where(logical_id, "Runtime"),
                                     f"{runtime}, but the code is tested on {running}")

    def _create_secrets(self) -> None:
        pending = list(self.assembly.find("AWS::SecretsManager::Secret"))
        # Generated secrets first: a SecretString may hold a dynamic reference to one of them.
        for stack, logical_id, resource in sorted(pending, key=lambda hit: "SecretString" in hit[2]["Properties"]):
            props = resource["Properties"]
            name = str(self.resolver.resolve(stack, props.get("Name") or f"{stack.name}/{logical_id}"))
            if "GenerateSecretString" in props:
                value = generated_secret(self.resolver.resolve(stack, props["GenerateSecretString"]))
            else:
                value = str(self.resolver.resolve(stack, props["SecretString"]))
            self.physical[(stack.name, logical_id)] = self.secrets.create(name, value)
        for stack, _, resource in self.assembly.find("AWS::SecretsManager::SecretTargetAttachment"):
            props = resource["Properties"]
            arn = str(self.resolver.resolve(stack, props["SecretId"]))
            target = props["TargetId"]["Ref"]
            value = json.loads(self.secrets.read(arn))
            # What the attachment adds to a cluster's secret (RDS's own field names).
            value.update(host=self.attribute(stack, target, "Endpoint.Address"), port=5432, engine="postgres",
                         dbClusterIdentifier=self.physical_id(stack, target))
            self.secrets.put(arn, json.dumps(value))
        self.hop(f"Secrets Manager (moto): {len(pending)} secrets as the templates generate them")

    async def _data_tier(self) -> None:
        from shared.settings import Settings
        from shared.tenancy.embedded import create_scratch_database, drop_database, dsn_with, resolve_database_dsn

        server_dsn = resolve_database_dsn(Settings(), allow_local=True)
        self.admin_dsn = await create_scratch_database(server_dsn, prefix="va_rehearse", migrate=False)
        self._cleanup.append(lambda: drop_database(server_dsn, self.admin_dsn))
        database = self.admin_dsn.rsplit("/", 1)[1].split("?")[0]
        # Aurora's master user (from the cluster secret) owns the database, as on a new cluster.
        stack, cluster_id, cluster = self.assembly.one("AWS::RDS::DBCluster")
        # The cluster's own properties name its master user; the password resolves from its secret.
        master = {key: str(self.resolver.resolve(stack, cluster["Properties"][prop]))
                  for key, prop in (("username", "MasterUsername"), ("password", "MasterUserPassword"))}
        import asyncpg

        conn = await asyncpg.connect(self.admin_dsn)
        try:
            ident = await conn.fetchval("SELECT quote_ident($1)", master["username"])
            literal = await conn.fetchval("SELECT quote_literal($1)", master["password"])
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", master["username"])
            await conn.execute(f"{'ALTER' if exists else 'CREATE'} ROLE {ident} WITH LOGIN CREATEROLE "
                               f"CREATEDB PASSWORD {literal}")
            await conn.execute(f'ALTER DATABASE "{database}" OWNER TO {ident}')
            await conn.execute(f"GRANT ALL ON SCHEMA public TO {ident}")
        finally:
            await conn.close()
        self._pg_upstream = self._server_address(dsn_with(self.admin_dsn))
        self._database = database
        cluster_host = self.attribute(stack, cluster_id, "Endpoint.Address")
        self.network.names.append(cluster_host)  # in the certificate, issued once every name is known
        # Redis: the cache's auth token secret, a Redis of our own with it, TLS in front.
        cache_stack, cache_id, group = self.assembly.one("AWS::ElastiCache::ReplicationGroup")
        token = str(self.resolver.resolve(cache_stack, group["Properties"].get("AuthToken", "")))
        if not token:
            raise RehearsalFault(cache_stack.where(cache_id, "AuthToken"), "no auth token: AUTH would be off")
        self.redis = RedisServer(self.workdir, token)
        self._cleanup.append(self.redis.stop)
        await self.redis.wait_ready()
        self._redis_host = self.attribute(cache_stack, cache_id, "PrimaryEndPoint.Address")
        self.network.names.append(self._redis_host)
        self._cluster_host = cluster_host

    @staticmethod
    def _server_address(dsn: str) -> tuple[str, int]:
        from urllib.parse import urlsplit

        parts = urlsplit(dsn)
        return parts.hostname or "127.0.0.1", parts.port or 5432

    async def _start_terminators(self) -> None:
        context = self.network.server_context()
        # The app user's and the migration's database is named in the secrets (`voiceagent`): this
        # cluster's database is the rehearsal's scratch one.
        postgres = TlsTerminator(context, self._pg_upstream, postgres=True,
                                 database_map={"voiceagent": self._database})
        self.network.route(self._cluster_host, 5432, await postgres.start())
        redis_tls = TlsTerminator(context, ("127.0.0.1", self.redis.port))
        self.network.route(self._redis_host, 6379, await redis_tls.start())
        self._cleanup.extend([postgres.stop, redis_tls.stop])
        self.hop(f"Aurora stand-in {self._cluster_host}:5432 (TLS) -> local Postgres; ElastiCache stand-in "
                 f"{self._redis_host}:6379 (TLS, auth token) -> redis-server")

    async def _start_lambdas(self) -> dict[str, LambdaEnvironment]:
        # Every name a process resolves is routed before the first process starts (its DNS is fixed).
        self._plan_front_door_names()
        await self._start_terminators()
        self.api_port, self.alb_ports = free_port(), {80: free_port(), 443: free_port()}
        for host in self.api_hosts:
            self.network.route(host, 443, self.api_port)
        for host in self.stream_hosts:
            for listener_port, local in self.alb_ports.items():
                self.network.route(host, listener_port, local)
        self.openai_port = free_port()
        self.network.route(OPENAI_HOST, 443, self.openai_port)
        self.xray = XRayDaemon()
        xray_address = f"127.0.0.1:{await self.xray.start()}"
        self._cleanup.append(self.xray.stop)
        started: dict[str, LambdaEnvironment] = {}
        for stack, logical_id, resource in self.assembly.find("AWS::Lambda::Function"):
            props = resource["Properties"]
            if not props.get("Runtime", "").startswith("python"):
                continue  # CDK's own providers (Node.js) answer CloudFormation only
            where = stack.where(logical_id)
            variables = self.resolver.resolve(stack, props.get("Environment", {}).get("Variables", {}))
            env = {**self.network.process_env(), **self.secrets.env(), **{k: str(v) for k, v in variables.items()},
                   "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(props.get("MemorySize", 128)),
                   "AWS_XRAY_DAEMON_ADDRESS": xray_address,
                   "REHEARSAL_FUNCTION_ARN": self.attribute(stack, logical_id, "Arn")}
            started[self.attribute(stack, logical_id, "Arn")] = LambdaEnvironment(
                where, self.physical_id(stack, logical_id), self.assembly.asset_dir(stack, logical_id),
                props["Handler"], env, int(props.get("Timeout", 3)), self.workdir / f"{logical_id}.log")
        for function in started.values():
            self._cleanup.append(function.stop)
            self.hop(f"Lambda {function.where}: {function.handler} loaded from its asset")
        return started

    def _plan_front_door_names(self) -> None:
        """Every host name the certificate must cover: the API (and custom domain), the ALB, the streams."""
        self.api_host = f"{self.api_id}.execute-api.{next(iter(self.assembly.stacks.values())).region}.amazonaws.com"
        self.api_hosts = {self.api_host}
        for stack, _, resource in self.assembly.find("AWS::ApiGatewayV2::DomainName"):
            self.api_hosts.add(str(self.resolver.resolve(stack, resource["Properties"]["DomainName"])))
        stack, alb_id, _ = self.assembly.one("AWS::ElasticLoadBalancingV2::LoadBalancer")
        self.alb_host = self.attribute(stack, alb_id, "DNSName")
        certificates = [c["CertificateArn"] for _, _, r in self.assembly.find("AWS::ElasticLoadBalancingV2::Listener")
                        for c in r["Properties"].get("Certificates", [])]
        from local.rehearsal.cloud_assembly import REHEARSAL_DOMAIN

        self.stream_hosts = {self.alb_host} | ({REHEARSAL_DOMAIN} if certificates else set())
        self.network.names.extend(sorted(self.api_hosts | self.stream_hosts | {OPENAI_HOST}))

    async def _migrate(self, lambdas: dict[str, LambdaEnvironment]) -> None:
        stack, logical_id, resource = self.assembly.one("Custom::DatabaseMigrations")
        props = self.resolver.resolve(stack, resource["Properties"])
        runner = next((f for f in lambdas.values() if "Migrations" in f.where and "Runner" in f.where), None)
        if runner is None:
            raise RehearsalFault(stack.where(logical_id, "ServiceToken"), "no migration runner Lambda")
        event = {"RequestType": "Create", "ServiceToken": props["ServiceToken"], "ResponseURL": "",
                 "StackId": self.resolver.pseudo(stack, "AWS::StackId"), "RequestId": "rehearsal",
                 "LogicalResourceId": logical_id, "ResourceType": resource["Type"], "ResourceProperties": props}
        started = time.perf_counter()
        result = await runner.invoke(self.session, event)
        self.hop(f"custom resource {stack.where(logical_id)} -> {runner.handler}: "
                 f"{result.get('Data', {}).get('Applied')} migrations applied ({time.perf_counter() - started:.1f} s)")

    async def _operator_setup(self) -> dict[str, Any]:
        """What infra/README.md tells the operator to do: fill the app secret, add a tenant and a number."""
        stack, logical_id, _ = self.assembly.one(
            "AWS::SecretsManager::Secret", lambda r: "STREAM_TOKEN_SECRET" in json.dumps(r["Properties"]))
        arn = self.physical[(stack.name, logical_id)]
        app_secret = json.loads(self.secrets.read(arn))
        # A vendor key too, so the task runs the OpenAI Agents runtime with the tenant's MCP tools; the
        # OpenAI stand-in is down (503), so each turn falls back to the offline policy, as in an outage.
        app_secret.update(TWILIO_AUTH_TOKEN=secrets.token_hex(16), TOOL_PROXY_SECRET=secrets.token_urlsafe(32),
                          OPENAI_API_KEY="sk-rehearsal")
        self.secrets.put(arn, json.dumps(app_secret))
        self.twilio_auth_token = app_secret["TWILIO_AUTH_TOKEN"]
        from shared.tenancy.admin import TenantAdmin

        number = "+1555" + str(secrets.randbelow(10**7)).zfill(7)
        async with TenantAdmin.connect(self.admin_dsn) as admin:
            tenant_id = await admin.create_tenant(f"rehearsal_{secrets.token_hex(3)}", "Rehearsal Salon")
            await admin.add_number(tenant_id, number)
            await admin.set_settings(tenant_id, **TENANT_SETTINGS)
            key = await admin.create_api_key(tenant_id, "rehearsal")
        self.hop(f"operator: app secret filled (put-secret-value), tenant {tenant_id} with number {number}")
        return {"tenant_id": str(tenant_id), "number": number, "api_key": key}

    async def _api(self, lambdas: dict[str, LambdaEnvironment]) -> None:
        stack, _, _ = self.assembly.one("AWS::ApiGatewayV2::Api")
        routes: dict[str, ApiRoute] = {}
        integrations = dict(stack.of_type("AWS::ApiGatewayV2::Integration"))
        for logical_id, route in stack.of_type("AWS::ApiGatewayV2::Route"):
            target = str(self.resolver.resolve(stack, route["Properties"]["Target"]))
            integration = integrations.get(target.removeprefix("integrations/").removesuffix("-rehearsal"))
            if integration is None:
                raise RehearsalFault(stack.where(logical_id, "Target"), f"no integration {target}")
            arn = str(self.resolver.resolve(stack, integration["Properties"]["IntegrationUri"]))
            if arn not in lambdas:
                raise RehearsalFault(stack.where(logical_id, "Target"), f"integration to unknown function {arn}")
            key = route["Properties"]["RouteKey"]
            routes[key] = ApiRoute(key, lambdas[arn], integration["Properties"].get("PayloadFormatVersion", "2.0"))
        self.api = HttpApiFrontDoor(self.api_hosts, routes, self.session, self.hop)
        runner = await serve(self.api.app(), self.api_port, self.network.server_context())
        outage = web.Application()
        outage.router.add_route("*", "/{tail:.*}", openai_outage)
        self._cleanup.append((await serve(outage, self.openai_port, self.network.server_context())).cleanup)
        self._cleanup.append(runner.cleanup)
        self.hop(f"HTTP API https://{self.api_host}: routes {sorted(routes)}")

    async def _task_and_alb(self) -> None:
        stack, task_id, task = self.assembly.one("AWS::ECS::TaskDefinition")
        props = task["Properties"]
        where = stack.where(task_id)
        [app] = [c for c in props["ContainerDefinitions"] if c.get("PortMappings")]
        image_uri = str(self.resolver.resolve(stack, app["Image"]))
        source = self.assembly.docker_image(stack, image_uri)
        context_dir = self.assembly.outdir / source["directory"]
        image = Image.parse(context_dir / source.get("dockerFile", "Dockerfile"))
        running = f"{sys.version_info.major}.{sys.version_info.minor}"
        if image.python_version() != running:
            raise RehearsalFault(f"{where} image (Dockerfile FROM)",
                                 f"{image.base}, but the code is tested on {running}")
        workdir = image.stage(context_dir, self.workdir / "image")
        container_port = int(app["PortMappings"][0]["ContainerPort"])
        environment = {e["Name"]: str(self.resolver.resolve(stack, e["Value"])) for e in app.get("Environment", [])}
        if environment.get("PORT") != str(container_port):
            raise RehearsalFault(f"{where}.ContainerDefinitions[app].Environment.PORT",
                                 f"{environment.get('PORT')} but the port mapping is {container_port}")
        execution_actions = role_actions(stack, props.get("ExecutionRoleArn"))
        injected: dict[str, str] = {}
        for secret in app.get("Secrets", []):
            if "secretsmanager:GetSecretValue" not in execution_actions:
                raise RehearsalFault(f"{where}.ExecutionRoleArn", "cannot read the container's secrets")
            injected[secret["Name"]] = self.secrets.field(str(self.resolver.resolve(stack, secret["ValueFrom"])))
        task_actions = role_actions(stack, props.get("TaskRoleArn"))
        task_arn = f"arn:aws:ecs:{stack.region}:{ACCOUNT_ID}:task/voiceagent/rehearsal"
        self.agent = EcsAgent(task_arn, task_actions)
        agent_port = free_port()
        runner = await serve(self.agent.app(), agent_port, None)
        self._cleanup.append(runner.cleanup)
        self.otlp = OtlpReceiver()
        otlp_port = await self.otlp.start()
        self._cleanup.append(self.otlp.stop)
        task_port = free_port()
        collector = environment.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").removeprefix("http://")
        # The task's own network namespace: its container port, and its sidecar collector on localhost.
        sockets = {f"0.0.0.0:{container_port}": f"127.0.0.1:{task_port}",
                   f"127.0.0.1:{container_port}": f"127.0.0.1:{task_port}"}
        if collector:
            sockets[collector] = f"127.0.0.1:{otlp_port}"
        env = {**image.env, **self.network.process_env(), **environment, **injected,
               "ECS_AGENT_URI": f"http://127.0.0.1:{agent_port}/v4/rehearsal", "AWS_REGION": stack.region,
               "AWS_DEFAULT_REGION": stack.region, "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE",
               "REHEARSAL_SOCKETS": json.dumps({**self.network.sockets, **sockets})}
        self.task = TaskProcess(image.command, workdir, env, self.workdir / "task.log",
                                int(app.get("StopTimeout", 30)))
        self._cleanup.append(self.task.stop)
        self.hop(f"ECS task {where}: `{' '.join(image.command)}` (Dockerfile CMD, {image.base}), port "
                 f"{container_port}, {len(injected)} secrets injected")
        await self._alb(stack, ("127.0.0.1", task_port))

    async def _alb(self, streaming: StackTemplate, address: tuple[str, int]) -> None:
        groups: dict[str, TargetGroup] = {}
        for logical_id, definition in streaming.of_type("AWS::ElasticLoadBalancingV2::TargetGroup"):
            p = definition["Properties"]
            attributes = {a["Key"]: a["Value"] for a in p.get("TargetGroupAttributes", [])}
            groups[logical_id] = TargetGroup(
                streaming.where(logical_id), p.get("HealthCheckPath", "/"),
                float(p.get("HealthCheckIntervalSeconds", 30)),
                float(p.get("HealthCheckTimeoutSeconds", 5)), int(p.get("HealthyThresholdCount", 5)),
                int(p.get("UnhealthyThresholdCount", 2)), p.get("Matcher", {}).get("HttpCode", "200"),
                float(attributes.get("deregistration_delay.timeout_seconds", 300)))
        [(group_id, group)] = groups.items()
        self.target = Target(address)
        group.targets.append(self.target)
        group.start(self.session)
        self._cleanup.append(group.stop)
        self.group = group
        network_stack, _, _ = self.assembly.one("AWS::ElasticLoadBalancingV2::LoadBalancer")
        for listener_id, listener in network_stack.of_type("AWS::ElasticLoadBalancingV2::Listener"):
            p = listener["Properties"]
            listener_arn = self.physical_id(network_stack, listener_id)
            rules = [ListenerRule(int(r["Properties"]["Priority"]),
                                  [v for c in r["Properties"]["Conditions"] if c["Field"] == "path-pattern"
                                   for v in c["PathPatternConfig"]["Values"]],
                                  groups[r["Properties"]["Actions"][0]["TargetGroupArn"]["Ref"]])
                     for _, r in streaming.of_type("AWS::ElasticLoadBalancingV2::ListenerRule")
                     if self.resolver.resolve(streaming, r["Properties"]["ListenerArn"]) == listener_arn]
            [action] = p["DefaultActions"]
            fixed = action.get("FixedResponseConfig", {})
            door = AlbFrontDoor(int(p["Port"]), rules, int(fixed.get("StatusCode", 404)),
                                fixed.get("MessageBody", ""), self.session, self.hop,
                                redirect_to_https=action["Type"] == "redirect")
            port = self.alb_ports[int(p["Port"])]
            context = self.network.server_context() if p["Protocol"] == "HTTPS" else None
            runner = await serve(door.app(), port, context)
            self._cleanup.append(runner.cleanup)
            self.hop(f"ALB listener {p['Protocol']}:{p['Port']}: {len(rules)} rule(s) to {group.where}, "
                     f"default {action['Type']} {fixed.get('StatusCode', '')}")
        started = time.monotonic()
        while not self.target.healthy:
            if not self.task.alive():
                raise RehearsalFault(f"{streaming.name} task", "the container exited: see task.log:\n"
                                     + (self.workdir / "task.log").read_text()[-3000:])
            if time.monotonic() - started > 90:
                raise RehearsalFault(f"{group.where}.HealthCheckPath",
                                     f"{group.path} never answered {group.matcher} within 90 s")
            await asyncio.sleep(0.2)
        self.hop(f"target group {group_id}: {group.path} healthy after {time.monotonic() - started:.1f} s "
                 f"({group.healthy_threshold} checks, {group.interval_s:.0f} s apart)")

    async def _call(self, tenant: dict[str, Any]) -> None:
        stack = self.assembly.one("AWS::ApiGatewayV2::Api")[0]
        webhook_url = str(self.resolver.resolve(stack, stack.template["Outputs"]["VoiceWebhookUrl"]["Value"]))
        http = self.network.http_session()
        self._cleanup.append(http.close)
        # The tenant API on the ALB: the streaming domain (HTTPS) where there is one, else the ALB's name.
        named = sorted(self.stream_hosts - {self.alb_host})
        tenant_api = f"https://{named[0]}/api" if named else f"http://{self.alb_host}/api"
        shape = DeployedShape(http, webhook_url, self.twilio_auth_token, tenant_api, self.admin_dsn, self.agent,
                              self.api, self.workdir, self.hop)
        await BookingCall(shape, tenant, self.report).run()

    async def _drain(self) -> None:
        await self.group.deregister(self.target, self.hop)
        code = await self.task.stop()
        self.hop(f"task stopped (SIGTERM) with exit code {code}")
        self._trace_summary()

    def _trace_summary(self) -> None:
        self.report.traces = self.otlp.traces()
        self.report.call_trace = call_trace_summary(self.api.calls, self.report.traces, self.xray.segments)
        trace = self.report.call_trace
        if trace:
            self.hop(f"trace {trace['root']}: {trace['task_spans']} task spans (OTLP), {trace['lambda_segments']} "
                     f"Lambda segments (X-Ray daemon), {trace['mcp_requests_in_trace']}/{trace['mcp_requests']} "
                     f"MCP requests in it; {trace['traces_with_call_spans']} trace(s) hold call spans")

async def rehearse(env_name: str, workdir: Path | None = None, out: Callable[[str], None] = print
                   ) -> RehearsalReport:
    folder = workdir or Path(tempfile.mkdtemp(prefix=f"rehearsal-{env_name}-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return await Rehearsal(env_name, folder, out).run()
    finally:
        if workdir is None:
            shutil.rmtree(folder, ignore_errors=True)

