"""A sandbox actor stranded on a lost node must not leave Serve answering 503 forever.

After a node dies, calls on an actor pinned to it fail with Ray's
``ActorUnschedulableError``, which is not a ``RayActorError``. The backend must
drop the cached handle (the manager recreates the actor under the same name)
and answer from the registry instead.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors import handles
from serve.backend import ActorClient
from studio.errors import SandboxNotFound, ServiceUnavailable
from studio.naming import ACTOR_NAMESPACE, new_sandbox_id, sandbox_actor_name
from tests.serve.conftest import Api

pytestmark = [pytest.mark.ray]


@ray.remote(num_cpus=0)
class Stranded:
    def ping(self) -> str:
        return "never runs"


async def test_an_unschedulable_sandbox_actor_drops_its_cached_handle(api: Api) -> None:
    sandbox_id = new_sandbox_id()
    lost_node = secrets.token_hex(28)  # a node id no node has: like one that died
    actor = Stranded.options(  # type: ignore[attr-defined]
        name=sandbox_actor_name(sandbox_id),
        namespace=ACTOR_NAMESPACE,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=lost_node, soft=False),
    ).remote()
    client = ActorClient(manager_timeout=10, sandbox_timeout=30)
    try:
        handles.sandbox_handle(sandbox_id)  # cached, as after earlier requests
        with pytest.raises((SandboxNotFound, ServiceUnavailable)) as caught:
            await asyncio.wait_for(client.sandbox(sandbox_id, "ping"), 60)
        # The registry has no such sandbox: the answer comes from the manager, not 503.
        assert isinstance(caught.value, SandboxNotFound), caught.value
        assert sandbox_id not in handles._sandbox_handles
    finally:
        ray.kill(actor)
        handles.forget_sandbox_handle(sandbox_id)
