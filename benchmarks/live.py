"""Service scenarios of a running sandbox: execute latency, edit -> DOM, WebSocket fan-out.

They share one sandbox (created on first use, torn down when the run ends):
what they measure is a sandbox at work, not its start.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks._browser import browser
from benchmarks._proc import EXAMPLE_REPO
from benchmarks._ws_clients import Arrival, Clients
from benchmarks.context import RunContext, Scenario
from benchmarks.lifecycle import render_component
from benchmarks.results import ScenarioResult, Target
from benchmarks.service import Created, service
from benchmarks.stats import percentile

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
    from actors.manager import ManagerTimeouts

    bench = service(ctx)
    created = bench.create()
    # Measured on a settled node, as create -> ready is: the manager refills the pool
    # spare_delay s after this create, and the spare's boot (with its Vite standby)
    # would take the first edits' CPU.
    if not ctx.quick:
        time.sleep(ManagerTimeouts().spare_delay)
        bench.settle()
    try:
        yield created
    finally:
        with contextlib.suppress(Exception):
            bench.delete(created.sandbox_id)


def _sandbox(ctx: RunContext) -> Created:
    return ctx.resource("shared-sandbox", _shared_sandbox)


def _edits(ctx: RunContext, result: ScenarioResult, created: Created) -> None:
    """200 write_file executes on ``execute_url``, one after the other, then some on the API port.

    ``result`` gets the latencies on ``execute_url`` (what the API hands out)
    as samples, and those through Serve's proxy as figures.
    """
    bench = service(ctx)
    direct = str(created.body["execute_url"])
    proxied = f"{bench.base_url}/api/v1/sandboxes/{created.sandbox_id}/execute"
    through_proxy: list[float] = []
    on_direct_count = ctx.count(200, 10)
    for index in range(on_direct_count + ctx.count(50, 3)):
        command = {
            "command": "write_file",
            "file_path": "src/bench/Note.ts",
            "content": f"export const note = {index};\n",
            "description": f"bench edit {index}",
        }
        on_direct = index < on_direct_count
        start = time.monotonic()
        reply = bench.client.post(direct if on_direct else proxied, json=command)
        elapsed = time.monotonic() - start
        (result.samples if on_direct else through_proxy).append(elapsed)
        if reply.status_code != 200 or not reply.json().get("commit_hash"):
            result.failures += 1
    result.figures["without_commit"] = result.failures
    result.figures["api_port_p50_ms"] = round(percentile(through_proxy, 50) * 1000, 1)
    result.figures["api_port_p99_ms"] = round(percentile(through_proxy, 99) * 1000, 1)
    result.notes.append(
        "Edits go to the execute_url the API hands out (the replica's own listener); "
        "api_port_* are the same edits through the API's port (Serve's proxy). The sandbox "
        "was created on a settled node and the spare worker asked for after it has booted."
    )


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
    _edits(ctx, result, _sandbox(ctx))
    return result


def execute_latency_local(ctx: RunContext) -> ScenarioResult:
    """The same with ``durable_commits=false``: answered once on the node's disk."""
    result = _execute_result(
        "execute_write_local", "5b. execute write_file + auto-commit (durable_commits=false)"
    )
    bench = service(ctx)
    created = bench.create({"durable_commits": False})
    try:
        _edits(ctx, result, created)
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
        # A fresh renderer_url: the shared sandbox's create answer may be older than its ticket.
        render_component(page, str(bench.info(sandbox.sandbox_id)["renderer_url"]))
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


def _selected(component: str) -> Callable[[dict[str, Any]], bool]:
    def match(message: dict[str, Any]) -> bool:
        payload = message.get("payload") or {}
        kind = message.get("type")
        return bool(kind == "component-selected" and payload.get("component") == component)

    return match


def _fanout(
    url: str, headers: dict[str, str], clients: int, rounds: int
) -> tuple[list[tuple[float, Arrival]], int]:
    """(sent, arrival) of ``rounds`` events sent by client 0 to the others; how many never came."""
    arrivals: list[tuple[float, Arrival]] = []
    missed = 0
    receivers = range(1, clients)
    connections = Clients(url, headers, clients)
    try:
        connections.drain(quiet=0.3)  # hello and the replay of older events
        for index in range(rounds):
            component = f"Bench{index}"
            sent = time.time()
            message = {"type": "component-selected", "payload": {"component": component}}
            connections.send_text(0, json.dumps(message))
            got = connections.wait_for(_selected(component), receivers, WS_TIMEOUT)
            missed += len(receivers) - len(got)
            arrivals += [(sent, arrival) for arrival in got.values()]
            connections.drain(quiet=0.05)
    finally:
        connections.close()
    return arrivals, missed


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
    # The clients of one event share most of its path: the tail is per event, so a p99
    # needs enough events (20 put the whole p99 in the one or two slowest).
    arrivals, missed = _fanout(url, bench.headers, clients + 1, ctx.count(100, 2))
    result.samples = [arrival.parsed - sent for sent, arrival in arrivals]
    in_socket = sorted(arrival.in_socket - sent for sent, arrival in arrivals)
    if in_socket:
        result.figures["in_socket_p50_ms"] = round(percentile(in_socket, 50) * 1000, 1)
        result.figures["in_socket_p99_ms"] = round(percentile(in_socket, 99) * 1000, 1)
    rounds: dict[float, list[float]] = {}
    for sent, arrival in arrivals:
        rounds.setdefault(sent, []).append(arrival.in_socket - sent)
    if rounds:
        # The path to the first client (sender -> replica -> actor -> replica), then the fan-out.
        first = [min(times) for times in rounds.values()]
        spread = [max(times) - min(times) for times in rounds.values()]
        result.figures["first_client_p50_ms"] = round(percentile(first, 50) * 1000, 1)
        result.figures["first_to_last_p50_ms"] = round(percentile(spread, 50) * 1000, 1)
    result.failures = missed
    result.figures["missed"] = missed
    result.notes.append(
        "The event is a component-selected message sent by one more client and rebroadcast "
        "to the others; latency is send -> parsed by the receiving client (wall clock, one "
        "process). in_socket is send -> the kernel's arrival time of the bytes on the "
        "client's socket, which no client-side processing delays. The clients are plain "
        "sockets read by one epoll loop (benchmarks/_ws_clients.py)."
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
