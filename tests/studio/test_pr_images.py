"""The pull request's pictures: the body section, the orphan commit's files, their capture."""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from studio.errors import NotFound
from studio.pr import GITHUB_BODY_LIMIT, GitHubProvider, LocalProvider, build_pr_body
from studio.pr_capture import capture_images
from studio.pr_images import (
    MAX_IMAGES,
    Picture,
    PullRequestImages,
    StoryImages,
    image_files,
    screenshot_section,
    screenshots_ref,
)
from studio.render.models import CompileError, RenderError, RenderVerdict, StoryVerdict

BASE = "b" * 40
HEAD = "d" * 40
SHOTS = "5" * 40
REF = screenshots_ref("sb_abc123")


def png(width: int = 2, height: int = 1) -> bytes:
    """A valid PNG (signature, IHDR, IDAT, IEND), grey pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\0" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def story(
    story_id: str = "button--primary",
    component: str = "Button",
    *,
    status: str | None = "ok",
    error: str | None = None,
    before: Picture | None = None,
    after: Picture | None = None,
) -> StoryImages:
    return StoryImages(
        component=component,
        story=story_id,
        status=status,  # type: ignore[arg-type]
        error=error,
        before=before or Picture(png=png()),
        after=after or Picture(png=png(3)),
    )


def images(*stories: StoryImages, left_out: int = 0, note: str | None = None) -> PullRequestImages:
    return PullRequestImages(
        base=BASE,
        head=HEAD,
        viewport="1024x768",
        stories=list(stories),
        left_out=left_out,
        note=note,
    )


def github_link(path: str) -> str | None:
    provider = GitHubProvider("t0ken")
    return provider.image_url("https://github.com/octo/hello.git", SHOTS, path)


# --- files -----------------------------------------------------------------------------


def test_each_picture_taken_is_a_file_named_by_its_story_and_side() -> None:
    shown = images(
        story("button--primary"),
        story("card--new", "Card", before=Picture(reason="not in the base commit")),
    )
    files = image_files(shown)
    assert sorted(files) == [
        "01-button--primary.after.png",
        "01-button--primary.before.png",
        "02-card--new.after.png",
    ]
    assert all(content.startswith(b"\x89PNG\r\n\x1a\n") for content in files.values())


def test_unsafe_characters_in_an_id_do_not_reach_the_file_name() -> None:
    files = image_files(images(story("../../etc/passwd x")))
    assert sorted(files) == ["01-.._.._etc_passwd_x.after.png", "01-.._.._etc_passwd_x.before.png"]
    assert all("/" not in name for name in files)


# --- the section -----------------------------------------------------------------------


def test_the_section_links_every_picture_by_the_commit_that_holds_it() -> None:
    text = screenshot_section(
        images(story(), story("card--plain", "Card", status="runtime_error", error="boom")),
        ref=REF,
        commit=SHOTS,
        link=github_link,
        budget=GITHUB_BODY_LIMIT,
    )
    assert text.startswith("## Screenshots\n")
    assert f"base `{BASE[:7]}`" in text and f"(`{HEAD[:7]}`)" in text
    assert f"`studio-screenshots/sb_abc123` at `{SHOTS[:12]}`" in text
    for name in ("01-button--primary.before.png", "02-card--plain.after.png"):
        assert f"https://github.com/octo/hello/blob/{SHOTS}/{name}?raw=true" in text
    # A table per component, with the story's render status (and its error).
    assert "### Button\n" in text and "### Card\n" in text
    assert "| `button--primary` | ✅ `ok` |" in text
    assert "| `card--plain` | ❌ `runtime_error`: boom |" in text


def test_a_missing_picture_says_why_and_the_other_still_shows() -> None:
    text = screenshot_section(
        images(story(before=Picture(reason="not in the base commit (a new story)"))),
        ref=REF,
        commit=SHOTS,
        link=github_link,
        budget=GITHUB_BODY_LIMIT,
    )
    assert "_no picture: not in the base commit (a new story)_" in text
    assert "01-button--primary.after.png?raw=true" in text
    assert "01-button--primary.before.png" not in text


def test_without_a_forge_the_section_names_the_ref_and_the_files() -> None:
    local = LocalProvider()
    text = screenshot_section(
        images(story()),
        ref=REF,
        commit=SHOTS,
        link=lambda path: local.image_url("/srv/origin", SHOTS, path),
        budget=GITHUB_BODY_LIMIT,
    )
    assert "<img" not in text
    assert "`01-button--primary.before.png`" in text
    assert f"git show {SHOTS[:12]}:<file>" in text


def test_pictures_that_were_not_pushed_are_not_linked_and_the_reason_shows() -> None:
    text = screenshot_section(
        images(story()),
        ref=REF,
        commit=None,
        link=github_link,
        hosting_problem="the push of their ref was refused: protected",
        budget=GITHUB_BODY_LIMIT,
    )
    assert "could not be published: the push of their ref was refused: protected" in text
    assert "<img" not in text and "?raw=true" not in text
    assert text.count("_taken, not published_") == 2


def test_no_story_touched_says_why() -> None:
    text = screenshot_section(
        images(note="no file changed since the base commit"),
        ref=REF,
        commit=None,
        link=github_link,
        budget=GITHUB_BODY_LIMIT,
    )
    assert text.endswith("No pictures: no file changed since the base commit.")


def test_stories_beyond_the_cap_are_counted() -> None:
    text = screenshot_section(
        images(story(), left_out=5), ref=REF, commit=SHOTS, link=github_link, budget=10_000
    )
    assert f"5 more touched stories are not pictured (at most {MAX_IMAGES} pictures" in text


def test_error_text_is_one_line_without_pipes_and_bounded() -> None:
    error = "Expected | closing\ntag " + "x" * 1000
    text = screenshot_section(
        images(story(status="compile_error", error=error)),
        ref=REF,
        commit=SHOTS,
        link=github_link,
        budget=GITHUB_BODY_LIMIT,
    )
    [row] = [line for line in text.splitlines() if line.startswith("| `button")]
    assert "Expected \\| closing tag x" in row
    assert row.count("|") - row.count("\\|") == 5  # four cells, no extra column
    assert "x" * 250 not in row


def test_a_small_budget_drops_errors_then_rows_and_says_how_many() -> None:
    many = [story(f"s{i}--x", error="e" * 150, status="runtime_error") for i in range(6)]
    full = screenshot_section(images(*many), ref=REF, commit=SHOTS, link=github_link, budget=10**6)
    budget = len(full) // 2
    text = screenshot_section(images(*many), ref=REF, commit=SHOTS, link=github_link, budget=budget)
    assert len(text) <= budget
    assert "e" * 150 not in text
    shown = text.count("| `s")
    assert 0 < shown < 6
    assert f"{6 - shown} pictured stories are left out of this description" in text
    assert (
        screenshot_section(
            images(*many), ref=REF, commit=SHOTS, link=github_link, budget=40
        ).__len__()
        <= 40
    )


def test_the_body_keeps_the_section_whole_within_githubs_limit() -> None:
    section = screenshot_section(
        images(story()), ref=REF, commit=SHOTS, link=github_link, budget=GITHUB_BODY_LIMIT // 2
    )

    class Commit:
        def __init__(self, i: int) -> None:
            self.hash = f"{i:040x}"
            self.message = "subject " * 40

    commits = [Commit(i) for i in range(2000)]
    body = build_pr_body("d" * 30_000, commits, sandbox_id="sb_abc123", section=section)
    assert len(body) <= GITHUB_BODY_LIMIT
    assert section in body
    assert body.index("## Screenshots") < body.index("## Commits")
    plain = build_pr_body("why", commits[:1], sandbox_id="sb_abc123", section=section)
    assert plain.startswith("why\n\n## Screenshots\n")


# --- capture -----------------------------------------------------------------------------


def verdict(count: int, *, skipped: int = 0) -> RenderVerdict:
    stories = [
        StoryVerdict(id=f"button--s{i}", component="Button", status="ok") for i in range(count)
    ]
    return RenderVerdict(commit=HEAD, status="ok", stories=stories, skipped=skipped)


async def test_capture_takes_base_then_head_per_story_up_to_the_cap() -> None:
    asked: list[tuple[str, str]] = []

    async def take(story_id: str, commit: str) -> bytes:
        asked.append((story_id, commit))
        return png()

    result = await capture_images(
        base=BASE, head=HEAD, viewport="1024x768", verdict=verdict(9, skipped=4), take=take
    )
    pictured = MAX_IMAGES // 2
    assert [s.story for s in result.stories] == [f"button--s{i}" for i in range(pictured)]
    assert asked[:2] == [("button--s0", BASE), ("button--s0", HEAD)]
    assert len(asked) == MAX_IMAGES
    assert result.left_out == 4 + 9 - pictured
    assert len(image_files(result)) == MAX_IMAGES


async def test_capture_turns_every_failure_into_a_reason() -> None:
    async def take(story_id: str, commit: str) -> bytes:
        if commit == BASE:
            raise NotFound("no story")
        raise RuntimeError("Chromium crashed\n  at page.screenshot")

    broken = RenderVerdict(
        commit=HEAD,
        status="compile_error",
        stories=[
            StoryVerdict(
                id="button--a",
                component="Button",
                status="compile_error",
                error=CompileError(message="Unexpected token", file="src/Button.tsx", line=3),
            ),
            StoryVerdict(
                id="button--b",
                component="Button",
                status="runtime_error",
                error=RenderError(message="boom"),
            ),
        ],
    )
    result = await capture_images(
        base=BASE, head=HEAD, viewport="1024x768", verdict=broken, take=take
    )
    first, second = result.stories
    assert first.before.reason == "not in the base commit (a new story)"
    # A story whose module does not compile is not waited for: the error is its status.
    assert first.after.reason == "the final commit does not compile (the error is under Render)"
    assert first.error == "Unexpected token (src/Button.tsx:3)"
    assert (second.status, second.error) == ("runtime_error", "boom")
    assert second.after.reason == "Chromium crashed at page.screenshot"
    assert image_files(result) == {}


async def test_capture_stops_taking_pictures_when_its_time_is_spent() -> None:
    async def take(story_id: str, commit: str) -> bytes:
        await asyncio.sleep(0.3)
        return png()

    result = await capture_images(
        base=BASE, head=HEAD, viewport="1024x768", verdict=verdict(3), take=take, seconds=0.1
    )
    assert all(s.before.png is None and s.after.png is None for s in result.stories)
    assert all("no time left" in str(s.after.reason) for s in result.stories)


@pytest.mark.parametrize(
    ("given", "note", "expected"),
    [
        (None, "no file changed since the base commit", "no file changed since the base commit"),
        (RenderVerdict(commit=HEAD, status="timeout", detail="Vite down"), None, "Vite down"),
        (RenderVerdict(commit=HEAD, status="ok"), None, "no story renders the changed files"),
    ],
)
async def test_capture_without_stories_says_why(
    given: RenderVerdict | None, note: str | None, expected: str
) -> None:
    async def take(story_id: str, commit: str) -> bytes:
        raise AssertionError("no picture is taken")

    result = await capture_images(
        base=BASE, head=HEAD, viewport="1024x768", verdict=given, take=take, note=note
    )
    assert (result.stories, result.note) == ([], expected)


def test_ids_and_messages_from_the_repository_cannot_inject_markup() -> None:
    sneaky = 'x"><script>alert(1)</script>`'
    text = screenshot_section(
        images(story(sneaky, "<b>Card</b>", status="runtime_error", error="<img src=x>`boom`")),
        ref=REF,
        commit=SHOTS,
        link=github_link,
        budget=GITHUB_BODY_LIMIT,
    )
    assert "<script>" not in text and "<b>" not in text and "<img src=x>" not in text
    assert "&lt;script&gt;" in text and "### &lt;b&gt;Card&lt;/b&gt;" in text
    assert 'alt="x&quot;&gt;&lt;script&gt;' in text
    # Each row keeps its four cells, the code spans closed.
    row = next(line for line in text.splitlines() if line.startswith("| `x"))
    assert row.count("`") % 2 == 0
