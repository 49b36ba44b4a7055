"""The repository's setup command in a sandbox: real git, real bwrap, real Vite, real Chromium.

The fixture ``tests/fixtures/repos/generated-css`` imports, from its
``.storybook/preview.tsx``, a stylesheet that its own ``scripts/gen.mjs``
generates and that is not committed (nor in its ``.gitignore``: the studio
must keep it out of commits by itself).
"""

# The fixtures are imported from test_sandbox_fixtures, then requested by name.
# ruff: noqa: F811

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest
from playwright.sync_api import Page, expect

from studio.commands import WriteFile
from studio.config import StudioSettings
from studio.messages import PrepareStep
from studio.models import RepositorySource
from studio.process.boundary import bwrap_problem
from studio.sandbox import ComponentStudioSandbox
from studio.sandbox.prepare import prepare_repository_steps
from studio.sandbox.setup_command import run_setup_command
from studio.state import SandboxState
from tests.studio.test_sandbox_fixtures import (  # noqa: F401 (fixtures)
    HOST,
    SandboxFactory,
    fast_config,
    install_cache,
    make_sandbox,
    settings,
)
from tests.support.gitrepo import git, repo_from_dir
from tests.template.pages import RENDER_TIMEOUT_MS, css_colour

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "repos" / "generated-css"
GENERATED = "src/generated/tokens.css"
GEN = "node scripts/gen.mjs"


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """The generated-css fixture as the repository's source (overrides the ui-kit one)."""
    return repo_from_dir(FIXTURE, tmp_path / "origin")


def _started(
    make_sandbox: SandboxFactory, settings: StudioSettings, **config: Any
) -> ComponentStudioSandbox:
    sandbox = make_sandbox(config=fast_config(settings, **config))
    sandbox.on_setup()
    assert sandbox.state is SandboxState.RUNNING
    return sandbox


def _open_badge(page: Page, sandbox: ComponentStudioSandbox) -> Any:
    url = sandbox.renderer_url
    assert url is not None
    page.goto(url.replace("localhost", HOST) + "#/Badge/Primary")
    canvas = page.locator("[data-testid=studio-canvas]")
    expect(canvas).to_have_attribute("data-component", "Badge")
    return canvas


def _errors(sandbox: ComponentStudioSandbox) -> list[dict[str, Any]]:
    return [
        event.model_dump(mode="json")["payload"]
        for event in sandbox.events.since(0)
        if event.type == "error"
    ]


@pytest.mark.browser
def test_the_generated_stylesheet_is_drawn_when_the_setup_command_ran(
    make_sandbox: SandboxFactory, settings: StudioSettings, browser_page: Page
) -> None:
    sandbox = _started(make_sandbox, settings, setup_command=GEN)
    report = sandbox.info().setup
    assert report is not None
    assert (report.status, report.exit_code, report.command) == (
        "ok",
        0,
        ["node", "scripts/gen.mjs"],
    )
    assert report.output == ["gen: wrote src/generated/tokens.css"]
    assert report.outputs == ["src/generated/"]
    assert (sandbox.worktree_path / GENERATED).is_file()

    canvas = _open_badge(browser_page, sandbox)
    expect(canvas).to_have_attribute("data-state", "ready", timeout=RENDER_TIMEOUT_MS)
    badge = canvas.get_by_text("Generated tokens")
    # Every value comes from tokens.json through the generated stylesheet.
    expect(badge).to_have_css("background-color", css_colour(browser_page, "rgb(12, 34, 56)"))
    expect(badge).to_have_css("color", css_colour(browser_page, "rgb(250, 240, 230)"))
    expect(badge).to_have_css("border-radius", "7px")


@pytest.mark.browser
def test_without_the_setup_command_the_missing_stylesheet_is_the_story_error(
    make_sandbox: SandboxFactory, settings: StudioSettings, browser_page: Page
) -> None:
    sandbox = _started(make_sandbox, settings)
    assert sandbox.info().setup is None
    assert not (sandbox.worktree_path / GENERATED).exists()
    _open_badge(browser_page, sandbox)
    # Vite cannot resolve the preview's import: its overlay names the file, as in Storybook.
    overlay = browser_page.locator("vite-error-overlay .message")
    expect(overlay).to_contain_text("../src/generated/tokens.css", timeout=RENDER_TIMEOUT_MS)
    expect(overlay).to_contain_text("Failed to resolve import")


