"""Before/after pictures of a pull request's stories, and the body section that shows them.

Finalize takes, for each story the change touches (at most
:data:`MAX_IMAGES` pictures in all), a picture at the sandbox's base commit
and one at its final commit, with the story's render status at the final
commit. The pictures go into an orphan commit on a ref of their own,
``refs/heads/studio-screenshots/<sandbox id>``, pushed with the design branch:
the branch and the pull request's diff hold no image, and the pictures are
visible exactly to those who can see the repository (docs/api.md, "Finalize").

This module is pure: the models the actor fills, the files of the orphan
commit, and :func:`screenshot_section`, the Markdown the body gets. A picture
that could not be taken is a :class:`Picture` with a ``reason``: the section
says so for that story and finalize goes on.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from studio.render.models import RenderStatus

__all__ = [
    "MAX_IMAGES",
    "SCREENSHOTS_REF_PREFIX",
    "Picture",
    "PullRequestImages",
    "StoryImages",
    "image_files",
    "screenshot_section",
    "screenshots_ref",
]

# Pictures per pull request (before and after count one each): a reviewer reads a
# handful; a change to a shared module may touch hundreds of stories.
MAX_IMAGES = 12
SCREENSHOTS_REF_PREFIX = "refs/heads/studio-screenshots/"
# Characters of a story's error quoted in its table row.
_ERROR_CHARS = 200
# Width the body shows each picture at (GitHub scales a wide PNG to the column otherwise).
_SHOWN_WIDTH = 360
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_STATUS_MARK = {"ok": "✅", "compile_error": "❌", "runtime_error": "❌", "timeout": "⚠️"}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Picture(_Model):
    """A PNG, or why there is none (the story is new, the browser failed, ...)."""

    png: bytes | None = None
    reason: str | None = None


class StoryImages(_Model):
    """One story's pictures and its render status at the final commit."""

    component: str
    story: str
    status: RenderStatus | None = None
    """None: no render verdict could be made (``error`` says why)."""
    error: str | None = None
    before: Picture
    after: Picture


class PullRequestImages(_Model):
    """What finalize shows of the change: the stories it touched, before and after."""

    base: str
    head: str
    viewport: str
    stories: list[StoryImages] = Field(default_factory=list)
    left_out: int = 0
    """Touched stories not pictured (beyond :data:`MAX_IMAGES`)."""
    note: str | None = None
    """Why no story is pictured at all (nothing rendered changed, no Vite, ...)."""


def screenshots_ref(sandbox_id: str) -> str:
    """The ref a sandbox's pull request pictures are pushed to."""
    return f"{SCREENSHOTS_REF_PREFIX}{sandbox_id}"


def _file_stem(index: int, story: StoryImages) -> str:
    # A number first: two ids that differ only in unsafe characters stay apart.
    return f"{index + 1:02d}-{_UNSAFE.sub('_', story.story)[:80]}"


def _paths(index: int, story: StoryImages) -> tuple[str, str]:
    stem = _file_stem(index, story)
    return f"{stem}.before.png", f"{stem}.after.png"


