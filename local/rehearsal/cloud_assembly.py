"""The synthesized cloud assembly (cdk.out): stacks, templates, assets, and CloudFormation's intrinsic
functions resolved to the rehearsal's local equivalents."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_ID = "123456789012"
# Deploy-time values a prod synth needs (config.validate); the rehearsal supplies stand-ins when not given.
REHEARSAL_CERTIFICATE_ARN = f"arn:aws:acm:us-east-1:{ACCOUNT_ID}:certificate/rehearsal"
REHEARSAL_DOMAIN = "voice.rehearsal.example"


class RehearsalFault(RuntimeError):
    """A wiring fault: names the stack, resource and property at fault."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


def synthesize(env_name: str, outdir: Path, context: dict[str, Any] | None = None) -> Path:
    """`cdk synth` as the CLI runs it: the app command from cdk.json with CDK_OUTDIR and the context."""
    settings = json.loads((REPO_ROOT / "cdk.json").read_text())
    merged = {**settings["context"], "env": env_name, **(context or {})}
    if env_name != "dev":
        merged.setdefault("certificate_arn", REHEARSAL_CERTIFICATE_ARN)
        merged.setdefault("domain_name", REHEARSAL_DOMAIN)
    env = {**os.environ, "CDK_OUTDIR": str(outdir), "CDK_CONTEXT_JSON": json.dumps(merged),
           "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    env.pop("CDK_DEFAULT_ACCOUNT", None)
    command = settings["app"].split()
    if command[0].endswith("python"):
        command[0] = sys.executable  # the interpreter of this venv, as `make` would run it
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RehearsalFault("cdk synth", (done.stderr or done.stdout)[-3000:])
    return outdir


@dataclass
class StackTemplate:
    name: str
    region: str
    template: dict[str, Any]
    assets: dict[str, Any]

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.template.get("Resources", {}))

    def of_type(self, resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical_id, resource in self.resources.items():
            if resource["Type"] == resource_type:
                yield logical_id, resource

    def where(self, logical_id: str, prop: str = "") -> str:
        return f"{self.name}/{logical_id}" + (f".{prop}" if prop else "")


@dataclass
class CloudAssembly:
    outdir: Path
    stacks: dict[str, StackTemplate]

    @classmethod
    def load(cls, outdir: Path) -> CloudAssembly:
        manifest = json.loads((outdir / "manifest.json").read_text())
        stacks: dict[str, StackTemplate] = {}
        for name, artifact in manifest["artifacts"].items():
            if artifact["type"] != "aws:cloudformation:stack":
                continue
            region = artifact["environment"].rsplit("/", 1)[-1]
            template = json.loads((outdir / artifact["properties"]["templateFile"]).read_text())
            assets_file = outdir / f"{name}.assets.json"
            assets = json.loads(assets_file.read_text()) if assets_file.exists() else {}
            stacks[name] = StackTemplate(name, region, template, assets)
        return cls(outdir, stacks)

    def find(self, resource_type: str) -> Iterator[tuple[StackTemplate, str, dict[str, Any]]]:
        for stack in self.stacks.values():
            for logical_id, resource in stack.of_type(resource_type):
                yield stack, logical_id, resource

    def one(self, resource_type: str, predicate: Callable[[dict[str, Any]], bool] = lambda _: True
            ) -> tuple[StackTemplate, str, dict[str, Any]]:
        found = [hit for hit in self.find(resource_type) if predicate(hit[2])]
        if len(found) != 1:
            raise RehearsalFault(resource_type, f"expected one such resource, found {len(found)}")
        return found[0]

    def asset_dir(self, stack: StackTemplate, logical_id: str) -> Path:
        """The folder a function's `Code.S3Key` names, as the stack's asset manifest stages it."""
        key = str(stack.resources[logical_id]["Properties"].get("Code", {}).get("S3Key", ""))
        asset = stack.assets.get("files", {}).get(key.removesuffix(".zip"))
        if asset is None:
            raise RehearsalFault(stack.where(logical_id, "Code.S3Key"), f"no file asset {key} in the manifest")
        return self.outdir / asset["source"]["path"]

    def docker_image(self, stack: StackTemplate, image_uri: str) -> dict[str, Any]:
        """The image asset behind an ECR URI (`...:<hash>`), as the asset manifest stages it."""
        tag = image_uri.rsplit(":", 1)[-1]
        image = stack.assets.get("dockerImages", {}).get(tag)
        if image is None:
            raise RehearsalFault(f"{stack.name} image {tag}", "no such docker image asset")
        return dict(image["source"])


# --- intrinsic functions ---------------------------------------------------------------------------

Attribute = Callable[[StackTemplate, str, str], str]
PhysicalId = Callable[[StackTemplate, str], str]
DynamicReference = Callable[[str], str]
_DYNAMIC = re.compile(r"\{\{resolve:secretsmanager:(?P<ref>[^}]+)\}\}")
_SUB = re.compile(r"\$\{(?P<name>[^}!][^}]*)\}")


@dataclass
class Resolver:
    """Fn::* and Ref over the assembly, with physical ids and attributes from the rehearsal."""

    assembly: CloudAssembly
    physical_id: PhysicalId
    attribute: Attribute
    dynamic_reference: DynamicReference
    _seen: dict[tuple[str, str], Any] = field(default_factory=dict)

    def pseudo(self, stack: StackTemplate, name: str) -> str | None:
        return {"AWS::Region": stack.region, "AWS::AccountId": ACCOUNT_ID, "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": stack.name,
                "AWS::StackId": f"arn:aws:cloudformation:{stack.region}:{ACCOUNT_ID}:stack/{stack.name}/rehearsal",
                "AWS::NoValue": None}.get(name)

    def ref(self, stack: StackTemplate, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(stack, name)
        if name in stack.template.get("Parameters", {}):
            return stack.template["Parameters"][name].get("Default", "")
        if name not in stack.resources:
            raise RehearsalFault(stack.where(name), "Ref to a resource that is not in the template")
        return self.physical_id(stack, name)

    def output(self, stack_name: str, output_name: str) -> Any:
        stack = self.assembly.stacks.get(stack_name)
        if stack is None or output_name not in stack.template.get("Outputs", {}):
            raise RehearsalFault(f"{stack_name}.Outputs.{output_name}", "no such stack output")
        return self.resolve(stack, stack.template["Outputs"][output_name]["Value"])

    def resolve(self, stack: StackTemplate, value: Any) -> Any:
        if isinstance(value, str):
            return _DYNAMIC.sub(lambda m: self.dynamic_reference(m.group("ref")), value)
        if isinstance(value, list):
            return [self.resolve(stack, item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not next(iter(value)).startswith(("Fn::", "Ref")):
            return {k: self.resolve(stack, v) for k, v in value.items()}
        (fn, arg), = value.items()
        if fn == "Ref":
            return self.ref(stack, arg)
        if fn == "Fn::GetAtt":
            logical_id, attr = (arg if isinstance(arg, list) else arg.split(".", 1))
            if logical_id not in stack.resources:
                raise RehearsalFault(stack.where(logical_id), "Fn::GetAtt of a resource not in the template")
            return self.attribute(stack, logical_id, attr)
        if fn == "Fn::Join":
            sep, items = arg
            return self.resolve(stack, sep.join(str(self.resolve(stack, item)) for item in self.resolve(stack, items)))
        if fn == "Fn::Select":
            index, items = arg
            return self.resolve(stack, items)[int(self.resolve(stack, index))]
        if fn == "Fn::Split":
            sep, text = arg
            return str(self.resolve(stack, text)).split(sep)
        if fn == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else arg
            names = {k: self.resolve(stack, v) for k, v in variables.items()}

            def one(match: re.Match[str]) -> str:
                name = match.group("name")
                if name in names:
                    return str(names[name])
                if "." in name and not name.startswith("AWS::"):
                    return str(self.attribute(stack, *name.split(".", 1)))
                return str(self.ref(stack, name))

            return self.resolve(stack, _SUB.sub(one, text))
        if fn == "Fn::GetStackOutput":
            return self.output(arg["StackName"], arg["OutputName"])
        if fn == "Fn::ImportValue":
            name = self.resolve(stack, arg)
            for other in self.assembly.stacks.values():
                for output in other.template.get("Outputs", {}).values():
                    if self.resolve(other, output.get("Export", {}).get("Name")) == name:
                        return self.resolve(other, output["Value"])
            raise RehearsalFault(stack.name, f"Fn::ImportValue of an export no stack has: {name}")
        if fn == "Fn::GetAZs":
            return [f"{stack.region}a", f"{stack.region}b"]
        raise RehearsalFault(stack.name, f"the rehearsal cannot resolve {fn}")


def role_actions(stack: StackTemplate, role_ref: Any) -> set[str]:
    """The actions a role's inline policies (AWS::IAM::Policy on `{"Fn::GetAtt": [role, "Arn"]}`) allow."""
    role_id = role_ref["Fn::GetAtt"][0] if isinstance(role_ref, dict) and "Fn::GetAtt" in role_ref else ""
    actions: set[str] = set()
    for _, policy in stack.of_type("AWS::IAM::Policy"):
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                if statement.get("Effect") == "Allow":
                    found = statement["Action"]
                    actions.update([found] if isinstance(found, str) else found)
    return actions
