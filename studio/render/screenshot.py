"""Screenshots of a story: the request's parts and the cache of taken pictures.

A picture is named by what determines it: the sandbox, the commit its files
were at, the story and the viewport. The same key always gives the same
picture (within the rendering's own nondeterminism), so taken ones are kept
(least recently used first out) and a repeated request costs no browser work.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from studio.errors import InvalidRequest, NotFound

__all__ = [
    "DEFAULT_VIEWPORT",
    "ScreenshotCache",
    "ScreenshotKey",
    "Viewport",
    "parse_viewport",
    "story_route",
]

_VIEWPORT = re.compile(r"^(\d{1,4})x(\d{1,4})$")
_MAX_SIDE = 4096
# Pictures kept per node (a PNG of a story is tens of kB).
_CACHE_ENTRIES = 256


@dataclass(frozen=True)
class Viewport:
    """The page's size in CSS pixels."""

    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


DEFAULT_VIEWPORT = Viewport(1024, 768)


def parse_viewport(text: str | None) -> Viewport:
    """``WIDTHxHEIGHT`` (say ``375x667``); the default when empty."""
    if not text:
        return DEFAULT_VIEWPORT
    match = _VIEWPORT.fullmatch(text.strip())
    if match is None:
        raise InvalidRequest(f"viewport {text[:40]!r} is not WIDTHxHEIGHT (say 375x667)")
    width, height = int(match[1]), int(match[2])
    if not (1 <= width <= _MAX_SIDE and 1 <= height <= _MAX_SIDE):
        raise InvalidRequest(f"viewport {text!r}: each side must be 1 to {_MAX_SIDE} pixels")
    return Viewport(width, height)


def story_route(catalog: dict[str, Any], story: str) -> tuple[str, str, str]:
    """(component id, story id, full-canvas route) of ``story`` in the studio's catalog.

    ``story`` is a story id of the catalog (``button--primary``) or a
    component id (``Button``: the component alone, as its canvas renders it).
    """
    for component in catalog.get("components", []):
        component_id = str(component["id"])
        for entry in component.get("stories", []):
            if entry["id"] == story:
                path = f"?full#/{quote(component_id)}/{quote(str(entry['exportName']))}"
                return component_id, story, path
        if component_id == story:
            return component_id, story, f"?full#/{quote(component_id)}"
    raise NotFound(
        f"no story {story[:200]!r} in the sandbox: use a story id or component id "
        "as GET .../components lists them"
    )


@dataclass(frozen=True)
class ScreenshotKey:
    """What a picture shows: a sandbox's story at a commit, in a viewport."""

    sandbox_id: str
    commit: str
    story: str
    viewport: Viewport


class ScreenshotCache:
    """Taken pictures, the least recently used dropped beyond ``entries``."""

    def __init__(self, entries: int = _CACHE_ENTRIES) -> None:
        self.entries = entries
        self._pictures: OrderedDict[ScreenshotKey, bytes] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: ScreenshotKey) -> bytes | None:
        picture = self._pictures.get(key)
        if picture is None:
            self.misses += 1
            return None
        self.hits += 1
        self._pictures.move_to_end(key)
        return picture

    def put(self, key: ScreenshotKey, picture: bytes) -> None:
        self._pictures[key] = picture
        self._pictures.move_to_end(key)
        while len(self._pictures) > self.entries:
            self._pictures.popitem(last=False)

    def forget(self, sandbox_id: str) -> None:
        """Drop a sandbox's pictures (it ended)."""
        for key in [k for k in self._pictures if k.sandbox_id == sandbox_id]:
            del self._pictures[key]
