"""Screenshots of a story: the request's parts and the cache of taken pictures.

A picture is named by what determines it: the sandbox, the commit its files
were at, the story, the viewport and the globals (Storybook's toolbar
values: a theme, a locale). The same key always gives the same
picture (within the rendering's own nondeterminism), so taken ones are kept
(least recently used first out) and a repeated request costs no browser work.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from studio.errors import InvalidRequest, NotFound

__all__ = [
    "DEFAULT_VIEWPORT",
    "SCREENSHOT_ROUTE",
    "ScreenshotCache",
    "ScreenshotKey",
    "Viewport",
    "parse_globals",
    "parse_viewport",
    "screenshot_url",
    "story_route",
]

# The API's screenshot route (serve/picture_routes.py), named here for the verdict's links.
SCREENSHOT_ROUTE = "/api/v1/sandboxes/{sandbox_id}/screenshot"
_VIEWPORT = re.compile(r"^(\d{1,4})x(\d{1,4})$")
_MAX_SIDE = 4096
# Storybook's URL format of globals (studio-template/src/urlArgs.ts, as Storybook's own
# `globals=` parameter): `name:value` pairs joined by `;`, names dotted or indexed
# (`a.b[0]`), values URL-safe strings (`+` is a space), numbers or `!`-values.
_GLOBAL_NAME = re.compile(r"[A-Za-z0-9 _-]+(?:\.[A-Za-z0-9 _-]+|\[\d+\])*")
_GLOBAL_VALUE = re.compile(
    r"[A-Za-z0-9 _+-]*|-?\d+(?:\.\d+)?"
    r"|!(?:true|false|null|undefined)"
    r"|!hex\([0-9a-fA-F]{3,8}\)"
    r"|!date\([0-9T:.+Z -]{4,40}\)"
    r"|!(?:rgba?|hsla?)\([0-9.,% ]{5,40}\)"
)
_MAX_GLOBALS = 512
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


def parse_globals(text: str | None) -> str:
    """Globals in Storybook's URL format (``theme:dark;locale:fr``), checked and put in
    one order (pairs sorted by name: the same globals, the same cached picture).

    Empty for none; :class:`InvalidRequest` naming the first bad pair.
    """
    if not text:
        return ""
    if len(text) > _MAX_GLOBALS:
        raise InvalidRequest(f"globals: at most {_MAX_GLOBALS} characters")
    pairs: dict[str, str] = {}
    for pair in text.split(";"):
        if not pair:
            continue
        name, colon, value = pair.partition(":")
        if not colon or not _GLOBAL_NAME.fullmatch(name) or not _GLOBAL_VALUE.fullmatch(value):
            raise InvalidRequest(
                f"globals: {pair[:60]!r} is not name:value in Storybook's URL format "
                "(say theme:dark;locale:fr; values are letters, digits, space, _ and -, "
                "numbers, !true, !false, !null, !hex(rrggbb))"
            )
        pairs[name] = value
    return ";".join(f"{name}:{pairs[name]}" for name in sorted(pairs))


def story_route(catalog: dict[str, Any], story: str, globals_: str = "") -> tuple[str, str, str]:
    """(component id, story id, full-canvas route) of ``story`` in the studio's catalog.

    ``story`` is a story id of the catalog (``button--primary``) or a
    component id (``Button``: the component alone, as its canvas renders it).
    ``globals_`` (checked by :func:`parse_globals`) go in the route's query, as
    the page reads them (``?full&globals=theme:dark``).
    """
    query = "?full"
    if globals_:
        query += "&globals=" + quote(globals_, safe=":;!(),.[]+-_")
    for component in catalog.get("components", []):
        component_id = str(component["id"])
        for entry in component.get("stories", []):
            if entry["id"] == story:
                path = f"{query}#/{quote(component_id)}/{quote(str(entry['exportName']))}"
                return component_id, story, path
        if component_id == story:
            return component_id, story, f"{query}#/{quote(component_id)}"
    raise NotFound(
        f"no story {story[:200]!r} in the sandbox: use a story id or component id "
        "as GET .../components lists them"
    )


@dataclass(frozen=True)
class ScreenshotKey:
    """What a picture shows: a sandbox's story at a commit, in a viewport, with globals."""

    sandbox_id: str
    commit: str
    story: str
    viewport: Viewport
    globals: str = ""


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


def screenshot_url(sandbox_id: str, story: str, commit: str) -> str:
    """The API's link to ``story``'s picture at ``commit`` (the default viewport)."""
    query = urlencode({"story": story, "commit": commit})
    return SCREENSHOT_ROUTE.format(sandbox_id=quote(sandbox_id, safe="")) + "?" + query
