"""Run the studio template standalone on a repository, the way a sandbox does.

Mirrors the backend's OnSetup for one repository: ``.studio/`` copied from
``studio-template/`` (without node_modules), node_modules hard-linked from the
template's install, ``studio.config.json`` written with a free port, Vite
started with ``node`` directly, cwd = the repository, in its own session.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from studio.vite import VITE_ENV

__all__ = ["TEMPLATE_DIR", "UI_KIT", "StudioServer", "atomic_write", "free_port", "run_studio"]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIR = ROOT / "studio-template"
UI_KIT = ROOT / "examples" / "ui-kit"


def free_port() -> int:
    """A loopback port the OS just handed out (bind to port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def atomic_write(path: Path, text: str) -> None:
    """Write like the backend does: a temp file in the same directory, then rename over."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class StudioServer:
    """A running template dev server."""

    repo: Path
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def catalog(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}__studio/components.json", timeout=30)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def materialize(repo: Path, config: dict[str, Any]) -> Path:
    """Create ``repo/.studio`` from the template and write its ``studio.config.json``."""
    modules = TEMPLATE_DIR / "node_modules"
    if not (modules / "vite").is_dir():
        raise RuntimeError(f"{modules} is missing: run scripts/setup.sh (npm ci in the template)")
    studio = repo / ".studio"
    ignore = shutil.ignore_patterns("node_modules", ".vite-cache")
    shutil.copytree(TEMPLATE_DIR, studio, ignore=ignore)
    subprocess.run(["cp", "-al", str(modules), str(studio / "node_modules")], check=True)
    (studio / "studio.config.json").write_text(json.dumps(config, indent=2))
    return studio


@contextlib.contextmanager
def run_studio(
    repo: Path,
    *,
    ws_url: str | None = None,
    sandbox_id: str | None = None,
    wrapper: str | None = None,
    component_glob: str = "src/**/*.{tsx,jsx}",
    ready_timeout: float = 60.0,
) -> Iterator[StudioServer]:
    """Serve ``repo`` with the template until the block ends, then kill Vite's process group."""
    port = free_port()
    materialize(
        repo,
        {
            "sandboxId": sandbox_id,
            "repoRoot": str(repo),
            "port": port,
            "host": "127.0.0.1",
            "cacheDir": str(repo / ".studio" / ".vite-cache"),
            "wsUrl": ws_url,
            "componentGlob": component_glob,
            "wrapper": wrapper,
        },
    )
    log_path = repo.parent / f"vite-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                "node",
                ".studio/node_modules/vite/bin/vite.js",
                "--config",
                ".studio/vite.config.mjs",
            ],
            cwd=repo,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **VITE_ENV},
            start_new_session=True,
        )
    server = StudioServer(repo=repo, port=port, process=process, log_path=log_path)
    try:
        deadline = time.monotonic() + ready_timeout
        with httpx.Client(timeout=2) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"vite exited with {process.returncode}:\n{server.log()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{server.url}@vite/client").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"vite not ready after {ready_timeout} s:\n{server.log()}")
                time.sleep(0.05)
        yield server
    finally:
        _stop(process)
