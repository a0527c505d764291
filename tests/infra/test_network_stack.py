from __future__ import annotations

from aws_cdk.assertions import Match

from tests.infra.conftest import FAKE_CERTIFICATE_ARN, SynthesizedEnvironment


def _alb_attributes(env: SynthesizedEnvironment) -> dict[str, str]:
    albs = env.template("network").find_resources("AWS::ElasticLoadBalancingV2::LoadBalancer")
    (alb,) = albs.values()
    return {a["Key"]: a["Value"] for a in alb["Properties"]["LoadBalancerAttributes"]}


def test_alb_idle_timeout_outlasts_a_call(every_env: SynthesizedEnvironment) -> None:
    assert int(_alb_attributes(every_env)["idle_timeout.timeout_seconds"]) >= 3600


def test_alb_access_logs_on(every_env: SynthesizedEnvironment) -> None:
    assert _alb_attributes(every_env)["access_logs.s3.enabled"] == "true"


def test_dev_serves_plain_http_only(dev: SynthesizedEnvironment) -> None:
    listeners = dev.template("network").find_resources("AWS::ElasticLoadBalancingV2::Listener")
    assert [listener["Properties"]["Protocol"] for listener in listeners.values()] == ["HTTP"]


def test_prod_terminates_tls_with_the_context_certificate(prod: SynthesizedEnvironment) -> None:
    template = prod.template("network")
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {"Protocol": "HTTPS", "Port": 443, "Certificates": [{"CertificateArn": FAKE_CERTIFICATE_ARN}]},
    )
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {"Protocol": "HTTP", "DefaultActions": [Match.object_like({"Type": "redirect"})]},
    )


def test_nat_gateways_per_environment(dev: SynthesizedEnvironment, prod: SynthesizedEnvironment) -> None:
    dev.template("network").resource_count_is("AWS::EC2::NatGateway", 1)
    prod.template("network").resource_count_is("AWS::EC2::NatGateway", 2)


def test_endpoints_keep_aws_traffic_off_the_nat(dev: SynthesizedEnvironment) -> None:
    template = dev.template("network")
    endpoints = template.find_resources("AWS::EC2::VPCEndpoint")
    names = " ".join(str(e["Properties"]["ServiceName"]) for e in endpoints.values())
    for service in ("secretsmanager", "ecr.api", "ecr.dkr", "logs", "xray", "s3"):
        assert service in names
    template.resource_count_is("AWS::EC2::FlowLog", 1)
