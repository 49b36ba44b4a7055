"""Taking a pull request's before/after pictures: which stories, in what order, with what budget.

The caller (the sandbox's actor, which reaches the node's browser) hands in
the render verdict of the final commit for the files changed since the base
(its stories are those Vite's module graph finds importing those files, the
same stories an edit's ``"wait": "render"`` reports) and a function taking one
picture. Everything that goes wrong becomes a reason in the result, never an
exception: a pull request opens whatever happened to its pictures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from studio.errors import NotFound
from studio.pr_images import MAX_IMAGES, Picture, PullRequestImages, StoryImages
from studio.render.models import RenderVerdict, StoryVerdict

__all__ = ["PICTURES_SECONDS", "TakePicture", "capture_images"]

# Seconds all pictures of a finalize may take together (a past commit renders from its
# tree, which costs more than a picture of the running Vite); the rest say "no time left".
PICTURES_SECONDS = 120.0

_NOT_COMPILED = "the final commit does not compile (the error is under Render)"

TakePicture = Callable[[str, str], Awaitable[bytes]]
"""``(story id, commit) -> PNG``; raises with a readable message when it cannot."""


def _error_text(story: StoryVerdict) -> str | None:
    error = story.error
    if error is None:
        return story.console_errors[0] if story.status != "ok" and story.console_errors else None
    where = ""
    file = getattr(error, "file", None)
    if file:
        line = getattr(error, "line", None)
        where = f" ({file}{f':{line}' if line else ''})"
    return error.message + where


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


async def _take(
    take: TakePicture, story: str, commit: str, deadline: float, *, missing: str
) -> Picture:
    left = deadline - time.monotonic()
    if left <= 0:
        return Picture(reason=f"no time left ({PICTURES_SECONDS:.0f} s for all pictures)")
    try:
        return Picture(png=await asyncio.wait_for(take(story, commit), left))
    except TimeoutError:
        return Picture(reason=f"no time left ({PICTURES_SECONDS:.0f} s for all pictures)")
    except NotFound:
        return Picture(reason=missing)
    except Exception as exc:
        return Picture(reason=_reason(exc))


async def capture_images(
    *,
    base: str,
    head: str,
    viewport: str,
    verdict: RenderVerdict | None,
    take: TakePicture,
    note: str | None = None,
    seconds: float = PICTURES_SECONDS,
) -> PullRequestImages:
    """Pictures of the verdict's stories at ``base`` and ``head``, at most :data:`MAX_IMAGES`.

    ``verdict`` None (or without stories) gives no pictures, with ``note`` (or
    the verdict's own ``detail``) saying why.
    """
    if verdict is None or not verdict.stories:
        why = note or (verdict.detail if verdict is not None else None)
        if why is None and verdict is not None and verdict.skipped == 0:
            why = "no story renders the changed files"
        return PullRequestImages(
            base=base,
            head=head,
            viewport=viewport,
            note=why,
            left_out=verdict.skipped if verdict is not None else 0,
        )
    per_story = 2
    chosen = verdict.stories[: MAX_IMAGES // per_story]
    left_out = verdict.skipped + len(verdict.stories) - len(chosen)
    deadline = time.monotonic() + seconds
    stories = []
    # One after the other: the node's browser has one page per sandbox, and a
    # picture of the base and of the head of one story are the reviewer's pair.
    for story in chosen:
        before = await _take(
            take, story.id, base, deadline, missing="not in the base commit (a new story)"
        )
        if story.status == "compile_error":
            # Its page would only wait out the picture's timeout on a module that does not
            # compile; the error itself is in the row's render status.
            after = Picture(reason=_NOT_COMPILED)
        else:
            after = await _take(
                take, story.id, head, deadline, missing="not in the final commit's catalog"
            )
        stories.append(
            StoryImages(
                component=story.component,
                story=story.id,
                status=story.status,
                error=_error_text(story),
                before=before,
                after=after,
            )
        )
    return PullRequestImages(
        base=base, head=head, viewport=viewport, stories=stories, left_out=left_out
    )
