"""The floors and the naive path, measured without the service.

- ``vite_floor``: bare Vite on a prepared studio app, spawn -> ``/@vite/client`` 200.
- ``ray_actor_floor``: a bare Ray actor, ``.remote()`` -> first method call returned.
- ``naive_create``: the naive path per sandbox: fresh ``git clone`` +
  ``npm install`` (npm cache warm) + ``npm run dev`` -> ``/@vite/client`` 200.
- ``git_execute_floor``: atomic write + auto-commit through ``studio.git``,
  the lower bound of an execute through the API; ``git_execute_floor_cli`` the
  same with ``inprocess_commits`` off (the commit through the git CLI).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from benchmarks._proc import (
    TEMPLATE_DIR,
    commit_all,
    free_port,
    git,
    kill_group,
    sample_repo,
    spawn_group,
    wait_http_ok,
)
from benchmarks._ray import use_ray
from benchmarks.context import RunContext, Scenario
from benchmarks.results import ScenarioResult
from benchmarks.stats import summarize

__all__ = ["FLOOR_SCENARIOS", "install_cache_dir", "link_install_cache"]

READY_TIMEOUT = 60.0


def install_cache_dir(ctx: RunContext) -> Path:
    """The node's install cache for this run, shared by the floors and the service.

    A node's state directory outlives the service, so its install cache is warm
    for every sandbox but the node's very first: the service scenarios measure
    sandboxes with it warm, as the floors do.
    """
    from studio.layout import StateLayout

    return StateLayout(ctx.work_dir / "state").install_cache


def link_install_cache(state_dir: Path, install_cache: Path) -> Path:
    """``state_dir`` with its install cache linked to ``install_cache`` (created if missing).

    The state dirs of a run (the in-process setup, each node of a cluster)
    share the run's one install cache, so no ``npm ci`` is timed.
    """
    from studio.layout import StateLayout

    layout = StateLayout(state_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    install_cache.mkdir(parents=True, exist_ok=True)
    if not layout.install_cache.exists():
        layout.install_cache.symlink_to(install_cache, target_is_directory=True)
    return state_dir


def vite_floor(ctx: RunContext) -> ScenarioResult:
    """Bare Vite started directly on the template's studio app."""
    from studio.vite import (
        VITE_ENV,
        generate_studio_app,
        read_studio_config,
        vite_argv,
        write_studio_config,
    )

    result = ScenarioResult("vite_floor", "floor: bare Vite spawn -> /@vite/client 200")
    repo = sample_repo(ctx.work_dir / "vite-floor")
    studio = generate_studio_app(
        repo, template_dir=TEMPLATE_DIR, cache_root=install_cache_dir(ctx), port=free_port()
    )
    for index in range(ctx.count(15, 2)):
        # Each sandbox starts with an empty dependency cache: so does each sample.
        shutil.rmtree(studio / ".vite-cache", ignore_errors=True)
        config = read_studio_config(studio)
        config["port"] = port = free_port()
        write_studio_config(studio, config)
        start = time.monotonic()
        process = spawn_group(vite_argv(studio), repo, studio / f"vite-{index}.log", dict(VITE_ENV))
        try:
            ready = wait_http_ok("127.0.0.1", port, READY_TIMEOUT, process=process)
            result.samples.append(ready - start)
        finally:
            kill_group(process)
    return result


def ray_actor_floor(ctx: RunContext) -> ScenarioResult:
    """A bare actor: create, first call answered, killed."""
    import ray

    use_ray(ctx)

    @ray.remote(num_cpus=0)
    class Bare:
        def ping(self) -> int:
            return 1

    result = ScenarioResult("ray_actor_floor", "floor: bare Ray actor created -> first call")
    for _ in range(ctx.count(15, 2)):
        start = time.monotonic()
        actor = Bare.remote()  # type: ignore[attr-defined]
        ray.get(actor.ping.remote(), timeout=60)
        result.samples.append(time.monotonic() - start)
        ray.kill(actor)
    result.notes.append(
        "Ray keeps idle workers pre-started: a creation that finds one is faster "
        "than one that has to start a worker process."
    )
    return result


def _npm(args: list[str], cwd: Path) -> None:
    subprocess.run(["npm", *args], cwd=cwd, check=True, capture_output=True, timeout=600)


