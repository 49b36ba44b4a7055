"""How the registry's sandboxes are shown: as SandboxInfo for the API, as gauges for metrics."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from actors import metrics
from studio.models import CommitInfo, SandboxInfo
from studio.state import ACTIVE_STATES, SandboxState
from studio.store import CommitRecord, SandboxRecord

__all__ = ["info_from_record", "is_loopback", "record_gauges", "renderer_url"]


def renderer_url(host: str, port: int | None) -> str | None:
    """``http://<host>:<port>/`` of a sandbox's Vite, or None without a port."""
    if port is None:
        return None
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` listens on this node's loopback only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def info_from_record(
    record: SandboxRecord, commits: Sequence[CommitRecord], renderer_host: str
) -> SandboxInfo:
    """What the registry says of a sandbox; port and renderer only while it is live.

    ``renderer_host`` is where a browser reaches the node the sandbox runs on.
    """
    live = record.state in ACTIVE_STATES
    return SandboxInfo(
        id=record.id,
        owner=record.owner,
        repository_id=record.repository_id,
        status=record.state,
        renderer_url=renderer_url(renderer_host, record.port) if live else None,
        branch=record.branch,
        base_commit=record.base_commit,
        git_commits=[
            CommitInfo(hash=c.hash, message=c.message, timestamp=c.timestamp) for c in commits
        ],
        last_activity=record.last_activity,
        restarts=record.restarts,
        node=record.node_id,
        port=record.port if live else None,
        error=record.error,
        last_seq=record.last_seq,
        pr_url=record.pr_url,
        pr_number=record.pr_number,
    )


def record_gauges(records: Sequence[SandboxRecord]) -> None:
    """Set the sandboxes-by-state gauge (every state, zeros included) from the registry."""
    counts = {state: 0 for state in SandboxState}
    for record in records:
        counts[record.state] += 1

    def update() -> None:
        gauge = metrics.sandboxes_by_state()
        for state, count in counts.items():
            gauge.set(count, tags={"state": state.value})

    metrics.record(update)
