"""A node prepared ahead of its sandboxes (studio.sandbox.prepare): real git, Node and Vite."""

# The fixtures are imported from test_sandbox_fixtures, then requested by name.
# ruff: noqa: F811

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from studio.config import StudioSettings
from studio.errors import InvalidConfig, MissingBaseBranch, ProcessStartError
from studio.install.cache import ensure_node_modules
from studio.layout import StateLayout
from studio.messages import PrepareStep
from studio.models import RepositorySource
from studio.ports import PortAllocator
from studio.process.boundary import Boundary
from studio.sandbox import prepare as prepare_module
from studio.sandbox import prepare_repository, prepare_repository_steps, prepare_template
from studio.vite import SHELL_FILE, read_studio_config
from studio.vite.deps import SEED_ROOT, template_fingerprint
from studio.vite.server import _TEMPLATE_IGNORE
from studio.vite.shell import SHELL_ROOT
from tests.actors.conftest import processes_under
from tests.studio.test_sandbox_fixtures import (  # noqa: F401 (fixtures)
    TEMPLATE,
    SandboxFactory,
    install_cache,
    make_sandbox,
    origin,
    settings,
)
from tests.support.gitrepo import git

DEPS = Path(".studio") / ".vite-cache" / "deps"


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """The studio template plus a file of this test's own: a shell and a seed no test has made."""
    copy = tmp_path / "template"
    shutil.copytree(TEMPLATE, copy, ignore=shutil.ignore_patterns("node_modules", ".vite-cache"))
    (copy / "test-marker.txt").write_text(str(tmp_path))
    return copy


def _prepared_parts(settings: StudioSettings) -> tuple[Path, Path]:
    """Where the template's shell and deps seeds are kept on this node."""
    modules = ensure_node_modules(
        settings.template_dir, StateLayout(settings.state_dir).install_cache
    )
    fingerprint = template_fingerprint(settings.template_dir, _TEMPLATE_IGNORE)
    return modules.parent / SHELL_ROOT / fingerprint, modules.parent / SEED_ROOT


def _assert_nothing_left(settings: StudioSettings, origin: Path) -> None:
    layout = StateLayout(settings.state_dir)
    assert not (layout.prepare.is_dir() and any(layout.prepare.iterdir()))
    mirror = layout.mirror("ui-kit")
    assert git(mirror, "for-each-ref", "refs/heads/") == ""  # the scratch branch is gone
    assert git(mirror, "worktree", "list", "--porcelain").count("worktree ") == 1  # the bare one
    assert not processes_under(settings.state_dir)
    ports = PortAllocator(layout.locks, host="127.0.0.1", base=settings.vite_port, count=30)
    assert ports.reservations() == {}
    assert not list(layout.run.glob("*.json"))  # no pid record of a Vite
    # The origin saw nothing: no branch of the preparation reached it.
    assert git(origin, "for-each-ref", "--format=%(refname)", "refs/heads/") == "refs/heads/main"


def test_prepare_template_is_the_template_install_cache_entry(settings: StudioSettings) -> None:
    modules = prepare_template(settings)
    assert modules == ensure_node_modules(TEMPLATE, StateLayout(settings.state_dir).install_cache)
    assert (modules / "vite" / "package.json").is_file()


