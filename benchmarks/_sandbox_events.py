"""What Ray and a sandbox recorded of a create, as seconds after a start time.

Both the create profile (``benchmarks.profile``) and the burst timeline
(``benchmarks.burst_timeline``) split a create with these two sources: the
states Ray stamps on each sandbox actor's creation task, and the ``status``
events the sandbox stamps itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["creation_states", "status_events"]


def creation_states(wall0: float) -> dict[str, dict[str, float]]:
    """Per creation task name (it holds the sandbox id), when it reached each Ray task state."""
    from actors.ray_internals import task_state_times

    return {
        name: {state: stamp - wall0 for state, stamp in states.items()}
        for name, states in task_state_times("SandboxActor.__init__").items()
    }


def status_events(sandbox_id: str, wall0: float) -> list[tuple[dict[str, Any], float]]:
    """The sandbox's ``status`` payloads, each with its own time stamp."""
    import ray

    from actors.handles import sandbox_handle

    events = ray.get(sandbox_handle(sandbox_id).events.remote(0, 0.0), timeout=30)
    found: list[tuple[dict[str, Any], float]] = []
    for event in events:
        if event.get("type") != "status":
            continue
        stamp = datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00")).timestamp()
        found.append((event.get("payload") or {}, stamp - wall0))
    return found
