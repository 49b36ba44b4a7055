"""Service scenarios of a running sandbox: execute latency, edit -> DOM, WebSocket fan-out.

They share one sandbox (created on first use, torn down when the run ends):
what they measure is a sandbox at work, not its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks._browser import browser
from benchmarks._proc import EXAMPLE_REPO
from benchmarks.context import RunContext, Scenario
from benchmarks.lifecycle import render_component
from benchmarks.results import ScenarioResult, Target
from benchmarks.service import Created, service

__all__ = ["LIVE_SCENARIOS"]

BUTTON = "src/components/Button/Button.tsx"
ORIGINAL_LABEL = "{children ?? label}"
WS_TIMEOUT = 30.0

# Records, in page time, when each "bench-<n>" marker first shows up in the DOM;
# an init script, so it is back after a full reload too (reloads are counted).
_OBSERVER = """
(() => {
  window.__seen = {};
  const key = 'bench-reloads';
  sessionStorage.setItem(key, String(Number(sessionStorage.getItem(key) || '-1') + 1));
  const check = () => {
    const text = document.body ? document.body.textContent || '' : '';
    for (const mark of text.match(/bench-\\d+/g) || []) {
      if (!(mark in window.__seen)) {
        window.__seen[mark] = performance.timeOrigin + performance.now();
      }
    }
  };
  const what = {subtree: true, childList: true, characterData: true};
  new MutationObserver(check).observe(document, what);
})();
"""


@contextlib.contextmanager
def _shared_sandbox(ctx: RunContext) -> Iterator[Created]:
    bench = service(ctx)
    created = bench.create()
    try:
        yield created
    finally:
        with contextlib.suppress(Exception):
            bench.delete(created.sandbox_id)


def _sandbox(ctx: RunContext) -> Created:
    return ctx.resource("shared-sandbox", _shared_sandbox)


def _edits(ctx: RunContext, result: ScenarioResult, sandbox_id: str) -> None:
    """200 write_file executes, one after the other; ``result`` gets their latencies."""
    bench = service(ctx)
    for index in range(ctx.count(200, 10)):
        command = {
            "command": "write_file",
            "file_path": "src/bench/Note.ts",
            "content": f"export const note = {index};\n",
            "description": f"bench edit {index}",
        }
        start = time.monotonic()
        answer = bench.execute(sandbox_id, command)
        result.samples.append(time.monotonic() - start)
        if not answer.get("commit_hash"):
            result.failures += 1
    result.figures["without_commit"] = result.failures


def _execute_result(name: str, title: str) -> ScenarioResult:
    return ScenarioResult(
        name,
        title,
        floor="git_execute_floor",
        targets=[Target("median", 0.025, "p50 <= 25 ms"), Target("p99", 0.1, "p99 <= 100 ms")],
    )


def execute_latency(ctx: RunContext) -> ScenarioResult:
    """POST execute write_file (auto-commit, durable: pushed to origin) -> 200 with the hash."""
    result = _execute_result(
        "execute_write", "5. execute write_file + auto-commit (durable: on origin)"
    )
    _edits(ctx, result, _sandbox(ctx).sandbox_id)
    return result


def execute_latency_local(ctx: RunContext) -> ScenarioResult:
    """The same with ``durable_commits=false``: answered once on the node's disk."""
    result = _execute_result(
        "execute_write_local", "5b. execute write_file + auto-commit (durable_commits=false)"
    )
    bench = service(ctx)
    created = bench.create({"durable_commits": False})
    try:
        _edits(ctx, result, created.sandbox_id)
    finally:
        bench.delete(created.sandbox_id)
    return result


def edit_to_dom(ctx: RunContext) -> ScenarioResult:
    """An edit of Button.tsx through the API -> the DOM in Chromium shows it (HMR)."""
    result = ScenarioResult(
        "edit_to_dom",
        "6. edit through the API -> DOM updated (HMR)",
        targets=[Target("median", 0.1, "p50 <= 100 ms")],
    )
    bench = service(ctx)
    sandbox = _sandbox(ctx)
    original = (EXAMPLE_REPO / BUTTON).read_text()
    if ORIGINAL_LABEL not in original:
        raise RuntimeError(f"{BUTTON} changed: no {ORIGINAL_LABEL} to edit")
    context = browser(ctx).new_context()
    try:
        context.add_init_script(_OBSERVER)
        page = context.new_page()
        render_component(page, sandbox.renderer_url)
        for index in range(1000, 1000 + ctx.count(50, 3)):
            mark = f"bench-{index}"
            content = original.replace(
                ORIGINAL_LABEL, f'<>{ORIGINAL_LABEL}<span className="bench">{mark}</span></>'
            )
            command = {"command": "write_file", "file_path": BUTTON, "content": content}
            sent = time.time()
            bench.execute(sandbox.sandbox_id, {**command, "description": mark})
            try:
                page.wait_for_function(
                    "m => window.__seen && window.__seen[m] !== undefined", arg=mark, timeout=15_000
                )
            except Exception:
                result.failures += 1
                continue
            seen_ms = page.evaluate("m => window.__seen[m]", mark)
            result.samples.append(seen_ms / 1000 - sent)
        reloads = page.evaluate("Number(sessionStorage.getItem('bench-reloads') || 0)")
        result.figures["full_reloads"] = int(reloads)
    finally:
        context.close()
        with contextlib.suppress(Exception):
            bench.execute(
                sandbox.sandbox_id,
                {"command": "write_file", "file_path": BUTTON, "content": original},
            )
    result.figures["missed"] = result.failures
    return result


