"""The agent's loop as MCP tools: the same backend calls as the REST routes (serve.routes).

Each tool authorizes its caller the way a route does (``backend.authorize``:
another user's sandbox is "not found"), calls the manager or the sandbox's
actor with the arguments the matching route passes, and answers with the
route's JSON as text and as structured content. Pictures (a screenshot, the
first affected story after an edit) come as MCP image content. The caller,
the answer's shape and the errors in the API's words: serve.mcp_calls.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ContentBlock, ToolAnnotations
from pydantic import Field

from serve.errors import status_for
from serve.mcp_calls import ToolCall, answer, png_content, tool_errors
from serve.routes import check_sizes, renderer_url_of
from serve.schemas import FinalizeRequest, RepositoryView, RollbackRequest
from studio import __version__
from studio.commands import (
    DeleteFile,
    ExecuteResult,
    FileContent,
    ListFiles,
    ReadFile,
    WriteFiles,
)
from studio.errors import StudioError
from studio.models import CommitInfo, FinalizeResult, RollbackResult, SandboxInfo
from studio.render import RenderVerdict, WaitFor
from studio.render.screenshot import DEFAULT_VIEWPORT, parse_viewport
from studio.render.screenshot import Viewport as PageSize
from studio.store import RepositoryRecord

__all__ = ["INSTRUCTIONS", "build_mcp_server"]

INSTRUCTIONS = """\
Component Studio gives you a sandbox: a git branch of a UI repository with a live \
Vite dev server rendering its components and stories in a headless browser.
The loop: list_repositories -> create_sandbox -> list_components / list_files / read_file \
-> write_files (every write is a commit; it answers with the render verdict and a \
screenshot) -> fix until the verdict is "ok" -> finalize (a pull request) or \
delete_sandbox. rollback and history move along the branch's commits; screenshot shows \
any story at any viewport."""

SandboxId = Annotated[
    str, Field(description="The sandbox's id (sb_...), as create_sandbox answered it.")
]
Viewport = Annotated[
    str,
    Field(max_length=16, description="WIDTHxHEIGHT in CSS pixels, say 375x667; '' = 1024x768."),
]


async def _first_story_picture(
    call: ToolCall, sandbox_id: str, verdict: RenderVerdict | None, viewport: str
) -> tuple[dict[str, Any], list[ContentBlock]]:
    """The screenshot of the verdict's first affected story, and what it shows.

    None after a compile error: the page then shows only that the module did not
    load, which the verdict says with file, line and code frame, and the picture
    would cost the agent a render and its tokens for nothing. The commit stands
    whatever the picture does: a picture that cannot be taken is said in the
    answer (``screenshot.error``), not raised.
    """
    if verdict is None or not verdict.stories:
        return {"story": None, "reason": "the edit affected no story"}, []
    story = verdict.stories[0].id
    if verdict.status == "compile_error":
        return {"story": story, "reason": "a compile error: the verdict says where"}, []
    try:
        shot: dict[str, Any] = await call.sandbox(sandbox_id, "screenshot", story, viewport)
    except StudioError as exc:
        return {"story": story, "error": f"{status_for(exc)} {exc.code}: {exc.message}"}, []
    return {"story": story, "commit": shot["commit"]}, [png_content(shot["png"])]


def _wait_for(viewport: PageSize) -> WaitFor:
    """``screenshot`` where the picture the answer shows is the verdict's own (the default
    viewport: taken on the verdict's page, the screenshot then a cache hit); else
    ``render`` and a picture rendered at that viewport."""
    return "screenshot" if viewport == DEFAULT_VIEWPORT else "render"


# -- the tools ------------------------------------------------------------------


@tool_errors
async def list_repositories(ctx: Context[Any, Any]) -> CallToolResult:
    """The UI repositories you may create sandboxes on, with their ids and whether each is
    prepared (`preparation.status`: preparing | ready | failed). Next: create_sandbox with
    a repository's `id`."""
    call = ToolCall(ctx)
    records: list[RepositoryRecord] = await call.replica.backend.manager(
        "list_repositories", call.user.name, call.user.is_admin
    )
    views = [RepositoryView.of(r, is_admin=call.user.is_admin) for r in records]
    return answer({"repositories": views})