def naive_create(ctx: RunContext) -> ScenarioResult:
    """Clone + npm install + npm run dev per sandbox, with no shared work."""
    result = ScenarioResult(
        "naive_create", "naive: git clone + npm install + npm run dev -> ready", floor="vite_floor"
    )
    origin = sample_repo(ctx.work_dir / "naive-origin")
    # The studio app as part of the repository: npm installs it per clone.
    shutil.copytree(
        TEMPLATE_DIR,
        origin / "studio",
        ignore=shutil.ignore_patterns("node_modules", ".vite-cache", "dist", "studio.config.json"),
    )
    commit_all(origin, "the studio app")
    phases: dict[str, list[float]] = {"clone": [], "install": [], "dev": []}
    for index in range(ctx.count(5, 1)):
        target = ctx.work_dir / f"naive-{index}"
        port = free_port()
        start = time.monotonic()
        git(ctx.work_dir, "clone", "-q", str(origin), str(target))
        cloned = time.monotonic()
        studio = target / "studio"
        _npm(["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], studio)
        installed = time.monotonic()
        config = {"repoRoot": str(target), "port": port, "host": "127.0.0.1"}
        (studio / "studio.config.json").write_text(json.dumps(config))
        process = spawn_group(["npm", "run", "dev"], studio, target / "dev.log")
        try:
            ready = wait_http_ok("127.0.0.1", port, READY_TIMEOUT, process=process)
        finally:
            kill_group(process)
        result.samples.append(ready - start)
        phases["clone"].append(cloned - start)
        phases["install"].append(installed - cloned)
        phases["dev"].append(ready - installed)
        shutil.rmtree(target, ignore_errors=True)
    for phase, samples in phases.items():
        result.figures[f"{phase}_median_s"] = round(summarize(samples)["median"], 3)
    return result


def _git_execute(ctx: RunContext, result: ScenarioResult, *, inprocess: bool) -> ScenarioResult:
    """Atomic write + auto-commit at the studio.git level, no Ray, no HTTP."""
    from studio.config import format_commit_message
    from studio.git import Mirror
    from studio.naming import new_sandbox_id
    from studio.paths import write_file
    from studio.sandbox.files import FSYNC_EDITS

    where = ctx.work_dir / result.name
    origin = sample_repo(where / "origin")
    mirror = Mirror.ensure(where / "mirror.git", str(origin))
    sandbox_id = new_sandbox_id()
    worktree = mirror.add_worktree(
        sandbox_id, where / sandbox_id, "main", inprocess_commits=inprocess
    )
    relative = "src/components/Button/Bench.tsx"
    try:
        for index in range(ctx.count(200, 10)):
            start = time.monotonic()
            # Written as an edit writes it (studio/sandbox/files.py: no fsync).
            write_file(
                worktree.path,
                relative,
                f"export const Bench = () => <span>edit {index}</span>;\n",
                fsync=FSYNC_EDITS,
            )
            message = format_commit_message(
                "AI: {description} - {timestamp}", description=f"edit {index}", timestamp="now"
            )
            commit = worktree.auto_commit(message, [relative])
            result.samples.append(time.monotonic() - start)
            if not commit.committed:
                result.failures += 1
    finally:
        mirror.remove_worktree(worktree.path)
    return result


def git_execute_floor(ctx: RunContext) -> ScenarioResult:
    """The commit in this process with libgit2 (``inprocess_commits``, the default)."""
    result = ScenarioResult(
        "git_execute_floor", "floor: write_file + auto-commit in studio.git", unit="s"
    )
    return _git_execute(ctx, result, inprocess=True)


def git_execute_floor_cli(ctx: RunContext) -> ScenarioResult:
    """The same through the git CLI (GitPython): ``inprocess_commits=False``."""
    result = ScenarioResult(
        "git_execute_floor_cli",
        "floor: write_file + auto-commit in studio.git, git CLI (inprocess_commits=false)",
        unit="s",
    )
    return _git_execute(ctx, result, inprocess=False)


FLOOR_SCENARIOS = [
    Scenario("vite_floor", "bare Vite", vite_floor, ("floor",)),
    Scenario("ray_actor_floor", "bare Ray actor", ray_actor_floor, ("floor", "ray")),
    Scenario("naive_create", "naive path", naive_create, ("floor",)),
    Scenario("git_execute_floor", "git execute floor", git_execute_floor, ("floor",)),
    Scenario(
        "git_execute_floor_cli", "git execute floor, git CLI", git_execute_floor_cli, ("floor",)
    ),
]
