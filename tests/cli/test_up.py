"""``studio up``: its pieces without Ray, then the whole command as a real subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from playwright.sync_api import Page, expect
from websockets.sync.client import connect

from cli.main import main
from cli.up import ensure_example_repository, port_taken
from tests.actors.test_actors_ray import wait_for
from tests.studio.test_sandbox_fixtures import (  # noqa: F401 (fixture)
    PORTS,
    free_base,
    install_cache,
)
from tests.support.gitrepo import git
from tests.support.user_shell import run_the_docs_cleanup_commands, shell_env_without_venv

ROOT = Path(__file__).resolve().parents[2]
# A stop's bound is 10 s (docs/operations.md; 4-5 s measured on a loaded 2-core
# machine). The tests wait three times that before calling it hung, so a busy
# machine does not fail them; the code this replaced took 61 s and exited 1.
STOP_SECONDS = 30


def listening_low_port() -> socket.socket:
    """A socket listening on a free port below Ray's worker range (API ports must be)."""
    for port in range(7100, 9900, 7):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        sock.listen()
        return sock
    raise AssertionError("no free port below 9900")


def low_free_port() -> int:
    with listening_low_port() as sock:
        return int(sock.getsockname()[1])


def test_port_taken_sees_a_listening_socket() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_taken("127.0.0.1", port)
    assert not port_taken("127.0.0.1", port)


