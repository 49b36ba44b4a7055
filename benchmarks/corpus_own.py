"""The reference: a repository in its own Storybook on this machine.

``storybook dev --ci`` in the package dir; start -> its first story rendered in
Chromium (``iframe.html?id=<id>&viewMode=story``: Storybook puts
``sb-show-main`` on the body once a story rendered, ``sb-show-errordisplay``
when it threw); then every story its ``/index.json`` lists, each counted as
rendered when it shows without the error display, an uncaught page error or a
console error.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._proc import free_port, kill_group, spawn_group, wait_for

__all__ = [
    "IndexPoller",
    "OwnStorybook",
    "StoryVisit",
    "counts_as_error",
    "index_stories",
    "index_tests",
    "run_own_storybook",
    "visit_own_story",
    "watch_errors",
]

_SHOWN = "body.sb-show-main, body.sb-show-errordisplay, body.sb-show-nopreview"
STORY_TIMEOUT_MS = 30_000
# After the body says shown: effects and late console errors of the story.
_SETTLE_MS = 300


@dataclass
class StoryVisit:
    """One story visited: its id and, when it did not render cleanly, why."""

    story_id: str
    errors: list[str] = field(default_factory=list)
    # time.monotonic() when the story was drawn (or its error shown), before the
    # settle wait that catches late errors: what a create is timed to.
    drawn_at: float | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class OwnStorybook:
    """What the repository's own Storybook did."""

    start_to_first_story_s: float | None = None
    indexed: list[str] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)
    visits: list[StoryVisit] = field(default_factory=list)
    error: str | None = None


def index_stories(index: dict[str, Any]) -> list[str]:
    """The story ids of a Storybook ``index.json`` (v4/v5: ``entries``), docs entries and
    tests (:func:`index_tests`) left out."""
    entries = index.get("entries") or index.get("stories") or {}
    return [
        sid
        for sid, entry in entries.items()
        if entry.get("type", "story") == "story" and entry.get("subtype") != "test"
    ]


def index_tests(index: dict[str, Any]) -> list[str]:
    """The entries of a story's tests (Storybook 10's ``Story.test(name, fn)``, subtype
    ``test``): the story itself rendered plus a test run, not a story of their own."""
    entries = index.get("entries") or index.get("stories") or {}
    return [sid for sid, entry in entries.items() if entry.get("subtype") == "test"]


def _storybook_argv(package: Path, root: Path, port: int) -> list[str]:
    for base in (package, root):
        for name in ("storybook", "sb"):
            binary = base / "node_modules" / ".bin" / name
            if binary.exists():
                return [
                    str(binary),
                    "dev",
                    "--ci",
                    "--no-open",
                    "-p",
                    str(port),
                    "--host",
                    "127.0.0.1",
                ]
    raise RuntimeError("no storybook binary in node_modules/.bin (install failed?)")


# How long an index.json answering a server error is given to recover: Storybook 7
# answers 500 for good when one docs file cannot be indexed (a file change would be
# needed), and the run otherwise waits for the repository's whole timeout.
INDEX_ERROR_GRACE_S = 20.0


