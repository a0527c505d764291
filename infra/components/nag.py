"""cdk-nag acknowledgements: every suppression carries its reason next to the construct it covers."""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

LAMBDA_BASIC_EXECUTION = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
LAMBDA_VPC_ACCESS = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
ANY_RESOURCE = "Resource::*"


def acknowledge(scope: IConstruct, rule_id: str, reason: str, *, findings: Iterable[str] = ()) -> None:
    """Accept an AwsSolutions rule on `scope` and below.

    Rules that report per finding (IAM4, IAM5) need each `Rule[Finding]` id; the bare rule id is
    acknowledged too, for rules that report once per resource.
    """
    ids = [rule_id, *(f"{rule_id}[{finding}]" for finding in findings)]
    for acknowledged in ids:
        Validations.of(scope).acknowledge(Acknowledgment(id=acknowledged, reason=reason))
