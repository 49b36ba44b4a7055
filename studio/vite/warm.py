"""Warm a Vite's transform cache: request the modules its page loads, as a browser would.

Vite transforms a module on its first request and keeps the result until the
file changes; a first page load on a fresh Vite waits for every transform of
the page's graph (the studio shell, Storybook's composition, the preview, the
stories and their components). A sandbox set up ahead of need
(actors/_ready.py) has nothing to do until a create takes it, so it requests
its own page's graph first: the user's first load then finds it transformed.

No browser: the page's ``<script type="module" src>`` and ``modulepreload``
links and what the studio plugin names as every page's roots (Storybook's
composition, the project's preview and wrapper, every component and stories
module: ``__studio/preload.json?component=*&roots=1``, from
studio-template/plugin/preload.mjs; the app imports them by computed URLs no
crawler can read), then, breadth first, every same-origin path each module imports
(``from "/..."``, ``import "/..."``, ``import("/...")``: Vite rewrites bare and
relative imports to such paths, lazily imported stories included), up to
``limit`` modules. What fails to load is counted, not raised: warming is an
optimisation, never a reason for a sandbox to fail.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

__all__ = ["WarmResult", "module_imports", "page_modules", "same_origin", "warm_renderer"]

logger = logging.getLogger(__name__)

_SCRIPT_SRC = re.compile(
    r"""<script\b[^>]*\btype=["']module["'][^>]*\bsrc=["']([^"']+)["']"""
    r"""|<link\b[^>]*\brel=["']modulepreload["'][^>]*\bhref=["']([^"']+)["']""",
    re.IGNORECASE,
)
# An import's specifier in Vite's output: absolute paths (Vite rewrites the rest to them).
_IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s*)["'](/[^"'\s]+)["']""")
_WORKERS = 4


@dataclass(frozen=True)
class WarmResult:
    """What a warm-up requested: modules loaded, failed, and its wall time."""

    loaded: int
    failed: int
    seconds: float


def page_modules(html: str, page_url: str) -> list[str]:
    """The module scripts and module preloads of a page, as absolute URLs."""
    return same_origin(page_url, [m.group(1) or m.group(2) for m in _SCRIPT_SRC.finditer(html)])


def module_imports(code: str, module_url: str) -> list[str]:
    """The same-origin modules a transformed module imports, statically or lazily."""
    origin = urlsplit(module_url)
    return [f"{origin.scheme}://{origin.netloc}{path}" for path in _IMPORT.findall(code)]


_ROOTS_PATH = "__studio/preload.json?component=*&roots=1"


def _page_roots(client: httpx.Client, page_url: str) -> list[str]:
    """The modules the plugin says pages import first (absolute URLs); none if it cannot say."""
    try:
        reply = client.get(urljoin(page_url, _ROOTS_PATH))
        paths = reply.json() if reply.status_code == 200 else []
    except (httpx.HTTPError, ValueError):
        return []
    if not isinstance(paths, list):
        return []
    return same_origin(page_url, [p for p in paths if isinstance(p, str)])


def same_origin(page_url: str, refs: list[str]) -> list[str]:
    """``refs`` resolved against ``page_url``, those on its own origin only.

    What Vite serves is the repository's code's to shape (its config's plugins run
    there), and every request of the warm-up carries the proxy's secret: a
    ``//host/...`` or ``https://...`` reference is never followed.
    """
    origin = urlsplit(page_url)
    kept = []
    for ref in refs:
        url = urljoin(page_url, ref)
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc):
            kept.append(url)
    return kept


def warm_renderer(
    page_url: str,
    *,
    headers: Mapping[str, str] | None = None,
    limit: int = 600,
    timeout: float = 120.0,
) -> WarmResult:
    """Request the page at ``page_url`` and the module graph it loads (see the module)."""
    started = time.monotonic()
    deadline = started + timeout
    loaded = failed = 0
    with httpx.Client(headers=dict(headers or {}), timeout=30.0) as client:
        page = client.get(page_url)
        page.raise_for_status()
        queue = page_modules(page.text, page_url) + _page_roots(client, page_url)
        seen = set(queue)
        queue = list(dict.fromkeys(queue))

        def fetch(url: str) -> list[str] | None:
            try:
                reply = client.get(url)
            except httpx.HTTPError:
                return None
            if reply.status_code != 200:
                return None
            if "javascript" not in reply.headers.get("content-type", ""):
                return []
            return module_imports(reply.text, url)

        with ThreadPoolExecutor(_WORKERS, thread_name_prefix="vite-warm") as pool:
            while queue and loaded + failed < limit and time.monotonic() < deadline:
                batch, queue = queue[: limit - loaded - failed], []
                for imports in pool.map(fetch, batch):
                    if imports is None:
                        failed += 1
                        continue
                    loaded += 1
                    for url in imports:
                        if url not in seen:
                            seen.add(url)
                            queue.append(url)
    result = WarmResult(loaded, failed, round(time.monotonic() - started, 3))
    logger.info(
        "renderer warmed",
        extra={"page": page_url, "loaded": loaded, "failed": failed, "seconds": result.seconds},
    )
    return result
