"""A task's own capacity: scale-in protection through the ECS agent endpoint while calls are live, and the
per-task call cap. The agent is the rehearsal's fake (local/rehearsal/ecs.py), which speaks the documented
`PUT/GET $ECS_AGENT_URI/task-protection/v1/state` shapes and acts with the task role's permissions."""

from __future__ import annotations

import asyncio
import multiprocessing

import aiohttp
import pytest
from aiohttp import web

from local.rehearsal.ecs import EcsAgent
from streaming_service.task_protection import TASK_ROLE_ACTIONS, ProtectionOptions, TaskProtection, Wanted
from streaming_service.workers import WorkerSlot
from tests.e2e.conftest import free_port, wait_until

TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/voiceagent/test"


@pytest.fixture
async def agent():
    async def start(allowed: tuple[str, ...] = TASK_ROLE_ACTIONS) -> tuple[EcsAgent, str]:
        fake = EcsAgent(TASK_ARN, set(allowed))
        runner = web.AppRunner(fake.app(), shutdown_timeout=0.5)  # the service may still hold a keep-alive
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return fake, f"http://127.0.0.1:{port}/v4/rehearsal"

    runners: list[web.AppRunner] = []
    yield start
    for runner in runners:
        await runner.cleanup()


async def test_protection_follows_live_calls_and_is_given_back_when_draining(stack_factory, agent) -> None:
    fake, uri = await agent()
    stack = await stack_factory(ecs_agent_uri=uri)
    assert stack.state.protection is not None  # (its first act, giving back what a previous process left, may be done)
    async with stack.call() as caller:
        await wait_until(lambda: stack.session(caller) is not None)
        await wait_until(lambda: fake.enabled)
        assert fake.history[-1].expires_in_minutes == ProtectionOptions().expires_in_minutes
        await caller.hang_up()
    await wait_until(lambda: not fake.enabled)  # idle: a scale-in may take this task again
    async with stack.call() as second:
        await wait_until(lambda: fake.enabled and stack.session(second) is not None)
        drain = asyncio.create_task(stack.state.drain(60))
        # Draining gives protection up at once, while the call is still live (the drain waits for it).
        await wait_until(lambda: not fake.enabled, timeout_s=5)
        assert stack.session(second) is not None and not drain.done()
        await second.hang_up()
        assert await drain == 0
    # A starting task first gives back any protection a previous process of it left (there was none here).
    assert [change.enabled for change in fake.history] == [False, True, False, True, False]


async def test_protection_is_renewed_before_it_expires(agent) -> None:
    fake, uri = await agent()
    protection = TaskProtection(uri, ProtectionOptions(expires_in_minutes=1, renew_before_expiry_s=59.5))
    task = asyncio.create_task(protection.run(lambda: Wanted(live_calls=1, draining=False)))
    try:
        await wait_until(lambda: len(fake.history) >= 3, timeout_s=10)  # renewed about every 0.5-1 s
    finally:
        task.cancel()
    assert all(change.enabled and change.expires_in_minutes == 1 for change in fake.history)


async def test_a_task_role_without_the_permission_is_reported_not_fatal(agent) -> None:
    fake, uri = await agent(allowed=())
    protection = TaskProtection(uri)
    async with aiohttp.ClientSession() as session:
        assert await protection.set(session, True) is False
    assert protection.failures == 1 and protection.enabled is None and not fake.enabled


async def test_a_full_task_says_so_and_refuses_new_streams(stack_factory) -> None:
    stack = await stack_factory(max_calls_per_task=1)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack.http_url}/ready") as ready:
            assert ready.status == 200
        async with stack.call() as caller:
            await wait_until(lambda: stack.session(caller) is not None)
            async with http.get(f"{stack.http_url}/ready") as ready:
                assert ready.status == 503 and (await ready.json())["status"] == "full"
            # Liveness stays green: a busy task must never look dead to the load balancer.
            async with http.get(f"{stack.http_url}/") as health:
                assert health.status == 200
            second = stack.call()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await second.connect()
            assert refused.value.status == 503
            assert stack.state.refused_full == 1 and stack.session(caller) is not None


async def test_a_burst_of_upgrades_never_overshoots_the_cap(stack_factory) -> None:
    stack = await stack_factory(max_calls_per_task=2)
    callers = [stack.call() for _ in range(5)]
    outcomes = await asyncio.gather(*(caller.connect() for caller in callers), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, aiohttp.WSServerHandshakeError)]
    assert len(refused) == 3 and all(o.status == 503 for o in refused)
    await wait_until(lambda: len(stack.state.sessions) == 2)
    assert stack.state.admitting == 0 and stack.state.refused_full == 3


async def test_a_worker_of_several_admits_against_the_whole_task_and_publishes_its_calls(stack_factory) -> None:
    # This service is worker 0 of a task of two; slot 1 of the task's shared counts is the other worker's.
    live = multiprocessing.get_context("spawn").Array("i", 2, lock=False)
    live[1] = 2
    stack = await stack_factory(max_calls_per_task=3, worker=WorkerSlot(live, 0))
    async with stack.call() as first:
        await wait_until(lambda: live[0] == 1)
        # 2 there and 1 here: the task is full, whatever this worker alone holds.
        refused = stack.call()
        with pytest.raises(aiohttp.WSServerHandshakeError) as full:
            await refused.connect()
        assert full.value.status == 503
        # The other worker's calls end: this one takes the task's whole cap, not a fixed half of it.
        live[1] = 0
        async with stack.call() as second, stack.call() as third:
            await wait_until(lambda: all(stack.session(c) is not None for c in (first, second, third)))
            assert live[0] == 3
            async with aiohttp.ClientSession() as http, http.get(f"{stack.http_url}/ready") as ready:
                assert ready.status == 503 and (await ready.json())["status"] == "full"
    await wait_until(lambda: live[0] == 0)
    assert stack.state.refused_full == 1
