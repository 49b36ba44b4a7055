"""The studio app and its Vite server: pure decisions, and real Vite on examples/ui-kit."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from playwright.sync_api import Page, expect

from studio.errors import InvalidConfig, PortInUse, ViteStartError
from studio.install.cache import ensure_node_modules
from studio.paths import atomic_write
from studio.ports import PortAllocator, port_is_free
from studio.process import StopResult
from studio.vite import (
    CONFIG_FILE,
    LAUNCHER,
    VITE_ENV,
    ViteServer,
    cleanup_studio_app,
    generate_studio_app,
    is_port_conflict,
    read_studio_config,
    renderer_url,
    studio_config,
    vite_argv,
    write_studio_config,
)
from studio.vite.warm import warm_renderer
from tests.support.browser import hot_reload_button, save_screenshot
from tests.support.fakeproc import fake_argv
from tests.support.fakevite import install_fake_vite
from tests.support.gitrepo import repo_from_dir

# Fixtures used by the browser test; imported, so named here for the linter.

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "studio-template"
UI_KIT = ROOT / "examples" / "ui-kit"
HOST = "127.0.0.1"
SANDBOX = "sb_vitetest"
START_TIMEOUT = 60.0

# --- pure decisions ---------------------------------------------------------------


def test_studio_config_is_the_template_contract(tmp_path):
    config = studio_config(
        repo_root=tmp_path,
        port=5180,
        sandbox_id="sb_abc123",
        ws_url="/r/sb_abc123/__studio/events",
        base="/r/sb_abc123/",
        proxy_secret="sv_secret",
        wrapper="src/Providers.tsx",
    )
    assert config == {
        "sandboxId": "sb_abc123",
        "repoRoot": str(tmp_path),
        "workspaceRoot": str(tmp_path),
        "port": 5180,
        "host": "127.0.0.1",
        "cacheDir": str(tmp_path / ".studio" / ".vite-cache"),
        "wsUrl": "/r/sb_abc123/__studio/events",
        "base": "/r/sb_abc123/",
        "proxySecret": "sv_secret",
        "componentGlob": "src/**/*.{tsx,jsx}",
        "wrapper": "src/Providers.tsx",
        "depsSeedDir": None,
    }
    assert json.loads(json.dumps(config)) == config


def test_studio_config_standalone_defaults(tmp_path):
    config = studio_config(repo_root=tmp_path, port=5173, cache_dir=tmp_path / "c")
    assert config["sandboxId"] is None and config["wsUrl"] is None and config["wrapper"] is None
    assert config["cacheDir"] == str(tmp_path / "c")
    # Served at the root, to whoever reaches the port (no renderer proxy in front).
    assert config["base"] == "/" and config["proxySecret"] is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"wrapper": "/etc/passwd"},
        {"wrapper": "../outside.tsx"},
        {"component_glob": "src/../../**/*.tsx"},
        {"component_glob": ""},
        {"port": 0},
        {"port": 70000},
        {"ws_url": "http://127.0.0.1/ws"},
        {"base": "r/sb_abc123/"},
        {"base": "/r/sb_abc123"},
        {"base": "/r//x/"},
    ],
)
def test_studio_config_rejects_what_the_template_would(tmp_path, kwargs):
    with pytest.raises(InvalidConfig):
        studio_config(**{"repo_root": tmp_path, "port": 5173, **kwargs})


def test_vite_argv_runs_the_template_launcher_directly(tmp_path):
    # node itself, no npm wrapper: SIGTERM reaches Vite
    argv = vite_argv(tmp_path / ".studio", node="/usr/bin/node")
    assert argv == ["/usr/bin/node", str(tmp_path / ".studio" / "serve.mjs")]


def test_the_launcher_is_in_the_template_and_the_config_sets_strict_port():
    assert (TEMPLATE / LAUNCHER).is_file()
    # without strictPort Vite would move to another port on its own, unseen by the allocator
    assert "strictPort: true" in (TEMPLATE / "vite.config.mjs").read_text()


def test_vite_env_turns_off_browser_and_colour():
    assert VITE_ENV == {"BROWSER": "none", "NO_COLOR": "1", "FORCE_COLOR": "0"}


@pytest.mark.parametrize(
    ("lines", "port", "expected"),
    [
        (["error when starting dev server:", "Error: Port 5173 is already in use"], 5173, True),
        (["Error: Port 5173 is already in use"], None, True),
        (["\x1b[31mError: Port 5174 is already in use\x1b[39m"], 5174, True),
        (["Error: listen EADDRINUSE: address already in use 127.0.0.1:5175"], 5175, True),
        (["Error: Port 5173 is already in use"], 5174, False),
        (["VITE v8.3.8  ready in 300 ms"], 5173, False),
        ([], None, False),
    ],
)
def test_is_port_conflict(lines: list[str], port: int | None, expected: bool):
    assert is_port_conflict(lines, port) is expected


def test_renderer_url():
    assert renderer_url("127.0.0.1", 5173) == "http://127.0.0.1:5173/"
    assert renderer_url("::1", 5173) == "http://[::1]:5173/"
    assert renderer_url("10.0.0.2", 5173, "/r/sb_abc/") == "http://10.0.0.2:5173/r/sb_abc/"


def test_studio_config_file_round_trip_and_errors(tmp_path):
    with pytest.raises(InvalidConfig, match="generate the studio app"):
        read_studio_config(tmp_path)
    write_studio_config(tmp_path, {"port": 1})
    assert read_studio_config(tmp_path) == {"port": 1}
    (tmp_path / CONFIG_FILE).write_text("[1]")
    with pytest.raises(InvalidConfig, match="JSON object"):
        read_studio_config(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{")
    with pytest.raises(InvalidConfig, match="not valid JSON"):
        read_studio_config(tmp_path)


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def install_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's install cache (the same one test_install_cache uses): npm ci once."""
    cache = tmp_path_factory.getbasetemp() / "install-cache"
    ensure_node_modules(TEMPLATE, cache)
    return cache


