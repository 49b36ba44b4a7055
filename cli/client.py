"""The CLI's client commands: create, ls, show, exec, rollback, finalize, rm.

Each command is one or two API calls and a rendering of the answer, either
for people (aligned lines) or, with ``--json``, the API's JSON as it came.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from cli.follow import SetupOutcome, StepDisplay, follow_setup
from cli.http import CREATE_TIMEOUT, ApiClient, CliError

__all__ = ["COMMANDS", "Progress", "parse_overrides"]

_SPINNER = "|/-\\"
# Lines of a failed Vite's output a failed create prints.
_OUTPUT_LINES = 15


class Progress:
    """An elapsed-time line on ``stream`` while a long call runs.

    On a terminal it redraws one line (spinner + seconds); elsewhere (a log, a
    pipe) it writes one line when it starts and one when it ends, so logs stay
    readable.
    """

    def __init__(self, label: str, stream: TextIO, interval: float = 0.1) -> None:
        self.label = label
        self.stream = stream
        self.interval = interval
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tty = bool(getattr(stream, "isatty", lambda: False)())

    def elapsed(self) -> float:
        """Seconds since the progress began."""
        return time.monotonic() - self.started

    def __enter__(self) -> Progress:
        self.started = time.monotonic()
        if self._tty:
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()
        else:
            self.stream.write(f"{self.label}...\n")
            self.stream.flush()
        return self

    def _spin(self) -> None:
        tick = 0
        while not self._stop.wait(self.interval):
            char = _SPINNER[tick % len(_SPINNER)]
            self.stream.write(f"\r{char} {self.label}... {self.elapsed():.1f}s")
            self.stream.flush()
            tick += 1

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r\x1b[K")
        outcome = "failed" if exc_type is not None else "done"
        self.stream.write(f"{self.label}: {outcome} in {self.elapsed():.1f}s\n")
        self.stream.flush()


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["timeout_hours=1", "branch=dev"]`` -> ``{"timeout_hours": 1, "branch": "dev"}``.

    Values are JSON when they parse as JSON (numbers, booleans), else strings.
    """
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        overrides[key.strip()] = value
    return overrides


def _emit_json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _sandbox_lines(sandbox: dict[str, Any]) -> list[str]:
    ident = sandbox.get("sandbox_id") or sandbox.get("id", "?")
    lines = [f"{ident}  {sandbox.get('status', '?')}"]
    fields = [
        ("branch", "branch"),
        ("renderer", "renderer_url"),
        ("websocket", "websocket_url"),
        ("node", "node"),
        ("restarts", "restarts"),
        ("last activity", "last_activity"),
        ("pull request", "pr_url"),
        ("error", "error"),
    ]
    for label, key in fields:
        value = sandbox.get(key)
        if value not in (None, ""):
            lines.append(f"  {label + ':':<15}{value}")
    commits = sandbox.get("git_commits") or []
    if commits:
        lines.append("  commits:")
        lines += [_commit_line(commit, indent="    ") for commit in commits]
    return lines


def _commit_line(commit: dict[str, Any], indent: str = "") -> str:
    base = "  (base)" if commit.get("is_base") else ""
    return (
        f"{indent}{str(commit.get('hash', ''))[:12]}  {commit.get('timestamp', '')}  "
        f"{commit.get('message', '')}{base}"
    )


def _write_lines(lines: list[str], out: TextIO) -> None:
    out.write("\n".join(lines) + "\n")


def _resolve_repository(client: ApiClient, wanted: str | None) -> int:
    """A repository id from ``--repo`` (an id or a registered name), or the only one there is."""
    if wanted is not None and wanted.isdigit():
        return int(wanted)
    try:
        listed = client.request("GET", "/repositories")
    except CliError as exc:
        if exc.code in ("permission_denied", "forbidden"):
            raise CliError("only an admin may list repositories: pass --repo ID") from exc
        raise
    repos = listed.get("repositories", []) if isinstance(listed, dict) else listed
    if wanted is not None:
        for repo in repos:
            if repo.get("name") == wanted:
                return int(repo["id"])
        names = ", ".join(str(r.get("name")) for r in repos) or "none"
        raise CliError(f"no repository named {wanted!r} is registered (registered: {names})")
    if len(repos) == 1:
        return int(repos[0]["id"])
    if not repos:
        raise CliError("no repository is registered yet: an admin registers one first")
    names = ", ".join(f"{r.get('name')} (id {r.get('id')})" for r in repos)
    raise CliError(f"several repositories are registered, pick one with --repo: {names}")