@tool_errors
async def create_sandbox(
    repository_id: Annotated[
        int, Field(ge=1, le=2**63 - 1, description="A repository's id from list_repositories.")
    ],
    ctx: Context[Any, Any],
) -> CallToolResult:
    """Create a sandbox on a repository: a new branch and a running dev server. Answers when
    it runs (seconds on a prepared repository, longer on its first use) with `sandbox_id`,
    `branch` and `renderer_url` (the live page, to hand to a person: it carries a
    short-lived ticket). Next: list_components to see what it renders, then
    read_file/write_files."""
    call = ToolCall(ctx)
    info: SandboxInfo = await call.replica.backend.manager(
        "create_sandbox",
        call.user.name,
        repository_id,
        {},
        True,
        is_admin=call.user.is_admin,
        seconds=900.0,
    )
    call.replica.backend.remember_owner(info.id, call.user.name)
    page = await renderer_url_of(call.request, call.replica, info)
    return answer(
        {
            "sandbox_id": info.id,
            "branch": info.branch,
            "status": info.status.value,
            "renderer_url": page,
        }
    )


@tool_errors
async def list_components(sandbox_id: SandboxId, ctx: Context[Any, Any]) -> CallToolResult:
    """The components the sandbox renders: per component its `id`, `module` (the file to
    edit), exports, its stories file and `stories`, each with the story `id` screenshot
    takes, its name, its literal `args` and, where the stories file declares them, its
    `argTypes` (controls, options, descriptions). Next: read_file on a module or its
    stories file, or screenshot a story."""
    call = ToolCall(ctx)
    index: dict[str, Any] = await call.sandbox(sandbox_id, "components")
    return answer(index)


@tool_errors
async def list_files(
    sandbox_id: SandboxId,
    ctx: Context[Any, Any],
    directory: Annotated[
        str, Field(max_length=4096, description="Directory to list; '' lists the whole repository.")
    ] = "",
) -> CallToolResult:
    """The repository's files (paths relative to its root) under `directory`, at the
    branch's current commit. Next: read_file."""
    call = ToolCall(ctx)
    result: ExecuteResult = await call.sandbox(
        sandbox_id, "execute", ListFiles(command="list_files", file_path=directory).model_dump()
    )
    return answer({"files": result.files or []})


@tool_errors
async def read_file(
    sandbox_id: SandboxId,
    path: Annotated[str, Field(min_length=1, max_length=4096, description="Repo-relative path.")],
    ctx: Context[Any, Any],
) -> CallToolResult:
    """One file's text at the branch's current commit. Next: write_files with your change
    (send each file whole)."""
    call = ToolCall(ctx)
    result: ExecuteResult = await call.sandbox(
        sandbox_id, "execute", ReadFile(command="read_file", file_path=path).model_dump()
    )
    return answer({"path": path, "content": result.content})


@tool_errors
async def write_files(
    sandbox_id: SandboxId,
    files: Annotated[
        list[FileContent],
        Field(
            min_length=1,
            max_length=200,
            description="Files to create or replace, each whole: {file_path, content}.",
        ),
    ],
    ctx: Context[Any, Any],
    description: Annotated[
        str, Field(max_length=500, description="What the change does (the commit message).")
    ] = "",
    viewport: Viewport = "",
) -> CallToolResult:
    """Write files as one commit and wait until the stories they touch re-rendered. Answers
    with `commit_hash` and `render`: `status` ok | compile_error | runtime_error | timeout,
    and per affected story its status and error (file:line:column and code frame for a
    compile error, message and component stack for a runtime one, console errors), plus
    the screenshot of the first affected story as an image (none after a compile error).
    The commit is made whatever the verdict: on an error, fix it with another write_files,
    or rollback."""
    call = ToolCall(ctx)
    # a bad viewport is refused before the commit, not after
    wait = _wait_for(parse_viewport(viewport))
    command = WriteFiles(command="write_files", files=files, description=description, wait=wait)
    check_sizes(command, call.replica.settings.max_file_bytes)
    result: ExecuteResult = await call.sandbox(sandbox_id, "execute", command.model_dump())
    shown, picture = await _first_story_picture(call, sandbox_id, result.render, viewport)
    return answer({**result.model_dump(mode="json"), "screenshot": shown}, *picture)