def test_up_refuses_a_taken_port_before_starting_anything(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COMPONENT_STUDIO_STATE_DIR", str(tmp_path / "state"))
    with listening_low_port() as sock:
        port = sock.getsockname()[1]
        assert main(["up", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert "--port" in err
    assert not (tmp_path / "state").exists()


def test_example_repository_is_made_once_with_a_main_branch(tmp_path: Path) -> None:
    repo = ensure_example_repository(tmp_path / "repos")
    assert repo == tmp_path / "repos" / "ui-kit"
    assert git(repo, "branch", "--show-current") == "main"
    assert git(repo, "status", "--porcelain") == ""
    assert "src/index.ts" in git(repo, "ls-files").splitlines()
    head = git(repo, "rev-parse", "HEAD")
    (repo / "local-edit.txt").write_text("kept\n")
    assert ensure_example_repository(tmp_path / "repos") == repo
    assert git(repo, "rev-parse", "HEAD") == head
    assert (repo / "local-edit.txt").exists()


def test_a_half_made_example_copy_is_made_again(tmp_path: Path) -> None:
    broken = tmp_path / "repos" / "ui-kit"
    broken.mkdir(parents=True)
    (broken / "partial").write_text("x")
    repo = ensure_example_repository(tmp_path / "repos")
    assert not (repo / "partial").exists()
    assert (
        subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], check=False, capture_output=True
        ).returncode
        == 0
    )


@pytest.mark.parametrize(
    ("port", "problem"),
    [
        ("15000", "--port 15000: inside Ray's worker port range 10002-19999; choose a port"),
        ("10002", "--port 10002: inside Ray's worker port range 10002-19999; choose a port"),
        ("80", "--port 80: below 1024; choose a port"),
        ("70000", "--port 70000: above 65535; choose a port"),
    ],
)
def test_up_refuses_a_port_naming_the_flag(port, problem, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COMPONENT_STUDIO_STATE_DIR", str(tmp_path / "state"))
    assert main(["up", "--port", port]) == 1
    err = capsys.readouterr().err
    assert problem in err
    assert "ws_port" not in err
    assert not (tmp_path / "state").exists()


def test_a_bad_port_from_the_environment_names_the_variable(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COMPONENT_STUDIO_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("COMPONENT_STUDIO_WS_PORT", "12000")
    assert main(["up"]) == 1
    assert "COMPONENT_STUDIO_WS_PORT 12000: inside Ray's worker port range" in (
        capsys.readouterr().err
    )


def test_up_refuses_the_dashboard_port_as_the_api_port(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COMPONENT_STUDIO_STATE_DIR", str(tmp_path / "state"))
    port = str(low_free_port())
    assert main(["up", "--port", port, "--dashboard-port", port]) == 1
    assert f"--port {port}: the Ray dashboard's port (--dashboard-port)" in capsys.readouterr().err


# -- the whole command, as a real subprocess ---------------------------------------------


# Every process of one `studio up` under test (its Ray, Ray's workers) inherits this.
INSTANCE_MARKER = "COMPONENT_STUDIO_TEST_UP"
# What a clean stop must not print (Ray's error lines start with "(raylet)" or similar).
ERROR_LINE = re.compile(r"error|failed|traceback|exception|\(raylet\)", re.IGNORECASE)


def instance_processes(marker: str) -> list[psutil.Process]:
    """Live processes (not zombies) that carry ``marker`` in their environment."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if (
                proc.pid != os.getpid()
                and proc.environ().get(INSTANCE_MARKER) == marker
                and proc.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(proc)
    return found


class UpProcess:
    """`studio up` running as a child in a session of its own, its stdout read line by line.

    Its own session, as a service manager starts it: ``os.killpg`` on its pid
    signals its whole process group and nothing of the test's.
    """

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.marker = uuid.uuid4().hex
        self._stderr = log.open("w")
        self.proc = subprocess.Popen(
            argv,
            env={**env, INSTANCE_MARKER: self.marker},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            start_new_session=True,
        )
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        self.log = log
        # Set by running_up: the API's base URL, the Ray dashboard's port, Ray's temp dir.
        self.api = ""
        self.dashboard = 0
        self.temp_dir = ""

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(
            f"`studio up` never printed {text!r}; stdout:\n"
            + "\n".join(self.seen)
            + "\nstderr:\n"
            + self.log.read_text()[-4000:]
        )

    def value(self, label: str) -> str:
        line = next(line for line in self.seen if line.strip().startswith(label))
        return line.split(label, 1)[1].strip()

    def stop(self, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stdout(self) -> list[str]:
        """Every line printed, once the process has exited."""
        self._pump_thread.join(30)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return self.seen

    def leftovers(self) -> list[str]:
        """Processes of this instance still running (its Ray's included)."""
        return [
            f"{p.pid}: {' '.join(p.cmdline())[:200]}"
            for p in instance_processes(self.marker)
            if p.is_running()
        ]

    def kill(self) -> None:
        """SIGKILL whatever of this instance is still running (after a failed test)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        procs = instance_processes(self.marker)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(procs, timeout=30)
        self._stderr.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def service_env(state: Path, **extra: str) -> dict[str, str]:
    """The environment `scripts/run.sh` gives `studio up`: the venv's bin not on PATH.

    PYTHONPATH names this checkout, so Ray's workers import its code too.
    """
    env = shell_env_without_venv()
    env.update(
        PYTHONPATH=str(ROOT),
        COMPONENT_STUDIO_STATE_DIR=str(state),
        COMPONENT_STUDIO_VITE_PORT=str(free_base()),
        COMPONENT_STUDIO_VITE_PORT_COUNT=str(PORTS),
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def running_up(
    tmp_path: Path,
    *flags: str,
    cache: Path | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[UpProcess]:
    """`studio up` started as `scripts/run.sh` would, on its own ports and temp dir.

    ``cache``: an install cache to link into its state dir (for tests that create sandboxes).
    ``up.api`` is its API's base URL, ``up.dashboard`` its Ray dashboard's port,
    ``up.temp_dir`` its Ray's temp dir.
    Whatever is left of it when the block ends is killed.
    """
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    if cache is not None:
        (state / "install-cache").symlink_to(cache, target_is_directory=True)
    temp_dir = tempfile.mkdtemp(prefix="rs-", dir="/tmp")
    port = port or low_free_port()
    dashboard = free_port()
    argv = [sys.executable, "-m", "cli.main", "up", "--port", str(port)]
    argv += ["--dashboard-port", str(dashboard), "--temp-dir", temp_dir, "--slots", "4", *flags]
    up = UpProcess(argv, service_env(state, **(env or {})), tmp_path / "up.stderr")
    up.api, up.dashboard, up.temp_dir = f"http://127.0.0.1:{port}", dashboard, temp_dir
    try:
        yield up
    finally:
        up.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def session_leftovers(temp_dir: str) -> list[str]:
    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if temp_dir in cmdline and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{proc.pid}: {cmdline[:200]}")
    return left


def wait_for_metrics(temp_dir: Path, names: list[str], timeout: float = 120) -> dict[str, str]:
    """The export lines of each metric in ``names``, from every metrics agent of the cluster."""
    discovery = temp_dir / "prom_metrics_service_discovery.json"
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, httpx.HTTPError):
            targets = [t for group in json.loads(discovery.read_text()) for t in group["targets"]]
            text = "\n".join(httpx.get(f"http://{t}/metrics", timeout=10).text for t in targets)
            found = {
                name: "\n".join(line for line in text.splitlines() if name in line)
                for name in names
            }
            if all(found.values()):
                return found
        time.sleep(2)
    raise AssertionError(f"metrics {names} never exported; last seen: {found}")


def cli(url: str, token: str, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main([argv[0], "--url", url, "--token", token, *argv[1:]], out=out)
    return code, out.getvalue()


@pytest.mark.slow
@pytest.mark.browser
def test_up_demo_serves_renders_cleans_up_and_shuts_down_clean(
    tmp_path: Path,
    install_cache: Path,  # noqa: F811
    browser_page: Page,
) -> None:
    state = tmp_path / "state"
    # One held sandbox, the default `scripts/run.sh` runs with (the session turns them off).
    held = {"COMPONENT_STUDIO_READY_SANDBOXES": "1"}
    with running_up(tmp_path, "--demo", cache=install_cache, env=held) as up:
        up.wait_for("Press Ctrl-C", timeout=240)
        api, port, temp_dir = up.api, int(up.api.rsplit(":", 1)[1]), up.temp_dir
        assert up.value("API:") == f"{api}/api/v1"
        assert up.value("Docs:") == f"{api}/docs"
        assert up.value("MCP:") == f"{api}/mcp"
        assert up.value("Dashboard:") == f"http://127.0.0.1:{up.dashboard}"
        token = up.value("Admin token:")
        # The default: repository code in the bwrap boundary (cli.isolation).
        assert up.value("Isolation:").startswith("bwrap: ")
        sandbox_id = up.value("Demo sandbox:")
        renderer = up.value("renderer:")
        # The replica's own event listener (serve.direct), not the API's port; it answers.
        websocket = up.value("websocket:")
        assert re.fullmatch(rf"ws://127\.0\.0\.1:\d+/api/v1/sandboxes/{sandbox_id}/ws", websocket)
        assert urlsplit(websocket).port != port
        with connect(websocket, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "hello"

        health = httpx.get(f"{api}/healthz", timeout=30)
        assert health.status_code == 200 and health.json()["manager"] == "ok"
        # the MCP server answers an initialize with the printed token (tests/mcp: the tools)
        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "0"},
            },
        }
        mcp = httpx.post(
            f"{api}/mcp",
            json=initialize,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=30,
        )
        assert mcp.status_code == 200, mcp.text
        assert mcp.json()["result"]["serverInfo"]["name"] == "component-studio"
        assert httpx.get(f"{api}/docs", timeout=30).status_code == 200
        # The renderer through the API's port: its ticket buys the page's cookie.
        assert httpx.get(renderer, timeout=30, follow_redirects=True).status_code == 200

        # The demo sandbox renders a component of the sample repository in Chromium.
        browser_page.goto(renderer)
        browser_page.locator("[data-testid=component-Button]").first.click()
        canvas = browser_page.locator("[data-testid=studio-canvas]")
        canvas.wait_for(state="visible", timeout=60_000)
        expect(canvas).to_have_attribute("data-state", "ready", timeout=60_000)
        # The page's own live stream is open (through the renderer proxy, its cookie let it
        # in) and says running.
        banner = browser_page.locator("[data-testid=studio-status]")
        expect(banner).to_have_attribute("data-connection", "open", timeout=30_000)
        expect(browser_page.get_by_test_id("studio-status-text")).to_have_text("running")

        # The client commands against the real API.
        code, out = cli(api, token, "ls", "--json")
        assert code == 0 and [s["id"] for s in json.loads(out)] == [sandbox_id]
        code, out = cli(api, token, "exec", sandbox_id, "write", "NOTES.md", "--content", "hi\n")
        assert code == 0 and "(commit " in out, out
        assert cli(api, token, "exec", sandbox_id, "read", "NOTES.md") == (0, "hi\n")
        code, out = cli(api, token, "show", sandbox_id, "--json")
        messages = [c["message"] for c in json.loads(out)["git_commits"]]
        assert any("NOTES.md" in m for m in messages), messages
        code, out = cli(api, token, "rollback", sandbox_id, "--steps", "1")
        assert code == 0 and out.startswith("now at "), out
        assert cli(api, token, "ls", "--token", "wrong")[0] == 3

        # The service's custom metrics reach Ray's Prometheus export.
        exported = wait_for_metrics(
            Path(temp_dir),
            [
                "studio_sandbox_creates",
                "studio_sandboxes",
                "studio_create_to_ready_seconds",
                "studio_execute_seconds",
                "studio_websocket_clients",  # the studio page above is still connected
            ],
        )
        assert 'outcome="ready"' in exported["studio_sandbox_creates"], exported
        assert 'command="write_file"' in exported["studio_execute_seconds"], exported

        # The cleanup job as the docs give it (README's dry run, operations.md's pass), from
        # a user's shell without the venv: it leaves the live demo sandbox and the held one
        # (kept set up for the next create) alone.
        wait_for(lambda: held_sandboxes(api, token) == 1, 120, "a held sandbox")
        for summary in run_the_docs_cleanup_commands(up.dashboard, tmp_path / "bin"):
            assert summary["errors"] == [], summary
            assert summary["sandboxes"] == 2 and summary["torn_down"] == [], summary
            assert summary["actors_killed"] == [], summary
            (node,) = summary["nodes"]
            assert node["processes"] == [] and node["worktrees"] == [], node

        worktree = state / "worktrees" / sandbox_id
        pid_file = state / "run" / f"vite-{sandbox_id}.json"
        vite_pid = json.loads(pid_file.read_text())["pid"]
        assert worktree.is_dir() and psutil.pid_exists(vite_pid)

        assert up.stop() == 0, up.log.read_text()[-4000:]
        # Nothing is left: no Vite, no worktree, no Ray process; the branch is kept.
        assert not psutil.pid_exists(vite_pid) or psutil.Process(vite_pid).status() == "zombie"
        assert not worktree.exists()
        assert not pid_file.exists()
        # The held sandbox went down with it: no worktree is left at all.
        torn_down = [line for line in up.stdout() if line.endswith(": torn down (branch kept)")]
        assert len(torn_down) == 2, up.stdout()
        assert list((state / "worktrees").iterdir()) == []
        branch = f"design/studio-{sandbox_id[3:]}"
        assert git(state / "mirrors" / "ui-kit.git", "branch", "--list", branch).strip()
        deadline = time.monotonic() + 30
        while session_leftovers(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert session_leftovers(temp_dir) == []
        assert up.leftovers() == []


def held_sandboxes(api: str, token: str) -> int:
    """How many sandboxes the sample repository's record says are held for the next create."""
    headers = {"Authorization": f"Bearer {token}"}
    [record] = httpx.get(f"{api}/api/v1/repositories", headers=headers, timeout=30).json()
    return int(record["ready_sandboxes"])


def wait_until_ready(up: UpProcess, timeout: float = 240) -> httpx.Response:
    """Poll ``/readyz`` as a client would until it answers 200 (``studio up`` still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert up.proc.poll() is None, up.log.read_text()[-4000:]
        with contextlib.suppress(httpx.TransportError):
            reply = httpx.get(f"{up.api}/readyz", timeout=10)
            if reply.status_code == 200:
                return reply
            # Not ready yet: Serve's proxy is up but the app not deployed (its own
            # 404), or the app answers 503 saying what it waits for.
            if reply.status_code == 404:
                assert "not found" in reply.text, reply.text
            else:
                assert reply.status_code == 503, reply.text
                assert reply.json()["status"] == "not_ready", reply.text
        time.sleep(0.1)
    raise AssertionError("/readyz never answered 200:\n" + up.log.read_text()[-4000:])


def high_free_port() -> int:
    """A free port above Ray's worker ports (the kernel's ephemeral range is)."""
    port = free_port()
    assert port > 19999, port
    return port


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "group"),
    [
        pytest.param(signal.SIGTERM, True, id="SIGTERM-to-the-group"),
        pytest.param(signal.SIGINT, True, id="SIGINT-to-the-group"),
        pytest.param(signal.SIGTERM, False, id="SIGTERM-to-the-main-process"),
    ],
)
def test_up_gets_ready_and_a_signal_tears_the_sandboxes_down_and_stops_everything(
    sig: signal.Signals,
    group: bool,
    tmp_path: Path,
    install_cache: Path,  # noqa: F811
) -> None:
    token = "admin-" + uuid.uuid4().hex
    env = {"COMPONENT_STUDIO_ADMIN_TOKEN": token}
    # A port above Ray's worker range: --port takes any free one outside it.
    with running_up(tmp_path, cache=install_cache, port=high_free_port(), env=env) as up:
        # Ready once the sample repository is registered, as a client polling sees it.
        ready = wait_until_ready(up)
        assert ready.json() == {
            "status": "ready",
            "manager": "ok",
            "repositories": {"ui-kit": "registered"},
            "waiting_for": [],
        }
        headers = {"Authorization": f"Bearer {token}"}
        repos = httpx.get(f"{up.api}/api/v1/repositories", headers=headers, timeout=30)
        assert [r["name"] for r in repos.json()] == ["ui-kit"], repos.text
        up.wait_for("Press Ctrl-C", timeout=60)
        assert up.value("API:") == f"{up.api}/api/v1"
        assert up.value("Dashboard:") == f"http://127.0.0.1:{up.dashboard}"
        assert up.value("Admin token:") == token
        assert httpx.get(f"{up.api}/healthz", timeout=30).json() == {
            "status": "ok",
            "manager": "ok",
        }

        code, out = cli(up.api, token, "create", "--json")
        assert code == 0, out
        sandbox_id = json.loads(out)["sandbox_id"]
        code, out = cli(up.api, token, "exec", sandbox_id, "write", "KEPT.md", "--content", "k\n")
        assert code == 0 and "(commit " in out, out
        state = tmp_path / "state"
        worktree = state / "worktrees" / sandbox_id
        pid_file = state / "run" / f"vite-{sandbox_id}.json"
        vite_pid = json.loads(pid_file.read_text())["pid"]
        assert worktree.is_dir() and psutil.pid_exists(vite_pid)

        if group:
            os.killpg(up.proc.pid, sig)  # what systemd's KillMode=control-group does first
        else:
            up.proc.send_signal(sig)
        # A stop that hangs (as it did waiting for a dead GCS) is a failure.
        assert up.proc.wait(timeout=STOP_SECONDS) == 0, up.log.read_text()[-4000:]

        printed = up.stdout()
        assert f"  {sandbox_id}: torn down (branch kept)" in printed
        assert printed[-1] == "stopped"
        if not group:
            # Only the main process was signalled: nothing of Ray's says it was cut short.
            everything = printed + up.log.read_text().splitlines()
            assert [line for line in everything if ERROR_LINE.search(line)] == []
        assert not psutil.pid_exists(vite_pid) or psutil.Process(vite_pid).status() == "zombie"
        assert not worktree.exists()
        assert not pid_file.exists()
        assert up.leftovers() == []
        branch = f"design/studio-{sandbox_id[3:]}"
        files = git(state / "mirrors" / "ui-kit.git", "show", "--name-only", "--format=", branch)
        assert "KEPT.md" in files.split()


@pytest.mark.ray
def test_the_sample_repository_is_registered_once_across_runs(ray_session, tmp_path: Path) -> None:
    import argparse

    from actors.handles import kill_manager, start_manager
    from cli.up import REPOS_SUBDIR, _Service
    from studio.config import StudioSettings

    state = tmp_path / "state"
    settings = StudioSettings(state_dir=state, repo_roots=[state / REPOS_SUBDIR])
    args = argparse.Namespace(address=None, demo=False)
    kill_manager()
    try:
        first = _Service(settings, args, io.StringIO())
        first.manager = start_manager(settings)
        registered = first._register_example()
        # A later `studio up` on the same state dir finds it registered already.
        kill_manager()
        second = _Service(settings, args, io.StringIO())
        second.manager = start_manager(settings)
        assert second._register_example() == registered
        assert registered["name"] == "ui-kit"
    finally:
        kill_manager()
