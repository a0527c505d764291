"""The ECS side: a task started from its task definition (the image's command from the Dockerfile, the
container's environment, secrets, port and health check) and the ECS agent's task-protection endpoint."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from local.rehearsal.cloud_assembly import RehearsalFault


@dataclass
class Image:
    """What the Dockerfile builds, read from the Dockerfile itself: base, workdir, ENV, COPYs, CMD."""

    base: str
    workdir: str
    env: dict[str, str]
    copies: list[tuple[list[str], str]]
    command: list[str]

    @classmethod
    def parse(cls, dockerfile: Path) -> Image:
        base, workdir, env, copies, command = "", "/", {}, [], []
        lines = dockerfile.read_text().replace("\\\n", " ").splitlines()
        for line in (raw.strip() for raw in lines):
            if not line or line.startswith("#"):
                continue
            instruction, _, rest = line.partition(" ")
            instruction = instruction.upper()
            if instruction == "FROM":
                base = rest.split()[0]
            elif instruction == "WORKDIR":
                workdir = rest.strip()
            elif instruction == "ENV":
                for pair in shlex.split(rest):
                    key, _, value = pair.partition("=")
                    env[key] = value
            elif instruction == "COPY":
                parts = rest.split()
                copies.append((parts[:-1], parts[-1]))
            elif instruction == "CMD":
                command = json.loads(rest)
        return cls(base, workdir, env, copies, command)

    def python_version(self) -> str:
        """`python:3.11-slim` -> `3.11`."""
        name, _, tag = self.base.partition(":")
        return tag.split("-")[0] if name.endswith("python") else ""

    def stage(self, context_dir: Path, root: Path) -> Path:
        """The image's WORKDIR as a folder: only what the Dockerfile COPYs into it."""
        workdir = root / self.workdir.lstrip("/")
        workdir.mkdir(parents=True, exist_ok=True)
        for sources, destination in self.copies:
            target = workdir / destination
            for source in sources:
                for path in sorted(context_dir.glob(source)):
                    if path.is_dir():
                        shutil.copytree(path, target if destination != "./" else workdir / path.name,
                                        dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
                    else:
                        shutil.copy2(path, workdir / path.name if destination.endswith("/") else target)
        return workdir


@dataclass
class ProtectionChange:
    at: float
    enabled: bool
    expires_in_minutes: int | None


@dataclass
class EcsAgent:
    """The agent endpoint inside a task (`$ECS_AGENT_URI`): task protection, acting with the task role's
    permissions from the template."""

    task_arn: str
    role_allows: set[str]
    history: list[ProtectionChange] = field(default_factory=list)
    enabled: bool = False
    expiration: str | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_put("/v4/rehearsal/task-protection/v1/state", self.put_state)
        app.router.add_get("/v4/rehearsal/task-protection/v1/state", self.get_state)
        return app

    def _protection(self) -> dict[str, Any]:
        return {"protection": {"ExpirationDate": self.expiration, "ProtectionEnabled": self.enabled,
                               "TaskArn": self.task_arn}}

    async def get_state(self, request: web.Request) -> web.Response:
        if "ecs:GetTaskProtection" not in self.role_allows:
            return self._denied("ecs:GetTaskProtection")
        return web.json_response(self._protection())

    def _denied(self, action: str) -> web.Response:
        return web.json_response({"error": {"Arn": self.task_arn, "Code": "AccessDeniedException",
                                            "Message": f"task role is not authorized to perform {action}"}},
                                 status=400)

    async def put_state(self, request: web.Request) -> web.Response:
        if "ecs:UpdateTaskProtection" not in self.role_allows:
            return self._denied("ecs:UpdateTaskProtection")
        try:
            body = await request.json()
            enabled = body["ProtectionEnabled"]
            minutes = body.get("ExpiresInMinutes")
            if not isinstance(enabled, bool) or (minutes is not None and not 1 <= int(minutes) <= 2880):
                raise ValueError("ProtectionEnabled must be a boolean, ExpiresInMinutes 1..2880")
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": {"Arn": self.task_arn, "Code": "InvalidParameterException",
                                                "Message": str(exc)}}, status=400)
        self.enabled = enabled
        self.expiration = ((datetime.now(UTC) + timedelta(minutes=int(minutes or 120))).isoformat()
                           if enabled else None)
        self.history.append(ProtectionChange(asyncio.get_running_loop().time(), enabled, minutes))
        return web.json_response(self._protection())


class TaskProcess:
    """The app container as a process: the image's command, in the image's folder, with the task's env."""

    def __init__(self, command: list[str], workdir: Path, env: dict[str, str], log_path: Path,
                 stop_timeout_s: int) -> None:
        if not command:
            raise RehearsalFault("Dockerfile CMD", "the image has no command")
        self.stop_timeout_s = stop_timeout_s
        self._log = log_path.open("ab")
        executable = sys.executable if command[0] in ("python", "python3") else command[0]
        self.process = subprocess.Popen([executable, *command[1:]], cwd=workdir, env=env,
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process.poll() is None

    async def stop(self) -> int:
        """SIGTERM, then SIGKILL after the container's stopTimeout, as ECS stops a task."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        try:
            code = await asyncio.wait_for(loop.run_in_executor(None, self.process.wait), self.stop_timeout_s)
        except TimeoutError:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return int(code)