def test_a_node_that_cannot_make_the_boundary_refuses_its_preparation(
    settings: StudioSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No bwrap on this node's PATH: no Vite could start inside the boundary.
    empty = tmp_path / "bin"
    empty.mkdir()
    assert settings.boundary().enforced
    with monkeypatch.context() as patch:
        patch.setenv("PATH", str(empty))
        with pytest.raises(InvalidConfig, match=r"not installed.*ISOLATION=none"):
            prepare_template(settings)
    # Without the boundary nothing is asked of the node.
    assert prepare_template(settings.model_copy(update={"isolation": "none"})).is_dir()


def test_a_prepared_repository_gives_its_first_sandbox_the_shell_and_the_deps_seed(
    settings: StudioSettings, template: Path, origin: Path, make_sandbox: SandboxFactory
) -> None:
    node = settings.model_copy(update={"template_dir": template})
    shells, seeds = _prepared_parts(node)
    seeds_before = set(seeds.iterdir()) if seeds.is_dir() else set()
    assert not shells.exists()

    prepare_repository(
        node, RepositorySource(name="ui-kit", source=str(origin)), node.default_config()
    )

    # The mirror is there for the first sandbox, the shell built, the deps published.
    assert (StateLayout(node.state_dir).mirror("ui-kit") / "HEAD").is_file()
    [shell] = shells.glob("*.js")
    [seed] = set(seeds.iterdir()) - seeds_before
    assert (seed / "_metadata.json").is_file()
    _assert_nothing_left(node, origin)

    sandbox = make_sandbox(node_settings=node)
    sandbox.on_setup()
    studio = sandbox.worktree_path / ".studio"
    assert (studio / SHELL_FILE).samefile(shell)
    assert Path(read_studio_config(studio)["depsSeedDir"]).samefile(seed)
    # Its Vite started from the seed: its optimised React is the seed's file, linked;
    # inside the OS boundary a copy (the seed and the worktree are two bind mounts, and
    # the kernel links across none, EXDEV).
    published = json.loads((seed / "_metadata.json").read_text())
    bundle = published["optimized"]["react-dom/client"]["file"]
    started_from = sandbox.worktree_path / DEPS / bundle
    if node.boundary().enforced:
        assert started_from.read_bytes() == (seed / bundle).read_bytes()
    else:
        assert started_from.stat().st_ino == (seed / bundle).stat().st_ino


def test_with_the_shell_and_the_seed_off_a_preparation_builds_neither(
    settings: StudioSettings, template: Path, origin: Path
) -> None:
    node = settings.model_copy(
        update={"template_dir": template, "prebuilt_shell": False, "vite_deps_seed": False}
    )
    shells, seeds = _prepared_parts(node)
    seeds_before = set(seeds.iterdir()) if seeds.is_dir() else set()
    prepare_repository(
        node, RepositorySource(name="ui-kit", source=str(origin)), node.default_config()
    )
    assert (StateLayout(node.state_dir).mirror("ui-kit") / "HEAD").is_file()
    assert not shells.exists()
    assert (set(seeds.iterdir()) if seeds.is_dir() else set()) == seeds_before
    _assert_nothing_left(node, origin)


def test_a_base_branch_that_does_not_exist_fails_and_leaves_nothing(
    settings: StudioSettings, origin: Path
) -> None:
    source = RepositorySource(name="ui-kit", source=str(origin), default_branch="nope")
    with pytest.raises(MissingBaseBranch):
        prepare_repository(settings, source, settings.default_config())
    _assert_nothing_left(settings, origin)


def test_the_steps_are_announced_in_order_and_the_story_index_is_counted(
    settings: StudioSettings, template: Path, origin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = settings.model_copy(update={"template_dir": template})
    steps = prepare_repository_steps(
        node, RepositorySource(name="ui-kit", source=str(origin)), node.default_config()
    )
    seen: list[PrepareStep | str] = []

    class SeenStarting(prepare_module._StoryCount):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.append("index read from here")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "_StoryCount", SeenStarting)
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as done:
            prepared = done.value
            break
    # This template's seed is new: Vite pre-bundles it (the deps step), the story index
    # read beside it by a process started before it.
    assert seen == [
        PrepareStep.MIRROR,
        PrepareStep.INSTALL,
        "index read from here",
        PrepareStep.DEPS,
        PrepareStep.STORIES,
    ]
    # Every named export of the ui-kit's stories files is a story on its page.
    declared = sum(
        len(re.findall(r"^export const \w+", path.read_text(), re.MULTILINE))
        for path in origin.rglob("*.stories.tsx")
    )
    assert declared > 0
    assert prepared.stories == declared
    _assert_nothing_left(node, origin)


def test_the_story_index_process_says_why_it_failed_and_is_never_left_running(
    tmp_path: Path,
) -> None:
    studio_dir = tmp_path / "studio"
    studio_dir.mkdir()
    # A "node" that fails as a broken .storybook/main makes it fail, and one that hangs.
    failing = tmp_path / "failing-node"
    failing.write_text("#!/bin/sh\necho 'SyntaxError: main.ts: Unexpected token' >&2\nexit 3\n")
    hanging = tmp_path / "hanging-node"
    hanging.write_text("#!/bin/sh\nexec sleep 300\n")
    for script in (failing, hanging):
        script.chmod(0o755)
    boundary = Boundary()  # none: the fakes need no namespace
    failing_count = prepare_module._StoryCount(studio_dir, tmp_path, boundary, node=str(failing))
    with failing_count as count, pytest.raises(ProcessStartError) as raised:
        count.result()
    assert "node exited 3" in str(raised.value)
    assert "SyntaxError: main.ts: Unexpected token" in raised.value.details["output"]
    with prepare_module._StoryCount(studio_dir, tmp_path, boundary, node=str(hanging)) as count:
        proc = count._proc
    # Left without its result (a preparation whose deps step failed): killed, reaped.
    assert proc.returncode == -9
