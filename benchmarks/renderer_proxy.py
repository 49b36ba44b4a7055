"""What the API's renderer proxy costs: first page load and edit -> DOM, proxied vs direct.

Users reach a sandbox's renderer through the API's port (``/r/<id>/``,
serve/renderer_proxy.py): every module of the first load and every HMR
message crosses Serve's proxy, the replica and a second HTTP hop to Vite.
"Direct" is the same page asked of the sandbox's Vite itself (its port, its
base, the proxy's secret header set on the browser context), which no user
can do: it is the floor the proxy is measured against.

The two ways alternate sample by sample, each in a fresh browser context
(nothing cached), on the live scenarios' shared sandbox.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any
from urllib.parse import urlsplit

from benchmarks._browser import browser
from benchmarks._proc import EXAMPLE_REPO
from benchmarks.context import RunContext, Scenario
from benchmarks.lifecycle import COMPONENT, render_component
from benchmarks.live import _OBSERVER, BUTTON, ORIGINAL_LABEL, _sandbox
from benchmarks.results import ScenarioResult, Target
from benchmarks.service import BenchService, service
from benchmarks.stats import summarize

__all__ = ["RENDERER_PROXY_SCENARIOS"]

# The proxy may cost at most this much over direct (median to median).
FIRST_LOAD_RATIO = 1.5
EDIT_RATIO = 1.5


def _direct_url(bench: BenchService, sandbox_id: str) -> tuple[str, dict[str, str]]:
    vite = bench.vite_address(sandbox_id)
    return f"http://{vite.host}:{vite.port}{vite.base}", vite.headers


def _on_api_port(bench: BenchService, renderer_url: str) -> str:
    """``renderer_url`` on the API's port (Serve's proxy) instead of the replica's listener."""
    parts = urlsplit(renderer_url)
    return bench.base_url + parts.path + (f"?{parts.query}" if parts.query else "")


def _load(ctx: RunContext, bench: BenchService, sandbox_id: str, *, way: str) -> tuple[float, int]:
    """Seconds from goto to the component rendered, in a fresh context, and the page's
    requests meanwhile (what the proxy multiplies its cost by).

    ``way``: ``direct`` (Vite's port), ``proxy`` (renderer_url as handed out: the
    replica's own listener), ``api_port`` (the same through Serve's proxy).
    """
    context = browser(ctx).new_context()
    try:
        if way != "direct":
            url = str(bench.info(sandbox_id)["renderer_url"])
            if way == "api_port":
                url = _on_api_port(bench, url)
        else:
            url, headers = _direct_url(bench, sandbox_id)
            context.set_extra_http_headers(headers)
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        start = time.monotonic()
        render_component(page, url, COMPONENT)
        return time.monotonic() - start, len(requests)
    finally:
        context.close()


def _ratio(result: ScenarioResult, direct: list[float], ndigits: int = 2) -> None:
    floor = summarize(direct)["median"] if direct else float("nan")
    result.figures["direct_median_s"] = round(floor, 4)
    median = summarize(result.samples)["median"] if result.samples else float("nan")
    result.figures["ratio_to_direct"] = round(median / floor, ndigits) if floor else float("nan")


def first_load(ctx: RunContext) -> ScenarioResult:
    """goto renderer_url (ticket -> cookie -> page) -> component rendered, vs Vite's own port."""
    result = ScenarioResult(
        "renderer_first_load_proxy",
        "10. first page load through the renderer proxy (vs Vite direct)",
        targets=[Target("ratio_to_direct", FIRST_LOAD_RATIO, f"<= {FIRST_LOAD_RATIO:g}x direct")],
    )
    bench = service(ctx)
    sandbox = _sandbox(ctx)
    direct: list[float] = []
    api_port: list[float] = []
    # One of each first, unmeasured: Vite transforms each module on its first request.
    for way in ("direct", "proxy", "api_port"):
        _load(ctx, bench, sandbox.sandbox_id, way=way)
    requests = 0
    for _ in range(ctx.count(10, 2)):
        direct.append(_load(ctx, bench, sandbox.sandbox_id, way="direct")[0])
        seconds, requests = _load(ctx, bench, sandbox.sandbox_id, way="proxy")
        result.samples.append(seconds)
        api_port.append(_load(ctx, bench, sandbox.sandbox_id, way="api_port")[0])
    _ratio(result, direct)
    result.figures["requests_per_load"] = requests
    api_median = summarize(api_port)["median"] if api_port else float("nan")
    result.figures["api_port_median_s"] = round(api_median, 4)
    result.notes.append(
        "Fresh browser context per load (no cache); the proxy's loads include the ticket's "
        "303 and the cookie. Samples: renderer_url as handed out (the replica's own "
        "listener); api_port_median_s: the same through the API's port (Serve's proxy, "
        "what an ingress gets). Direct sets the proxy's secret header on the context."
    )
    return result