class IndexPoller:
    """Polls Storybook's ``/index.json``: the index once it answers, None until then,
    and Storybook's own message once it has answered server errors for too long."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._clock = clock
        self._failing_since: float | None = None

    def poll(self, grace_s: float = INDEX_ERROR_GRACE_S) -> dict[str, Any] | None:
        """The index, None while it is not there yet; RuntimeError with Storybook's own
        message once it has answered a server error for ``grace_s`` seconds."""
        try:
            with urllib.request.urlopen(self.url, timeout=5) as response:
                value: dict[str, Any] = json.loads(response.read())
                self._failing_since = None
                return value
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return None
            now = self._clock()
            if self._failing_since is None:
                self._failing_since = now
            if now - self._failing_since >= grace_s:
                body = exc.read().decode(errors="replace").strip().splitlines()
                raise RuntimeError(
                    f"its index.json answered {exc.code} for {grace_s:g} s: "
                    + " ".join(line.strip() for line in body[:2])[:400]
                ) from None
            return None
        except (OSError, ValueError):
            return None


def counts_as_error(text: str, url: str) -> bool:
    """Whether a console error is the page's: not Chromium's own request for /favicon.ico.

    Chromium asks for /favicon.ico on a fresh page; neither Storybook's dev server
    nor the studio serves one, and that 404 says nothing about the story.
    """
    return not (text.startswith("Failed to load resource") and url.endswith("/favicon.ico"))


@contextlib.contextmanager
def watch_errors(page: Any) -> Iterator[list[str]]:
    """The console errors and uncaught page errors ``page`` reports inside the block."""
    seen: list[str] = []

    def on_console(message: Any) -> None:
        # "Failed to load resource" names no resource in its text: its location does.
        where = (message.location or {}).get("url") or ""
        if message.type == "error" and counts_as_error(message.text, where):
            seen.append(f"console: {message.text}" + (f" ({where})" if where else ""))

    def on_error(error: Any) -> None:
        seen.append(f"pageerror: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_error)
    try:
        yield seen
    finally:
        page.remove_listener("console", on_console)
        page.remove_listener("pageerror", on_error)


def visit_own_story(page: Any, base: str, story_id: str) -> StoryVisit:
    """Open one story in the preview iframe; the errors it showed (none: it rendered)."""
    visit = StoryVisit(story_id)
    with watch_errors(page) as seen:
        try:
            page.goto(f"{base}/iframe.html?id={story_id}&viewMode=story", timeout=STORY_TIMEOUT_MS)
            page.wait_for_selector(_SHOWN, state="attached", timeout=STORY_TIMEOUT_MS)
            visit.drawn_at = time.monotonic()
            page.wait_for_timeout(_SETTLE_MS)
            if page.locator("body.sb-show-errordisplay").count():
                message = page.locator("#error-message").inner_text(timeout=2000).strip()
                visit.errors.append(f"error display: {message[:500]}")
            elif page.locator("body.sb-show-nopreview").count():
                visit.errors.append("no preview (Storybook could not find the story)")
        except Exception as exc:
            visit.errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    visit.errors.extend(seen)
    return visit


def run_own_storybook(
    browser: Any,
    package: Path,
    root: Path,
    log: Path,
    deadline: float,
    *,
    visit_all: bool = True,
    result: OwnStorybook | None = None,
) -> OwnStorybook:
    """Start its Storybook, time the first story, visit every indexed story, stop it.

    Filled into ``result`` as it goes: a run interrupted half-way keeps the figures so far.
    """
    result = result if result is not None else OwnStorybook()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "STORYBOOK_DISABLE_TELEMETRY": "1",
        "BROWSER": "none",
        "CI": "1",
        "NODE_OPTIONS": os.environ.get("NODE_OPTIONS", ""),
    }
    started = time.monotonic()
    process = spawn_group(_storybook_argv(package, root, port), package, log, env=env)
    context = browser.new_context()
    index_json = IndexPoller(f"{base}/index.json")
    try:

        def indexed() -> dict[str, Any] | None:
            if process.poll() is not None:
                raise RuntimeError(f"storybook dev exited with {process.returncode}: {_tail(log)}")
            return index_json.poll()

        index = wait_for(
            indexed, max(1.0, deadline - time.monotonic()), "storybook's index.json", 0.25
        )
        result.indexed = index_stories(index)
        result.tests = index_tests(index)
        if not result.indexed:
            result.error = "its index.json lists no story"
            return result
        page = context.new_page()
        first = visit_own_story(page, base, result.indexed[0])
        # Taken when it was drawn (or its error shown), before the settle wait, as the
        # studio's creates are; none when the page never showed it.
        if first.drawn_at is not None:
            result.start_to_first_story_s = round(first.drawn_at - started, 3)
        result.visits.append(first)
        if visit_all:
            for story_id in result.indexed[1:]:
                if process.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    result.error = f"out of time after {len(result.visits)} stories"
                    break
                result.visits.append(visit_own_story(page, base, story_id))
        if process.poll() is not None:
            # Its stories then fail to connect: the row says why, from its own output.
            result.error = (
                f"storybook dev exited with {process.returncode} while its stories were "
                f"visited: {_tail(log)}"
            )
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        context.close()
        kill_group(process)
    return result


def _tail(log: Path, chars: int = 1500) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return ""