@tool_errors
async def delete_file(
    sandbox_id: SandboxId,
    path: Annotated[str, Field(min_length=1, max_length=4096, description="Repo-relative path.")],
    ctx: Context[Any, Any],
    description: Annotated[str, Field(max_length=500, description="The commit message.")] = "",
) -> CallToolResult:
    """Delete one file as a commit and wait for the render verdict of the stories that
    imported it (as write_files answers, without a screenshot)."""
    call = ToolCall(ctx)
    command = DeleteFile(
        command="delete_file", file_path=path, description=description, wait="render"
    )
    result: ExecuteResult = await call.sandbox(sandbox_id, "execute", command.model_dump())
    return answer(result.model_dump(mode="json"))


@tool_errors
async def rollback(
    sandbox_id: SandboxId,
    ctx: Context[Any, Any],
    steps: Annotated[
        int | None, Field(ge=1, le=10_000, description="Commits to step back.")
    ] = None,
    commit_hash: Annotated[
        str | None, Field(description="A commit of the branch (from history) to move back to.")
    ] = None,
    undo: Annotated[bool, Field(description="Undo the last rollback.")] = False,
    viewport: Viewport = "",
) -> CallToolResult:
    """Move the branch back (give exactly one of `steps`, `commit_hash` or `undo`), wait for
    the render verdict of the commit it is now on, and show its first affected story.
    Answers `current_hash`, `previous_hash` and `render`; undo moves forward again."""
    call = ToolCall(ctx)
    wait = _wait_for(parse_viewport(viewport))
    body = RollbackRequest(commit_hash=commit_hash, steps=steps, undo=undo, wait=wait)
    result: RollbackResult = await call.sandbox(
        sandbox_id,
        "rollback",
        commit_hash=body.commit_hash,
        steps=body.steps,
        undo=body.undo,
        wait=body.wait,
    )
    shown, picture = await _first_story_picture(call, sandbox_id, result.render, viewport)
    return answer({**result.model_dump(mode="json"), "screenshot": shown}, *picture)


@tool_errors
async def history(
    sandbox_id: SandboxId,
    ctx: Context[Any, Any],
    count: Annotated[int, Field(ge=1, le=1000, description="How many commits.")] = 50,
) -> CallToolResult:
    """The branch's commits, newest first, down to the commit the sandbox started from
    (`is_base`). Use a `hash` with rollback."""
    call = ToolCall(ctx)
    commits: list[CommitInfo] = await call.sandbox(sandbox_id, "history", count)
    return answer({"commits": commits})


Globals = Annotated[
    str,
    Field(
        max_length=1024,
        description="Storybook globals as its URL writes them, say 'theme:dark;locale:fr' "
        "(the toolbar's values); '' = the story's defaults.",
    ),
]
Story = Annotated[
    str,
    Field(
        min_length=1,
        max_length=512,
        description="A story id (button--primary) or component id, from list_components.",
    ),
]


@tool_errors
async def screenshot(
    sandbox_id: SandboxId,
    story: Story,
    ctx: Context[Any, Any],
    viewport: Viewport = "",
    commit: Annotated[
        str,
        Field(
            max_length=64,
            description="A commit of the sandbox's branch "
            "(a hash or a 4+ digit prefix, as history lists them, the base "
            "included); '' = the current one.",
        ),
    ] = "",
    globals: Globals = "",
) -> CallToolResult:
    """A PNG of one story as the sandbox renders it, alone on the page (no studio chrome),
    as an image: at its current commit, or at a past `commit` (rendered from that commit's
    files beside the sandbox, which is not disturbed), with Storybook `globals` if given.
    Answers the `commit` it shows."""
    call = ToolCall(ctx)
    shot: dict[str, Any] = await call.sandbox(
        sandbox_id,
        "screenshot",
        story,
        viewport,
        commit=commit or None,
        globals=globals or None,
    )
    shown = {"story": story, "commit": shot["commit"], "cached": shot["cached"]}
    if shot.get("globals"):
        shown["globals"] = shot["globals"]
    return answer(shown, png_content(shot["png"]))