def image_files(images: PullRequestImages) -> dict[str, bytes]:
    """The orphan commit's files: ``NN-<story>.before.png`` / ``.after.png`` per picture taken."""
    files: dict[str, bytes] = {}
    for index, story in enumerate(images.stories):
        for path, picture in zip(_paths(index, story), (story.before, story.after), strict=True):
            if picture.png is not None:
                files[path] = picture.png
    return files


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell and a code span: one line, no pipe, no
    backtick, no HTML (ids and messages come from the repository's own files), bounded."""
    flat = html.escape(" ".join(text.split()).replace("`", "'"), quote=False)
    flat = flat.replace("|", "\\|")
    return flat if len(flat) <= _ERROR_CHARS else flat[: _ERROR_CHARS - 1] + "…"


def _status_cell(story: StoryImages, *, errors: bool) -> str:
    if story.status is None:
        return "not known" + (f": {_cell(story.error)}" if errors and story.error else "")
    shown = f"{_STATUS_MARK[story.status]} `{story.status}`"
    if errors and story.error:
        shown += f": {_cell(story.error)}"
    return shown


def _picture_cell(
    picture: Picture,
    path: str,
    link: Callable[[str], str | None] | None,
    what: str,
    *,
    published: bool,
) -> str:
    if picture.png is None:
        return f"_no picture: {_cell(picture.reason or 'not taken')}_"
    if not published:
        return "_taken, not published_"
    url = link(path) if link is not None else None
    if url is None:
        return f"`{path}`"
    return f'<img src="{html.escape(url)}" alt="{html.escape(what)}" width="{_SHOWN_WIDTH}">'


def _rows(
    images: PullRequestImages,
    link: Callable[[str], str | None] | None,
    *,
    errors: bool,
    published: bool,
) -> list[tuple[str, str]]:
    """(component, table row) per story, in the order taken."""
    rows = []
    for index, story in enumerate(images.stories):
        before, after = _paths(index, story)
        cells = [
            f"`{_cell(story.story)}`",
            _status_cell(story, errors=errors),
            _picture_cell(story.before, before, link, f"{story.story} before", published=published),
            _picture_cell(story.after, after, link, f"{story.story} after", published=published),
        ]
        rows.append((story.component, "| " + " | ".join(cells) + " |"))
    return rows


def _tables(rows: list[tuple[str, str]]) -> list[str]:
    """A table per component, components in the order their first story came."""
    grouped: dict[str, list[str]] = {}
    for component, row in rows:
        grouped.setdefault(component, []).append(row)
    parts = []
    for component, lines in grouped.items():
        header = "| Story | Render | Before | After |\n|---|---|---|---|"
        parts.append(f"### {_cell(component)}\n\n{header}\n" + "\n".join(lines))
    return parts


def screenshot_section(
    images: PullRequestImages,
    *,
    ref: str,
    commit: str | None,
    link: Callable[[str], str | None] | None,
    hosting_problem: str | None = None,
    budget: int,
) -> str:
    """The body's "Screenshots" section, at most ``budget`` characters.

    ``commit`` is the orphan commit holding the pictures (None: none was
    pushed, ``hosting_problem`` says why if pictures were taken). ``link``
    maps a picture's path to a URL the forge shows (None: no forge shows
    them; the section names the ref and the paths instead). When the section
    would pass ``budget`` the errors are left out of the rows, then stories
    from the end, and it says how many.
    """
    short_base, short_head = images.base[:7], images.head[:7]
    head = [
        "## Screenshots",
        "",
        f"The stories this change touches, before (base `{short_base}`) and after "
        f"(`{short_head}`), at {images.viewport}; the render status is the final commit's.",
    ]
    files = image_files(images)
    shown = commit is not None and bool(files)
    # A provider without a web view (a local origin) links nothing: the files are named.
    linked = shown and link is not None and link(next(iter(files))) is not None
    if commit is not None:
        where = f"Pictures: `{ref.removeprefix('refs/heads/')}` at `{commit[:12]}`"
        if not linked:
            where += f" (no forge shows them here: `git show {commit[:12]}:<file>`)"
        head.append(where + ".")
    elif hosting_problem:
        head.append(f"The pictures could not be published: {_cell(hosting_problem)}.")
    if not images.stories:
        head.append("")
        head.append(f"No pictures: {images.note or 'no story is touched by this change'}.")
        return _fit("\n".join(head), budget)

    shown_link = link if linked else None

    def assemble(rows: list[tuple[str, str]], trimmed: int) -> str:
        tail = []
        if images.left_out:
            more = images.left_out
            tail.append(
                f"{more} more touched stor{'y is' if more == 1 else 'ies are'} not pictured "
                f"(at most {MAX_IMAGES} pictures per pull request)."
            )
        if trimmed:
            tail.append(
                f"{trimmed} pictured stor{'y is' if trimmed == 1 else 'ies are'} left out of "
                f"this description to keep it within {budget} characters; the pictures are "
                "on the ref above."
            )
        return "\n\n".join(["\n".join(head), *_tables(rows), *tail])

    for errors in (True, False):
        rows = _rows(images, shown_link, errors=errors, published=shown)
        text = assemble(rows, 0)
        if len(text) <= budget:
            return text
    while rows:
        rows = rows[:-1]
        text = assemble(rows, len(images.stories) - len(rows))
        if len(text) <= budget:
            return text
    return _fit(assemble([], len(images.stories)), budget)


def _fit(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    return text[: max(0, budget - 1)].rstrip() + "…" if budget > 0 else ""
