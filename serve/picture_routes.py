"""Pictures of a sandbox's stories: screenshots at any of its commits, and visual diffs.

``GET .../screenshot`` is a PNG; ``GET .../diff`` the changed-pixel count as
JSON with a ``diff_url``, ``GET .../diff.png`` the diff picture itself. The
pictures come from the node's browser (actors.browser_actor); a past commit
is rendered from its own tree beside the live sandbox (studio.sandbox.past).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from serve.replica import Replica
from serve.routes import PREFIX, ReplicaDep, User
from studio.models import UserInfo
from studio.render.screenshot import SCREENSHOT_ROUTE

__all__ = ["DiffResponse", "pictures_router"]

pictures_router = APIRouter()

_STORY_HELP = "A story id (`button--primary`) or component id, as GET .../components lists them."
_VIEWPORT_HELP = "WIDTHxHEIGHT, say 375x667 (1024x768)."
_GLOBALS_HELP = (
    "Storybook globals in its URL format, say `theme:dark;locale:fr` (what the story's "
    "decorators read: an addon-themes theme, a locale)."
)
_COMMIT_HELP = (
    "A commit of the sandbox's branch, back to its base (a hash or unique prefix, as "
    "GET .../commits lists them)."
)

Story = Annotated[str, Query(min_length=1, max_length=512, description=_STORY_HELP)]
Viewport = Annotated[str, Query(max_length=16, description=_VIEWPORT_HELP)]
Globals = Annotated[str, Query(max_length=512, description=_GLOBALS_HELP)]


class DiffResponse(BaseModel):
    """How a story's picture changed between two commits."""

    model_config = ConfigDict(populate_by_name=True)

    story: str
    # "from" is a keyword in Python: the field is from_, the JSON says "from".
    from_: str = Field(alias="from")
    to: str
    viewport: str
    globals: str
    changed_pixels: int
    """Pixels pixelmatch counts changed (anti-aliasing not counted), plus the area only the
    larger picture has when the sizes differ."""
    total_pixels: int
    ratio: float
    width: int
    height: int
    diff_url: str
    """The diff PNG (changed pixels red over the first picture in faint grey), by the
    resolved commits: it stays the same picture after the branch moves."""


@pictures_router.get(
    SCREENSHOT_ROUTE,
    tags=["sandboxes"],
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The story, as a PNG."}},
)
async def screenshot(
    sandbox_id: str,
    user: User,
    replica: ReplicaDep,
    story: Story,
    viewport: Viewport = "",
    commit: Annotated[
        str, Query(max_length=64, description=_COMMIT_HELP + " The current one by default.")
    ] = "",
    globals: Globals = "",
) -> Response:
    """A PNG of a story as the sandbox renders it at a commit (now, by default).

    A past commit is rendered from its own tree beside the sandbox, which is
    not disturbed. Pictures are cached by commit, story, viewport and globals:
    a repeated request costs no rendering (``X-Studio-Cache: hit``).
    """
    await replica.backend.authorize(user, sandbox_id)
    shot: dict[str, Any] = await replica.backend.sandbox(
        sandbox_id, "screenshot", story, viewport, commit=commit or None, globals=globals or None
    )
    return Response(
        content=shot["png"],
        media_type="image/png",
        headers={
            "X-Studio-Commit": str(shot["commit"]),
            "X-Studio-Cache": "hit" if shot["cached"] else "miss",
            "Cache-Control": "private, no-cache",
        },
    )


async def _diff(
    sandbox_id: str,
    user: UserInfo,
    replica: Replica,
    story: str,
    from_: str,
    to: str,
    viewport: str,
    globals_: str,
) -> dict[str, Any]:
    await replica.backend.authorize(user, sandbox_id)
    found: dict[str, Any] = await replica.backend.sandbox(
        sandbox_id,
        "diff",
        story,
        from_commit=from_ or None,
        to_commit=to or None,
        viewport=viewport,
        globals=globals_ or None,
    )
    return found


FromCommit = Annotated[
    str,
    Query(alias="from", max_length=64, description=_COMMIT_HELP + " The base commit by default."),
]
ToCommit = Annotated[
    str, Query(max_length=64, description=_COMMIT_HELP + " The current one by default.")
]


@pictures_router.get(
    f"{PREFIX}/sandboxes/{{sandbox_id}}/diff",
    tags=["sandboxes"],
    response_model=DiffResponse,
    response_model_by_alias=True,
)
async def diff(
    sandbox_id: str,
    user: User,
    replica: ReplicaDep,
    story: Story,
    from_: FromCommit = "",
    to: ToCommit = "",
    viewport: Viewport = "",
    globals: Globals = "",
) -> dict[str, Any]:
    """How a story's picture changed between two commits, pixel by pixel (pixelmatch).

    ``from`` defaults to the sandbox's base commit, ``to`` to its current
    one; ``diff_url`` fetches the diff picture.
    """
    found = await _diff(sandbox_id, user, replica, story, from_, to, viewport, globals)
    query = {"story": story, "from": found["from"], "to": found["to"]}
    query |= {"viewport": found["viewport"]}
    if found["globals"]:
        query["globals"] = found["globals"]
    answer = {key: value for key, value in found.items() if key != "png"}
    answer["diff_url"] = f"{PREFIX}/sandboxes/{sandbox_id}/diff.png?{urlencode(query)}"
    return answer


@pictures_router.get(
    f"{PREFIX}/sandboxes/{{sandbox_id}}/diff.png",
    tags=["sandboxes"],
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The diff, as a PNG."}},
)
async def diff_png(
    sandbox_id: str,
    user: User,
    replica: ReplicaDep,
    story: Story,
    from_: FromCommit = "",
    to: ToCommit = "",
    viewport: Viewport = "",
    globals: Globals = "",
) -> Response:
    """The diff picture of GET .../diff: changed pixels red over the first picture in grey."""
    found = await _diff(sandbox_id, user, replica, story, from_, to, viewport, globals)
    return Response(
        content=found["png"],
        media_type="image/png",
        headers={
            "X-Studio-Changed-Pixels": str(found["changed_pixels"]),
            "Cache-Control": "private, no-cache",
        },
    )