def test_a_failing_setup_command_reports_its_output_and_the_sandbox_starts(
    make_sandbox: SandboxFactory, settings: StudioSettings
) -> None:
    sandbox = _started(make_sandbox, settings, setup_command=[*GEN.split(), "--fail"])
    report = sandbox.info().setup
    assert report is not None
    assert (report.status, report.exit_code, report.outputs) == ("failed", 3, [])
    assert report.output == ['gen: tokens.json: unknown token group "shadows" (fixture failure)']
    steps = [
        event.model_dump(mode="json")["payload"].get("step")
        for event in sandbox.events.since(0)
        if event.type == "status"
    ]
    assert [step for step in steps if step] == ["mirror", "worktree", "install", "setup", "vite"]
    [error] = _errors(sandbox)
    assert error["code"] == "setup_command_failed"
    assert "node scripts/gen.mjs --fail" in error["message"] and "exited 3" in error["message"]
    assert error["output"] == report.output
    # The sandbox is up; what the command did not make is missing, nothing else.
    assert sandbox.port is not None and not (sandbox.worktree_path / GENERATED).exists()


def test_a_setup_command_past_its_timeout_is_killed(
    make_sandbox: SandboxFactory, settings: StudioSettings
) -> None:
    marker = "setup-command-sleeper"
    sandbox = _started(
        make_sandbox,
        settings,
        setup_command=["node", "-e", f"/* {marker} */ setInterval(() => {{}}, 1000)"],
        setup_timeout=1.0,
    )
    report = sandbox.info().setup
    assert report is not None
    assert (report.status, report.exit_code) == ("timeout", None)
    assert report.output[-1] == "killed after 1 s (setup_timeout)"
    assert "timed out after 1 s" in _errors(sandbox)[0]["message"]
    left = [
        proc.pid
        for proc in psutil.process_iter(["cmdline"])
        if any(marker in part for part in proc.info["cmdline"] or ())
    ]
    assert left == []


def test_a_missing_program_is_a_failed_setup_not_a_failed_sandbox(
    make_sandbox: SandboxFactory, settings: StudioSettings
) -> None:
    sandbox = _started(make_sandbox, settings, setup_command="no-such-setup-tool --flag")
    report = sandbox.info().setup
    assert report is not None and report.status == "failed"
    assert any("no-such-setup-tool" in line for line in report.output), report.output


@pytest.mark.skipif(bwrap_problem() is not None, reason="bwrap cannot run here")
def test_the_setup_command_runs_inside_the_boundary(
    make_sandbox: SandboxFactory, settings: StudioSettings
) -> None:
    assert settings.boundary().enforced
    # The node's install cache, every sandbox's dependencies: inside, read-only.
    shared = settings.state_dir / "install-cache" / "escaped-by-setup.txt"
    # The state directory (registry, mirrors, other worktrees) is not there at all: only
    # the path down to the worktree exists, on the boundary's private tmpfs.
    state = settings.state_dir / "escaped-by-setup.txt"
    argv = [*GEN.split(), "--probe", str(shared), "--probe", str(state)]
    sandbox = _started(make_sandbox, settings, setup_command=argv)
    report = sandbox.info().setup
    assert report is not None and report.status == "ok"
    assert report.output[0] == f"probe: EROFS {shared.resolve()}" or report.output[0] == (
        f"probe: EROFS {shared}"
    )
    assert not shared.exists() and not shared.resolve().exists()
    assert not state.exists()
    # Inside, its own worktree is writable: the stylesheet is there.
    assert (sandbox.worktree_path / GENERATED).is_file()