def cmd_create(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """POST /sandboxes, with an elapsed-time display until it is ready."""
    repository_id = _resolve_repository(client, args.repo)
    body: dict[str, Any] = {"type": "component-studio", "repository_id": repository_id}
    overrides = parse_overrides(args.set or [])
    clash = set(overrides) & set(body)
    if clash:
        raise CliError(f"--set cannot change {', '.join(sorted(clash))}")
    # The API takes config overrides as extra top-level fields of the create request.
    body.update(overrides)
    sys.stderr.write(f"creating a sandbox on repository {repository_id}\n")
    display = StepDisplay(sys.stderr)
    created = client.request(
        "POST", "/sandboxes", json=body, params={"wait": "false"}, timeout=CREATE_TIMEOUT
    )
    sandbox_id = str(created["sandbox_id"])
    if created.get("status") != "running":
        outcome = follow_setup(
            client, sandbox_id, created["websocket_url"], display, timeout=CREATE_TIMEOUT
        )
        if not outcome.ready:
            raise CliError(_setup_failure(sandbox_id, outcome))
        now = client.request("GET", f"/sandboxes/{sandbox_id}")
        created.update(status=now.get("status"), renderer_url=now.get("renderer_url"))
    else:
        display.finish("running")
    if args.json:
        _emit_json(created, out)
    else:
        _write_lines(_sandbox_lines(created), out)
    return 0


def _setup_failure(sandbox_id: str, outcome: SetupOutcome) -> str:
    """The one message of a failed create: state, reason, the output's last lines."""
    lines = [f"sandbox {sandbox_id} did not start ({outcome.status}): {outcome.error or '?'}"]
    lines += [f"  | {line}" for line in outcome.output[-_OUTPUT_LINES:]]
    return "\n".join(lines)


def cmd_ls(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """GET /sandboxes: the caller's sandboxes, one line each."""
    params = {"include_ended": "true"} if args.all else None
    listed = client.request("GET", "/sandboxes", params=params)
    sandboxes = listed.get("sandboxes", []) if isinstance(listed, dict) else listed
    if args.json:
        _emit_json(listed, out)
        return 0
    if not sandboxes:
        out.write("no sandboxes\n")
        return 0
    rows = [("ID", "STATUS", "BRANCH", "RENDERER", "LAST ACTIVITY")]
    for sandbox in sandboxes:
        rows.append(
            (
                str(sandbox.get("id") or sandbox.get("sandbox_id")),
                str(sandbox.get("status", "")),
                str(sandbox.get("branch", "")),
                str(sandbox.get("renderer_url") or "-"),
                str(sandbox.get("last_activity", "")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    _write_lines(
        [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ],
        out,
    )
    return 0


def cmd_show(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """GET /sandboxes/{id}."""
    sandbox = client.request("GET", f"/sandboxes/{args.sandbox}")
    if args.json:
        _emit_json(sandbox, out)
    else:
        _write_lines(_sandbox_lines(sandbox), out)
    return 0


def _exec_body(args: argparse.Namespace) -> dict[str, Any]:
    if args.action == "write":
        if (args.file is None) == (args.content is None):
            raise CliError("exec write needs exactly one of --file F or --content C")
        if args.file is not None:
            source = Path(args.file)
            try:
                content = sys.stdin.read() if args.file == "-" else source.read_text()
            except OSError as exc:
                raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
        else:
            content = args.content
        return {
            "command": "write_file",
            "file_path": args.path,
            "content": content,
            "description": args.message or f"Update {args.path}",
        }
    if args.action == "delete":
        return {
            "command": "delete_file",
            "file_path": args.path,
            "description": args.message or f"Delete {args.path}",
        }
    if args.action == "read":
        return {"command": "read_file", "file_path": args.path}
    return {"command": "list_files", "file_path": args.path or ""}


def cmd_exec(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """POST /sandboxes/{id}/execute: write, delete, read or list files."""
    result = client.request("POST", f"/sandboxes/{args.sandbox}/execute", json=_exec_body(args))
    if args.json:
        _emit_json(result, out)
    elif args.action == "read":
        out.write(result.get("content") or "")
    elif args.action == "ls":
        files = list(result.get("files") or [])
        if files:
            _write_lines(files, out)
    else:
        commit = result.get("commit_hash")
        suffix = f" (commit {commit[:12]})" if commit else " (nothing to commit)"
        out.write(f"{result.get('output', 'done')}{suffix}\n")
    return 0


def cmd_rollback(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """POST /sandboxes/{id}/rollback to a commit, by steps, or undoing the last rollback."""
    body: dict[str, Any]
    if args.undo:
        body = {"undo": True}
    elif args.to is not None:
        body = {"commit_hash": args.to}
    else:
        body = {"steps": args.steps}
    result = client.request("POST", f"/sandboxes/{args.sandbox}/rollback", json=body)
    if args.json:
        _emit_json(result, out)
    else:
        previous = result.get("previous_hash")
        was = f" (was {previous[:12]})" if previous else ""
        out.write(f"now at {str(result.get('current_hash', ''))[:12]}{was}\n")
    return 0


def cmd_finalize(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """POST /sandboxes/{id}/finalize: push the branch, open the PR, tear down."""
    body = {"title": args.title, "description": args.description, "images": args.images}
    with Progress(f"finalizing {args.sandbox}", sys.stderr):
        result = client.request(
            "POST", f"/sandboxes/{args.sandbox}/finalize", json=body, timeout=CREATE_TIMEOUT
        )
    if args.json:
        _emit_json(result, out)
        return 0
    lines = []
    if result.get("pr_url"):
        lines.append(f"pull request #{result.get('pr_number')}: {result['pr_url']}")
    if result.get("message"):
        lines.append(str(result["message"]))
    if result.get("branch"):
        lines.append(f"branch {result['branch']} pushed to {result.get('pushed_to', '?')}")
    if result.get("screenshots_commit"):
        lines.append(
            f"pictures on {str(result.get('screenshots_ref', '')).removeprefix('refs/heads/')} "
            f"at {str(result['screenshots_commit'])[:12]}"
        )
    _write_lines(lines or ["finalized"], out)
    return 0


def cmd_rm(client: ApiClient, args: argparse.Namespace, out: TextIO) -> int:
    """DELETE /sandboxes/{id}: tear it down; its branch and commits are kept."""
    result = client.request("DELETE", f"/sandboxes/{args.sandbox}")
    if args.json:
        _emit_json(result, out)
    else:
        status = result.get("status", "stopped") if isinstance(result, dict) else "stopped"
        branch = result.get("branch") if isinstance(result, dict) else None
        kept = f"; branch {branch} kept" if branch else "; its branch is kept"
        out.write(f"{args.sandbox} {status}{kept}\n")
    return 0


COMMANDS = {
    "create": cmd_create,
    "ls": cmd_ls,
    "show": cmd_show,
    "exec": cmd_exec,
    "rollback": cmd_rollback,
    "finalize": cmd_finalize,
    "rm": cmd_rm,
}