async def _fanout(
    url: str, headers: dict[str, str], clients: int, rounds: int
) -> tuple[list[float], int]:
    import websockets

    sockets = [
        await websockets.connect(url, additional_headers=headers, max_size=None)
        for _ in range(clients)
    ]
    latencies: list[float] = []
    missed = 0
    try:
        for ws in sockets:  # drain hello and the replay of older events
            with contextlib.suppress(TimeoutError):
                while True:
                    await asyncio.wait_for(ws.recv(), timeout=0.3)

        async def receive(ws: Any, component: str) -> float | None:
            deadline = time.monotonic() + WS_TIMEOUT
            while time.monotonic() < deadline:
                raw = await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic())
                message = json.loads(raw)
                if (
                    message.get("type") == "component-selected"
                    and message.get("payload", {}).get("component") == component
                ):
                    return time.monotonic()
            return None

        for index in range(rounds):
            component = f"Bench{index}"
            waiters = [asyncio.create_task(receive(ws, component)) for ws in sockets[1:]]
            await asyncio.sleep(0.05)  # every receiver is waiting before the send
            sent = time.monotonic()
            message = {"type": "component-selected", "payload": {"component": component}}
            await sockets[0].send(json.dumps(message))
            for received in await asyncio.gather(*waiters, return_exceptions=True):
                if isinstance(received, float):
                    latencies.append(received - sent)
                else:
                    missed += 1
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return latencies, missed


def _ws_fanout(ctx: RunContext, name: str, title: str, *, through_proxy: bool) -> ScenarioResult:
    clients = ctx.count(100, 5)
    result = ScenarioResult(
        name,
        f"{title}: one event to {clients} clients",
        targets=[Target("p99", 0.02, "p99 <= 20 ms")],
    )
    bench = service(ctx)
    sandbox = _sandbox(ctx)
    url = str(sandbox.body["websocket_url"])
    if through_proxy:
        url = (
            f"{bench.base_url.replace('http://', 'ws://')}/api/v1/sandboxes/{sandbox.sandbox_id}/ws"
        )
    # Playwright's sync API keeps an event loop on this thread: the clients get their own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        latencies, missed = pool.submit(
            asyncio.run, _fanout(url, bench.headers, clients, ctx.count(20, 2))
        ).result()
    result.samples = latencies
    result.failures = missed
    result.figures["missed"] = missed
    result.notes.append(
        "The event is a component-selected message sent by one client and rebroadcast to "
        "the others; latency is send -> receive, both clocks in this process."
    )
    return result


def ws_fanout(ctx: RunContext) -> ScenarioResult:
    """One event to 100 clients on the websocket_url the API hands out (the replica's listener)."""
    result = _ws_fanout(ctx, "ws_fanout", "7. WebSocket", through_proxy=False)
    result.notes.append("Clients use the API's websocket_url: the replica's own listener.")
    return result


def ws_fanout_proxy(ctx: RunContext) -> ScenarioResult:
    """The same through the API's port, where Serve's proxy carries every frame."""
    result = _ws_fanout(
        ctx, "ws_fanout_proxy", "7b. WebSocket via the API port", through_proxy=True
    )
    result.notes.append("Clients use the API's port: Serve's proxy relays every frame.")
    return result


LIVE_SCENARIOS = [
    Scenario("execute_write", "execute write_file", execute_latency, ("service",)),
    Scenario(
        "execute_write_local",
        "execute write_file, not durable",
        execute_latency_local,
        ("service",),
    ),
    Scenario("edit_to_dom", "edit -> DOM", edit_to_dom, ("service", "browser")),
    Scenario("ws_fanout", "WebSocket fan-out", ws_fanout, ("service",)),
    Scenario("ws_fanout_proxy", "WebSocket fan-out via the proxy", ws_fanout_proxy, ("service",)),
]