def _free_base(count: int) -> int:
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            base: int = sock.getsockname()[1]
        if base + count <= 65535 and all(port_is_free(HOST, p) for p in range(base, base + count)):
            return base
    raise AssertionError("no free port range")


@pytest.fixture
def ports(tmp_path: Path) -> PortAllocator:
    """A port range of this test's own, with its own reservation table."""
    return PortAllocator(tmp_path / "locks", host=HOST, base=_free_base(8), count=8)


@pytest.fixture
def studio_repo(tmp_path: Path, install_cache: Path, ports: PortAllocator) -> Path:
    """examples/ui-kit as a git repository with a generated .studio/ on a reserved port."""
    repo = repo_from_dir(UI_KIT, tmp_path / "ui-kit")
    generate_studio_app(
        repo,
        template_dir=TEMPLATE,
        cache_root=install_cache,
        port=ports.allocate(SANDBOX),
        sandbox_id=SANDBOX,
    )
    return repo


@pytest.fixture
def make_server(ports: PortAllocator) -> Iterator[Callable[..., ViteServer]]:
    """Builds ViteServers on the test's port range; closes every one at the end."""
    servers: list[ViteServer] = []

    def make(repo: Path, **kwargs: object) -> ViteServer:
        server = ViteServer(repo, ports=ports, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def _refused(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def held_port(ports: PortAllocator) -> Iterator[tuple[int, socket.socket]]:
    """A port outside the reservation table, bound (not listening) by the test."""
    sock = socket.socket()
    sock.bind((HOST, 0))
    yield sock.getsockname()[1], sock
    sock.close()


def _use_port(repo: Path, port: int) -> None:
    studio = repo / ".studio"
    config = read_studio_config(studio)
    config["port"] = port
    write_studio_config(studio, config)


# --- generate_studio_app -----------------------------------------------------------


def test_generate_materialises_the_template_with_linked_modules(studio_repo, install_cache):
    studio = studio_repo / ".studio"
    assert (studio / "vite.config.mjs").is_file()
    assert (studio / "plugin").is_dir()
    assert not (studio / ".vite-cache").exists()
    cached = ensure_node_modules(TEMPLATE, install_cache) / "vite" / "package.json"
    assert (studio / "node_modules" / "vite" / "package.json").stat().st_ino == cached.stat().st_ino
    config = read_studio_config(studio)
    assert config["repoRoot"] == str(studio_repo)
    assert config["sandboxId"] == SANDBOX
    assert config["cacheDir"] == str(studio / ".vite-cache")
    # No lockfile in ui-kit: nothing installed into the repository itself.
    assert not (studio_repo / "node_modules").exists()


def test_generate_installs_the_repository_lockfile_and_replaces_an_old_studio(
    tmp_path, install_cache
):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "package.json").write_text('{"name": "r", "version": "1.0.0"}')
    lock = {
        "name": "r",
        "version": "1.0.0",
        "lockfileVersion": 3,
        "requires": True,
        "packages": {"": {"name": "r", "version": "1.0.0"}},
    }
    (repo / "package-lock.json").write_text(json.dumps(lock))
    (repo / ".studio" / "leftover").mkdir(parents=True)
    studio = generate_studio_app(repo, template_dir=TEMPLATE, cache_root=install_cache, port=5999)
    assert (repo / "node_modules").is_dir()
    assert not (studio / "leftover").exists()
    assert read_studio_config(studio)["port"] == 5999


def test_generate_refuses_a_directory_that_is_not_the_template(tmp_path, install_cache):
    with pytest.raises(InvalidConfig, match="not the studio template"):
        generate_studio_app(tmp_path, template_dir=tmp_path, cache_root=install_cache, port=5999)


# --- the server, with real Vite -------------------------------------------------


def _answers(server: ViteServer) -> bool:
    """Whether Vite answers its readiness probe now, asked from outside."""
    try:
        return httpx.get(server.url + "@vite/client", timeout=10).status_code == 200
    except httpx.TransportError:
        return False


def test_vite_starts_healthy_and_serves_the_components(studio_repo, make_server, ports):
    server = make_server(studio_repo)
    assert server.port in ports.reservations()
    server.start(START_TIMEOUT)
    assert _answers(server) and server.check_health()
    assert server.url == f"http://{HOST}:{server.port}/"
    catalog = httpx.get(server.url + "__studio/components.json", timeout=30).json()
    names = {component["name"] for component in catalog["components"]}
    assert {"Button", "Card", "Input"} <= names
    assert any("ready in" in line for line in server.output())
    # Started in its own session, with the worktree as cwd.
    proc = psutil.Process(server.pid)
    assert os.getsid(proc.pid) == proc.pid
    assert proc.cwd() == str(studio_repo)


def test_vite_and_react_runtimes_go_without_an_identity_map_and_components_keep_theirs(
    studio_repo, make_server
):
    # Vite would make a character-by-character identity map of each runtime on every send.
    server = make_server(studio_repo)
    server.start(START_TIMEOUT)
    inline_map = "sourceMappingURL=data:application/json"
    for runtime in ("@vite/client", "@react-refresh"):
        answer = httpx.get(server.url + runtime, timeout=30)
        assert answer.status_code == 200 and len(answer.text) > 10_000
        assert inline_map not in answer.text, runtime
    component = httpx.get(
        f"{server.url}@fs{studio_repo}/src/components/Button/Button.tsx", timeout=30
    )
    assert component.status_code == 200 and inline_map in component.text
    # A pre-bundled dependency goes without its map too: inlined as base64 on every send it
    # made a module several times its size (studio-template/plugin/runtime-maps.mjs).
    deps = re.findall(r'from\s*"/(\.vite-cache/deps/[^"]+)"', component.text)
    assert deps, component.text[:2000]
    for dep in deps:
        answer = httpx.get(server.url + dep, timeout=30)
        assert answer.status_code == 200 and "export" in answer.text, dep
        assert inline_map not in answer.text, dep


def test_a_port_taken_by_a_bound_socket_moves_vite_to_another_port(
    studio_repo, make_server, ports, held_port
):
    taken, _sock = held_port
    _use_port(studio_repo, taken)
    server = make_server(studio_repo)
    server.start(START_TIMEOUT)
    assert server.port != taken
    assert _answers(server)
    assert read_studio_config(studio_repo / ".studio")["port"] == server.port
    assert ports.reservations()[server.port].owner == SANDBOX
    assert taken not in ports.reservations()


def test_another_server_answering_on_the_port_is_never_taken_for_vite(
    studio_repo, make_server, ports
):
    foreign_port = ports.allocate("sb_someoneelse")
    foreign = subprocess.Popen(fake_argv("ok", foreign_port), stdout=subprocess.PIPE, text=True)
    try:
        assert foreign.stdout is not None and foreign.stdout.readline().strip() == "ready"
        _use_port(studio_repo, foreign_port)
        server = make_server(studio_repo)
        server.start(START_TIMEOUT)
        assert server.port != foreign_port
        # What answers now is our Vite: it serves the studio's catalog.
        response = httpx.get(server.url + "__studio/components.json", timeout=30)
        assert response.status_code == 200 and "components" in response.json()
        # The foreign server's reservation was not touched.
        assert ports.reservations()[foreign_port].owner == "sb_someoneelse"
    finally:
        foreign.terminate()
        foreign.wait(timeout=10)


def test_ports_taken_again_and_again_end_in_port_in_use(studio_repo, make_server):
    install_fake_vite(studio_repo / ".studio", "port-taken")
    server = make_server(studio_repo, port_attempts=3)
    with pytest.raises(PortInUse) as info:
        server.start(START_TIMEOUT)
    assert "3 ports in a row" in info.value.message
    assert any("already in use" in line for line in info.value.details["output"])
    assert server.pid is None


def test_a_killed_vite_is_unhealthy_and_a_stop_and_start_bring_it_back_on_its_port(
    studio_repo, make_server
):
    # What its supervisor does to restart it.
    server = make_server(studio_repo)
    server.start(START_TIMEOUT)
    port, pid = server.port, server.pid
    os.killpg(pid, signal.SIGKILL)
    assert server.wait_exit(30) == -signal.SIGKILL
    assert not server.check_health()
    assert server.stop() is StopResult.ALREADY_EXITED
    server.start(START_TIMEOUT)
    assert server.check_health() and _answers(server)
    assert server.pid != pid and server.port == port
    assert server.stop() is StopResult.SIGTERM
    assert not server.check_health() and not _answers(server)
    server.start(START_TIMEOUT)
    assert _answers(server) and server.port == port


def test_a_broken_vite_config_gives_vite_start_error_with_its_output(studio_repo, make_server):
    config = studio_repo / ".studio" / "vite.config.mjs"
    config.write_text("export default {{ this is not javascript\n")
    server = make_server(studio_repo)
    with pytest.raises(ViteStartError) as info:
        server.start(START_TIMEOUT)
    output = "\n".join(info.value.details["output"])
    assert "vite.config.mjs" in output or "SyntaxError" in output, output
    assert info.value.details["returncode"] == 1
    assert info.value.details["port"] == server.port
    assert server.pid is None


def test_a_crashing_fake_vite_gives_its_output(studio_repo, make_server):
    install_fake_vite(studio_repo / ".studio", "crash")
    server = make_server(studio_repo)
    with pytest.raises(ViteStartError) as info:
        server.start(START_TIMEOUT)
    assert "Error: simulated broken config" in info.value.details["output"]
    assert "exited with code 1" in info.value.message


def test_a_vite_that_never_listens_times_out_and_is_stopped(studio_repo, make_server):
    install_fake_vite(studio_repo / ".studio", "hang")
    server = make_server(studio_repo)
    with pytest.raises(ViteStartError, match="not ready") as info:
        server.start(0.5)
    assert info.value.details["output"] == ["starting"]
    assert server.pid is None


def test_a_missing_node_is_a_vite_start_error(studio_repo, make_server, tmp_path):
    server = make_server(studio_repo, node=str(tmp_path / "no-node"))
    with pytest.raises(ViteStartError, match="cannot start Vite"):
        server.start(START_TIMEOUT)


def test_server_options_are_checked(studio_repo, ports):
    with pytest.raises(InvalidConfig):
        ViteServer(studio_repo, ports=ports, port_attempts=0)


def test_cleanup_stops_vite_releases_the_port_and_removes_the_app(studio_repo, make_server, ports):
    server = make_server(studio_repo)
    server.start(START_TIMEOUT)
    pid, port = server.pid, server.port
    cleanup_studio_app(studio_repo, server)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert server.manager.last_stop is StopResult.SIGTERM
    assert _refused(port)
    assert port not in ports.reservations()
    assert not (studio_repo / ".studio").exists()
    # The repository itself is untouched.
    assert (studio_repo / "src" / "components" / "Button" / "Button.tsx").is_file()


def test_a_restarted_owner_reaps_the_vite_its_predecessor_left(studio_repo, make_server, tmp_path):
    pid_file = tmp_path / "run" / "vite.json"
    first = make_server(studio_repo, pid_file=pid_file)
    first.start(START_TIMEOUT)
    orphan = first.pid
    # A new incarnation (the actor restarted) only has the pid file.
    second = make_server(studio_repo, pid_file=pid_file)
    second.start(START_TIMEOUT)
    assert second.pid != orphan and second.port == first.port
    assert first.wait_exit(10) is not None
    second.stop()
    assert not pid_file.exists()


def test_cleanup_without_the_server_reaps_by_pid_file(studio_repo, make_server, tmp_path):
    pid_file = tmp_path / "run" / "vite.json"
    server = make_server(studio_repo, pid_file=pid_file)
    server.start(START_TIMEOUT)
    cleanup_studio_app(studio_repo, pid_file=pid_file)
    assert server.wait_exit(10) is not None
    assert not (studio_repo / ".studio").exists()


# --- in the browser -------------------------------------------------------------------


@pytest.mark.browser
def test_the_page_lists_renders_and_hot_reloads_an_atomic_edit(
    studio_repo, make_server, browser_page: Page
):
    server = make_server(studio_repo)
    server.start(START_TIMEOUT)
    page = browser_page
    page.goto(server.url)
    for name in ("Button", "Card", "Input", "Modal"):
        expect(page.locator(f"[data-testid=component-{name}]")).to_have_text(name)

    hot_reload_button(page, server.url, studio_repo, "Edited in the sandbox")
    save_screenshot(page, "vite-server-button-after-hmr")


@pytest.mark.browser
def test_the_first_load_uses_the_shell_asks_for_the_catalog_once_and_preloads_the_link(
    studio_repo, make_server, browser_page: Page
):
    server = make_server(studio_repo)
    server.start(START_TIMEOUT)
    page = browser_page
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{server.url}#/Button")
    canvas = page.locator("[data-testid=studio-canvas]")
    expect(canvas).to_have_attribute("data-state", "ready")
    expect(canvas.get_by_role("button")).to_have_text("Click me")

    # the app came prebuilt in one module, not as its sources
    paths = [url.removeprefix(server.url.rstrip("/")) for url in requested]
    assert "/src/main.prebuilt.js" in paths
    assert not any(path.startswith("/src/App.tsx") for path in paths), paths
    # index.html's inline script asked for the catalog, and the app used that answer
    assert paths.count("/__studio/components.json") == 1, paths
    # the deep link's modules were asked for while the app loaded, under the URLs it imports
    preloaded = page.eval_on_selector_all(
        "link[rel=modulepreload]", "links => links.map(link => link.href)"
    )
    for module in ("src/components/Button/Button.tsx", "src/components/Button/Button.stories.tsx"):
        assert any(href.endswith(f"{studio_repo}/{module}") for href in preloaded), preloaded
    assert all(requested.count(href) == 1 for href in preloaded), requested
    # the shell's one dynamic import kept its @vite-ignore: Vite has nothing to warn about
    assert not any("warning" in line for line in server.output()), server.output()

    # Once Vite has served the graph, a page preloads all of it at once (plugin/preload.mjs):
    # the pre-bundled dependencies too, each fetched once, under the URL the imports use.
    second = page.context.new_page()
    again: list[str] = []
    second.on("request", lambda request: again.append(request.url))
    second.goto(f"{server.url}#/Button")
    expect(second.locator("[data-testid=studio-canvas]")).to_have_attribute("data-state", "ready")
    warm_links = second.eval_on_selector_all(
        "link[rel=modulepreload]", "links => links.map(link => link.href)"
    )
    assert any("/.vite-cache/deps/" in href for href in warm_links), warm_links
    assert all(again.count(href) == 1 for href in warm_links), again
    second.close()

    # the shell keeps its hot context: a new component shows up without a reload
    page.evaluate("window.__notReloaded = true")
    new_component = studio_repo / "src" / "components" / "Badge" / "Badge.tsx"
    new_component.parent.mkdir()
    atomic_write(new_component, "export function Badge() {\n  return <span>new</span>;\n}\n")
    expect(page.locator("[data-testid=component-Badge]")).to_have_text("Badge")
    assert page.evaluate("window.__notReloaded") is True


@pytest.mark.browser
def test_a_link_naming_no_component_preloads_none(studio_repo, make_server, browser_page: Page):
    server = make_server(studio_repo)
    server.start(START_TIMEOUT)
    page = browser_page
    page.goto(f"{server.url}#/NoSuchThing")
    expect(page.locator("[data-testid=studio-not-found]")).to_contain_text("NoSuchThing")
    preloaded = page.eval_on_selector_all(
        "link[rel=modulepreload]", "links => links.map(link => link.href)"
    )
    # the project's preview, which every render needs, and the app's own modules; no component
    assert any(href.endswith("/.storybook/preview.tsx") for href in preloaded), preloaded
    assert not any("/src/components/" in href for href in preloaded), preloaded


def test_the_preload_list_is_the_static_module_graph_of_a_linked_component(
    studio_repo, make_server
):
    server = make_server(studio_repo)
    server.start(START_TIMEOUT)
    preload = server.url + "__studio/preload.json"
    button = f"/@fs{studio_repo}/src/components/Button/Button.tsx"
    stories = f"/@fs{studio_repo}/src/components/Button/Button.stories.tsx"

    # Asked for by the page's own inline script, after index.html (which names the entries).
    # The component's modules were never served: listed, their imports not (yet) known.
    assert httpx.get(server.url, timeout=30).status_code == 200
    cold = httpx.get(preload, params={"component": "Button"}, timeout=30).json()
    assert button in cold and stories in cold
    assert "/src/main.prebuilt.js" in cold

    # What a warm-up requests: every component's roots, none followed.
    roots = httpx.get(preload, params={"component": "*", "roots": "1"}, timeout=30).json()
    for name in ("Button", "Card", "Input", "Modal"):
        assert f"/@fs{studio_repo}/src/components/{name}/{name}.tsx" in roots, roots
    assert warm_renderer(server.url).failed == 0

    warm = httpx.get(preload, params={"component": "Button"}, timeout=30).json()
    assert len(warm) == len(set(warm))
    # roots first, then what they import: React's pre-bundles, the stories' imports
    assert set(cold) < set(warm)
    deps = [url for url in warm if url.startswith("/.vite-cache/deps/")]
    assert any("react-dom_client" in url for url in deps), warm
    # breadth first: the roots lead
    assert warm[: warm.index(stories) + 1] == cold[: cold.index(stories) + 1]
    # another component's modules are not in Button's list
    assert not any("/components/Modal/" in url for url in warm), warm
    # every URL answers: the page's imports will find them in the browser's module map
    for url in warm:
        assert httpx.get(server.url + url.lstrip("/"), timeout=30).status_code == 200, url
    # a link naming nothing gets the shared part only
    unknown = httpx.get(preload, params={"component": "NoSuchThing"}, timeout=30).json()
    assert button not in unknown and "/src/main.prebuilt.js" in unknown
    # a link naming no component: the one the page lands on, the first with stories
    assert button in httpx.get(preload, params={"component": ""}, timeout=30).json()