def test_what_the_setup_command_made_is_never_committed_nor_cleaned(
    make_sandbox: SandboxFactory, settings: StudioSettings
) -> None:
    sandbox = _started(make_sandbox, settings, setup_command=GEN)
    worktree = sandbox.worktree_path

    def tree(ref: str) -> list[str]:
        listed = subprocess.run(
            ["git", "ls-tree", "-r", "--name-only", ref],
            cwd=worktree,
            capture_output=True,
            text=True,
            check=True,
        )
        return listed.stdout.split()

    result = sandbox.on_execute(
        WriteFile(
            command="write_file",
            file_path="src/components/Badge/Badge.tsx",
            content="export function Badge({ label }: { label: string }) {\n"
            '  return <strong className="gen-badge">{label}</strong>;\n}\n',
            description="bold badge",
        )
    )
    assert result.commit_hash is not None
    shown = git(worktree, "show", "--name-only", "--format=", result.commit_hash).split()
    assert shown == ["src/components/Badge/Badge.tsx"]
    assert GENERATED not in tree(sandbox.branch)
    # git sees nothing to commit: the generated directory is excluded for every worktree.
    assert git(worktree, "status", "--porcelain", "--untracked-files=all") == ""
    # A rollback resets and cleans the worktree: the generated stylesheet stays.
    sandbox.rollback(steps=1)
    assert (worktree / GENERATED).is_file()
    assert GENERATED not in tree(sandbox.branch)


def test_npm_run_prepare_runs_the_repositorys_own_script_in_the_boundary(
    tmp_path: Path, settings: StudioSettings
) -> None:
    # What npm would run on install, asked for by name: npm is on the boundary's PATH.
    package = repo_from_dir(FIXTURE, tmp_path / "package")
    report = run_setup_command(
        ["npm", "run", "prepare"],
        app_root=package,
        workspace_root=package,
        boundary=settings.boundary(),
        timeout=120,
    )
    assert report.status == "ok", report.output
    assert "gen: wrote src/generated/tokens.css" in report.output
    # No registry round trip for a newer npm, nothing of it in the output.
    assert not any(line.startswith("npm notice") for line in report.output), report.output
    assert (package / GENERATED).is_file()


def test_a_second_sandbox_of_the_same_commit_copies_what_the_first_made(
    make_sandbox: SandboxFactory, settings: StudioSettings
) -> None:
    config = fast_config(settings, setup_command=GEN)
    first = make_sandbox("sb_setup0001", config=config)
    first.on_setup()
    made = first.info().setup
    assert made is not None and (made.status, made.reused) == ("ok", False)
    second = make_sandbox("sb_setup0002", config=config)
    second.on_setup()
    copied = second.info().setup
    assert copied is not None
    assert (copied.status, copied.reused, copied.exit_code) == ("ok", True, 0)
    # The first run's report, and its files: the same bytes, not the same inode.
    assert (copied.output, copied.outputs) == (made.output, ["src/generated/"])
    mine, theirs = second.worktree_path / GENERATED, first.worktree_path / GENERATED
    assert mine.read_bytes() == theirs.read_bytes()
    assert mine.stat().st_ino != theirs.stat().st_ino
    assert git(second.worktree_path, "status", "--porcelain", "--untracked-files=all") == ""


def test_a_failed_run_is_not_kept_for_the_next_sandbox(
    make_sandbox: SandboxFactory, settings: StudioSettings
) -> None:
    config = fast_config(settings, setup_command=[*GEN.split(), "--fail"])
    for sandbox_id in ("sb_setup0003", "sb_setup0004"):
        sandbox = make_sandbox(sandbox_id, config=config)
        sandbox.on_setup()
        report = sandbox.info().setup
        assert report is not None and (report.status, report.reused) == ("failed", False)


def test_the_preparation_runs_it_once_and_the_first_sandbox_copies_it(
    make_sandbox: SandboxFactory, settings: StudioSettings, origin: Path
) -> None:
    config = fast_config(settings, setup_command=GEN)
    steps = list(
        prepare_repository_steps(
            settings, RepositorySource(name="ui-kit", source=str(origin)), config
        )
    )
    assert steps[:3] == [PrepareStep.MIRROR, PrepareStep.INSTALL, PrepareStep.SETUP]
    # Nothing of the scratch worktree is left; what the command made is kept on the node.
    assert list(settings.state_dir.joinpath("prepare").iterdir()) == []
    sandbox = make_sandbox(config=config)
    sandbox.on_setup()
    report = sandbox.info().setup
    assert report is not None and (report.status, report.reused) == ("ok", True)
    assert report.output == ["gen: wrote src/generated/tokens.css"]
    assert (sandbox.worktree_path / GENERATED).is_file()
    assert git(sandbox.worktree_path, "status", "--porcelain", "--untracked-files=all") == ""