def _edit_page(ctx: RunContext, bench: BenchService, sandbox_id: str, *, proxied: bool) -> Any:
    context = browser(ctx).new_context()
    context.add_init_script(_OBSERVER)
    if proxied:
        url = str(bench.info(sandbox_id)["renderer_url"])
    else:
        url, headers = _direct_url(bench, sandbox_id)
        context.set_extra_http_headers(headers)
    page = context.new_page()
    render_component(page, url, COMPONENT)
    return context, page


def edit_to_dom(ctx: RunContext) -> ScenarioResult:
    """An edit through the API -> the DOM shows it, HMR through the proxy vs Vite direct."""
    result = ScenarioResult(
        "renderer_edit_to_dom_proxy",
        "10b. edit -> DOM with HMR through the renderer proxy (vs Vite direct)",
        targets=[Target("ratio_to_direct", EDIT_RATIO, f"<= {EDIT_RATIO:g}x direct")],
    )
    bench = service(ctx)
    sandbox = _sandbox(ctx)
    original = (EXAMPLE_REPO / BUTTON).read_text()
    if ORIGINAL_LABEL not in original:
        raise RuntimeError(f"{BUTTON} changed: no {ORIGINAL_LABEL} to edit")
    direct: list[float] = []
    pages = {}
    try:
        for proxied in (False, True):
            pages[proxied] = _edit_page(ctx, bench, sandbox.sandbox_id, proxied=proxied)
        for index in range(2000, 2000 + ctx.count(30, 3)):
            mark = f"bench-{index}"
            content = original.replace(
                ORIGINAL_LABEL, f'<>{ORIGINAL_LABEL}<span className="bench">{mark}</span></>'
            )
            command = {"command": "write_file", "file_path": BUTTON, "content": content}
            sent = time.time()
            bench.execute(sandbox.sandbox_id, {**command, "description": mark})
            for proxied, (_context, page) in pages.items():
                try:
                    page.wait_for_function(
                        "m => window.__seen && window.__seen[m] !== undefined",
                        arg=mark,
                        timeout=15_000,
                    )
                except Exception:
                    result.failures += 1
                    continue
                seen = page.evaluate("m => window.__seen[m]", mark) / 1000 - sent
                (result.samples if proxied else direct).append(seen)
        for proxied, (_context, page) in pages.items():
            reloads = int(page.evaluate("Number(sessionStorage.getItem('bench-reloads') || 0)"))
            result.figures["full_reloads_proxy" if proxied else "full_reloads_direct"] = reloads
    finally:
        for context, _page in pages.values():
            context.close()
        with contextlib.suppress(Exception):
            bench.execute(
                sandbox.sandbox_id,
                {"command": "write_file", "file_path": BUTTON, "content": original},
            )
    _ratio(result, direct)
    result.figures["missed"] = result.failures
    result.notes.append(
        "Both pages are open at once on the same sandbox: one edit, two HMR updates; "
        "each sample is edit sent -> its page's DOM shows the marker."
    )
    return result


RENDERER_PROXY_SCENARIOS = [
    Scenario(
        "renderer_first_load_proxy",
        "first load via the renderer proxy",
        first_load,
        ("service", "browser"),
    ),
    Scenario(
        "renderer_edit_to_dom_proxy",
        "edit -> DOM via the renderer proxy",
        edit_to_dom,
        ("service", "browser"),
    ),
]
