"""A Vite standby (studio.vite.standby): real Node processes that imported Vite, real Vite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from playwright.sync_api import Page

from studio.errors import ViteStartError
from studio.install.cache import ensure_node_modules
from studio.vite import ViteServer
from studio.vite.standby import PRELOADED_PACKAGES, STANDBY_SCRIPT, ViteStandby, standby_argv
from tests.studio.test_vite import START_TIMEOUT, TEMPLATE, make_server, ports, studio_repo
from tests.support.browser import hot_reload_button
from tests.support.fakevite import install_fake_vite
from tests.support.procs import ends_within

__all__ = ["make_server", "ports", "studio_repo"]  # fixtures, imported for the tests below


@pytest.fixture
def modules(install_cache: Path) -> Path:
    """The install cache's template node_modules, which a studio app's node_modules link to."""
    return ensure_node_modules(TEMPLATE, install_cache).resolve()


@pytest.fixture
def make_standby(modules: Path) -> Iterator[Callable[..., ViteStandby]]:
    """Starts standbys; whatever was not handed over is closed at the end."""
    standbys: list[ViteStandby] = []

    def make(modules_dir: Path = modules) -> ViteStandby:
        standby = ViteStandby.start(TEMPLATE, modules_dir)
        standbys.append(standby)
        return standby

    yield make
    for standby in standbys:
        standby.close()


def test_the_standby_imports_what_the_config_imports():
    argv = standby_argv(TEMPLATE, node="/usr/bin/node")
    assert argv[0] == "/usr/bin/node" and argv[-1] == str(TEMPLATE / STANDBY_SCRIPT)
    assert argv[1:-1] == [part for name in PRELOADED_PACKAGES for part in ("--import", name)]
    config = (TEMPLATE / "vite.config.mjs").read_text()
    for name in PRELOADED_PACKAGES:
        assert f"from '{name}'" in config
    assert (TEMPLATE / STANDBY_SCRIPT).is_file()


def test_a_studio_apps_node_modules_link_to_the_standbys(studio_repo, modules):
    link = studio_repo / ".studio" / "node_modules"
    assert link.is_symlink() and link.resolve() == modules


def test_a_standby_starts_vite_in_the_studio_app(studio_repo, make_server, make_standby, tmp_path):
    standby = make_standby()
    pid_file = tmp_path / "run" / "vite.json"
    server: ViteServer = make_server(studio_repo, standby=standby, pid_file=pid_file)
    server.start(START_TIMEOUT)
    assert server.pid == standby.pid
    assert server.check_health()
    catalog = httpx.get(server.url + "__studio/components.json", timeout=30).json()
    assert {"Button", "Card", "Input"} <= {c["name"] for c in catalog["components"]}
    # The same process as a cold start: in the worktree, its own session, the CLI's banner.
    proc = psutil.Process(standby.pid)
    assert proc.cwd() == str(studio_repo)
    assert os.getsid(proc.pid) == proc.pid
    assert any("ready in" in line for line in server.output())
    assert json.loads(pid_file.read_text())["argv"] == proc.cmdline()
    server.close()
    assert ends_within(standby.pid)
    assert not pid_file.exists()


@pytest.mark.browser
def test_the_page_renders_and_hot_reloads_through_a_standby(
    studio_repo, make_server, make_standby, browser_page: Page
):
    server: ViteServer = make_server(studio_repo, standby=make_standby())
    server.start(START_TIMEOUT)
    page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    hot_reload_button(page, server.url, studio_repo, "Edited in the sandbox")
    assert not errors


def test_a_restart_after_the_standby_spawns_vite_as_usual(studio_repo, make_server, make_standby):
    standby = make_standby()
    server: ViteServer = make_server(studio_repo, standby=standby)
    server.start(START_TIMEOUT)
    server.stop()
    server.start(START_TIMEOUT)
    assert server.pid != standby.pid
    assert psutil.Process(server.pid).cmdline()[-1].endswith("serve.mjs")


def test_a_standby_of_other_node_modules_is_closed_and_vite_started_cold(
    studio_repo, make_server, make_standby, modules, tmp_path
):
    # The same packages at another real path: the config's imports would load them again.
    other = tmp_path / "other" / "node_modules"
    other.parent.mkdir()
    subprocess.run(["cp", "-al", str(modules), str(other)], check=True)
    standby = make_standby(other)
    assert "not " in (standby.unfit_for(studio_repo / ".studio") or "")
    server: ViteServer = make_server(studio_repo, standby=standby)
    server.start(START_TIMEOUT)
    assert server.pid != standby.pid and server.check_health()
    assert ends_within(standby.pid)


def test_a_replaced_launcher_is_run_cold_not_by_the_standby(studio_repo, make_server, make_standby):
    # A test's misbehaving Vite (or any launcher not the template's) runs as itself.
    install_fake_vite(studio_repo / ".studio", "crash")
    standby = make_standby()
    assert "launcher" in (standby.unfit_for(studio_repo / ".studio") or "")
    server: ViteServer = make_server(studio_repo, standby=standby)
    with pytest.raises(ViteStartError) as caught:
        server.start(START_TIMEOUT)
    assert "simulated broken config" in "\n".join(caught.value.details["output"])
    assert ends_within(standby.pid)


def test_a_dead_standby_is_passed_over(studio_repo, make_server, make_standby):
    standby = make_standby()
    os.killpg(standby.pid, signal.SIGKILL)
    assert ends_within(standby.pid)
    assert "exited" in (standby.unfit_for(studio_repo / ".studio") or "")
    server: ViteServer = make_server(studio_repo, standby=standby)
    server.start(START_TIMEOUT)
    assert server.pid != standby.pid and server.check_health()


def test_a_server_closed_before_its_start_closes_its_standby(
    studio_repo, make_server, make_standby
):
    standby = make_standby()
    server: ViteServer = make_server(studio_repo, standby=standby)
    server.close()
    assert ends_within(standby.pid)


def test_a_standby_goes_when_its_owner_dies(modules, tmp_path):
    # Its owner (a Ray worker) killed: stdin closes and the standby exits by itself.
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from pathlib import Path
                from studio.vite.standby import ViteStandby
                standby = ViteStandby.start(Path({str(TEMPLATE)!r}), Path({str(modules)!r}))
                print(standby.pid, flush=True)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        pid = int(owner.stdout.readline())
        assert psutil.Process(pid).is_running()
    finally:
        owner.kill()
        owner.wait()
    assert ends_within(pid)
