"""Actor options, PR provider specs and the state-dir scan: no Ray needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors._ray_backend import scan_state_dir
from actors._sandbox_worker import sandbox_runtime_env
from actors.manager_actor import HEAD_NODE_RESOURCE, manager_actor_options
from actors.sandbox_actor import provider_from_spec, sandbox_actor_options, seq_file
from studio.errors import InvalidRequest
from studio.pr import GitHubProvider

NODE = "ab" * 28  # a well-formed Ray node id


def test_sandbox_actor_options() -> None:
    options = sandbox_actor_options("sb_abc123", node_id=NODE, max_restarts=-1, use_slot=True)
    assert options["name"] == "sandbox:sb_abc123"
    assert options["namespace"] == "component-studio"
    assert options["lifetime"] == "detached"
    assert options["num_cpus"] == 0
    assert options["resources"] == {"sandbox_slot": 1}
    assert options["max_restarts"] == -1 and options["max_task_retries"] == -1
    assert "runtime_env" not in options  # a worker of its own, started for it
    strategy = options["scheduling_strategy"]
    assert isinstance(strategy, NodeAffinitySchedulingStrategy)
    assert strategy.node_id == NODE and strategy.soft is False
    bare = sandbox_actor_options("sb_abc123", node_id=None, max_restarts=0, use_slot=False)
    assert "resources" not in bare and "scheduling_strategy" not in bare
    # On a spare of the warm pool: its runtime env, which only such workers have.
    spare = sandbox_actor_options(
        "sb_abc123", node_id=NODE, max_restarts=-1, use_slot=True, on_spare=True
    )
    assert spare["runtime_env"] == sandbox_runtime_env()


def test_manager_actor_options_pin_the_head() -> None:
    options = manager_actor_options()
    assert options["name"] == "studio-manager" and options["lifetime"] == "detached"
    assert options["get_if_exists"] is True and options["max_restarts"] == -1
    assert options["resources"] == {HEAD_NODE_RESOURCE: 0.001} and options["num_cpus"] == 0


def test_provider_from_spec() -> None:
    asked: list[str] = []

    def token() -> str:
        asked.append("asked")
        return "t"

    assert provider_from_spec(None, token) is None
    assert provider_from_spec({"kind": "local"}, token) is None
    assert asked == []
    github = provider_from_spec({"kind": "github", "base_url": "http://gh/api"}, token)
    assert isinstance(github, GitHubProvider) and github.base_url == "http://gh/api"
    assert asked == ["asked"]
    with pytest.raises(InvalidRequest, match="unknown pull request provider"):
        provider_from_spec({"kind": "gitlab"}, token)


def test_scan_state_dir(tmp_path: Path) -> None:
    assert scan_state_dir("n1", str(tmp_path / "missing")).worktrees == []
    (tmp_path / "worktrees" / "sb_abc123").mkdir(parents=True)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "vite-sb_abc123.json").write_text("{}")
    seq_file(tmp_path, "sb_abc123").write_text('{"last_seq": 3}')
    scan = scan_state_dir("n1", str(tmp_path))
    assert scan.worktrees == [str(tmp_path / "worktrees" / "sb_abc123")]
    # The actor's seq file is not a pid record.
    assert scan.pid_files == [str(tmp_path / "run" / "vite-sb_abc123.json")]