@tool_errors
async def diff(
    sandbox_id: SandboxId,
    story: Story,
    ctx: Context[Any, Any],
    from_commit: Annotated[
        str,
        Field(
            max_length=64,
            description="The commit before "
            "(a hash or 4+ digit prefix); '' = the sandbox's base, "
            "so the diff shows everything the sandbox changed.",
        ),
    ] = "",
    to_commit: Annotated[
        str, Field(max_length=64, description="The commit after; '' = the current one.")
    ] = "",
    viewport: Viewport = "",
    globals: Globals = "",
) -> CallToolResult:
    """How a story's picture changed between two commits: `changed_pixels`, `total_pixels`
    and their `ratio` (pixelmatch, anti-aliasing ignored), and the diff as an image (changed
    pixels red over the first picture in faint grey). 0 changed pixels: the edit did not
    change what this story draws. Use it to check an edit changed what it should and
    nothing else."""
    call = ToolCall(ctx)
    found: dict[str, Any] = await call.sandbox(
        sandbox_id,
        "diff",
        story,
        from_commit=from_commit or None,
        to_commit=to_commit or None,
        viewport=viewport,
        globals=globals or None,
    )
    shown = {key: value for key, value in found.items() if key != "png"}
    return answer(shown, png_content(found["png"]))


@tool_errors
async def finalize(
    sandbox_id: SandboxId,
    title: Annotated[str, Field(min_length=1, max_length=256, description="The PR's title.")],
    ctx: Context[Any, Any],
    description: Annotated[
        str, Field(max_length=65_536, description="The PR's description (Markdown).")
    ] = "",
    images: Annotated[
        bool,
        Field(
            description="Put the touched stories' before/after pictures and render status "
            "in the PR body (true; takes a few seconds more)."
        ),
    ] = True,
) -> CallToolResult:
    """Push the branch and open a pull request with every commit; the sandbox ends. Answers
    `pr_url` and `pr_number` (None for a repository without a forge: then the branch was
    pushed to its origin)."""
    call = ToolCall(ctx)
    body = FinalizeRequest(title=title, description=description, images=images)
    await call.replica.backend.authorize(call.user, sandbox_id)
    result: FinalizeResult = await call.replica.backend.manager(
        "finalize_sandbox",
        sandbox_id,
        None,
        body.title,
        body.description,
        body.images,
        seconds=900.0,
    )
    call.replica.backend.forget(sandbox_id)
    return answer(result.model_dump(mode="json"))


@tool_errors
async def delete_sandbox(sandbox_id: SandboxId, ctx: Context[Any, Any]) -> CallToolResult:
    """Tear the sandbox down without a pull request; its branch and commits are kept."""
    call = ToolCall(ctx)
    await call.replica.backend.authorize(call.user, sandbox_id)
    info: SandboxInfo = await call.replica.backend.manager(
        "teardown_sandbox", sandbox_id, None, seconds=300.0
    )
    call.replica.backend.forget(sandbox_id)
    return answer({"sandbox_id": info.id, "status": info.status.value, "branch": info.branch})


_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_TOOLS: tuple[tuple[Callable[..., Awaitable[CallToolResult]], ToolAnnotations], ...] = (
    (list_repositories, _READ_ONLY),
    (create_sandbox, ToolAnnotations(read_only_hint=False, open_world_hint=False)),
    (list_components, _READ_ONLY),
    (list_files, _READ_ONLY),
    (read_file, _READ_ONLY),
    (write_files, ToolAnnotations(read_only_hint=False, destructive_hint=False)),
    (delete_file, ToolAnnotations(read_only_hint=False, destructive_hint=True)),
    (rollback, ToolAnnotations(read_only_hint=False, destructive_hint=False)),
    (history, _READ_ONLY),
    (screenshot, _READ_ONLY),
    (diff, _READ_ONLY),
    (finalize, ToolAnnotations(read_only_hint=False, open_world_hint=True)),
    (delete_sandbox, ToolAnnotations(read_only_hint=False, destructive_hint=True)),
)


def build_mcp_server() -> MCPServer[Any]:
    """The MCP server of one replica, with every tool.

    The SDK's constructor calls ``logging.basicConfig``: where the root logger has
    no handler yet, it would add its own and set the root's level. The replica's
    logging is Ray's, so the root logger is put back as it was.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        server: MCPServer[Any] = MCPServer(
            "component-studio",
            title="Component Studio",
            version=__version__,
            instructions=INSTRUCTIONS,
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    for fn, hints in _TOOLS:
        server.add_tool(fn, annotations=hints, structured_output=False)
    return server
