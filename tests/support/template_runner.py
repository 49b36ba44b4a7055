"""Run the studio template standalone against a repository, as a sandbox would.

The steps mirror the backend's OnSetup: copy ``studio-template/`` (without
node_modules) to ``<repo>/.studio/``, hard-link the template's prepared
node_modules into it, ``npm ci`` the repository's own dependencies (once per
lockfile, then hard-linked), write ``studio.config.json`` with a free port, and
start Vite directly with ``node`` in its own session, cwd = the repository.
Leaving the context manager kills the whole process group (``kill_group``:
SIGTERM, then SIGKILL for what outlived it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks._proc import free_port, kill_group, spawn_group, wait_http_ok
from studio.vite import VITE_ENV

__all__ = [
    "TEMPLATE_DIR",
    "TemplateServer",
    "TemplateStartError",
    "free_port",
    "install_repo_deps",
    "node_json",
    "prepare_studio_dir",
    "run_template",
]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIR = ROOT / "studio-template"
DEFAULT_COMPONENT_GLOB = "src/**/*.{tsx,jsx}"

# Never copied from the template: installed or generated per sandbox.
_TEMPLATE_IGNORE = shutil.ignore_patterns(
    "node_modules", ".vite-cache", "dist", "studio.config.json"
)


class TemplateStartError(RuntimeError):
    """Vite did not become ready; the message carries the tail of its output."""


@dataclass(frozen=True)
class TemplateServer:
    """A running template dev server for one repository."""

    repo: Path
    studio_dir: Path
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        """The page that renders the repository's components."""
        return f"http://127.0.0.1:{self.port}/"

    def log(self) -> str:
        """Everything Vite printed so far (stdout and stderr together)."""
        return self.log_path.read_text(errors="replace")

    def components(self) -> dict[str, Any]:
        """The parsed ``GET /__studio/components.json``."""
        response = httpx.get(f"{self.url}__studio/components.json", timeout=30)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


def _lock_hash(lockfile: Path) -> str:
    return hashlib.sha256(lockfile.read_bytes()).hexdigest()[:16]


def install_repo_deps(repo: Path, cache_root: Path) -> None:
    """Give ``repo`` a node_modules from its lockfile, running ``npm ci`` once per lockfile.

    The install lives in ``cache_root/<lock hash>/`` and is hard-linked into the
    repository, like the backend's node-local install cache; a file lock keeps
    two test processes from installing the same lockfile at once.
    """
    lockfile = repo / "package-lock.json"
    if not lockfile.is_file():
        return
    entry = cache_root / _lock_hash(lockfile)
    entry.mkdir(parents=True, exist_ok=True)
    with (entry / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = entry / ".installed"
        if not done.exists():
            shutil.rmtree(entry / "node_modules", ignore_errors=True)
            shutil.copy2(repo / "package.json", entry / "package.json")
            shutil.copy2(lockfile, entry / "package-lock.json")
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error", "--prefer-offline"],
                cwd=entry,
                check=True,
                capture_output=True,
                timeout=600,
            )
            done.touch()
    subprocess.run(
        ["cp", "-al", str(entry / "node_modules"), str(repo / "node_modules")], check=True
    )


def prepare_studio_dir(
    repo: Path,
    port: int,
    *,
    wrapper: str | None = None,
    component_glob: str = DEFAULT_COMPONENT_GLOB,
    template_dir: Path = TEMPLATE_DIR,
) -> Path:
    """Materialise ``<repo>/.studio/`` from the template and write its config."""
    modules = template_dir / "node_modules"
    if not (modules / "vite").is_dir():
        raise TemplateStartError(
            f"{modules} is not installed: run scripts/setup.sh (npm ci in studio-template)"
        )
    studio = repo / ".studio"
    shutil.copytree(template_dir, studio, ignore=_TEMPLATE_IGNORE)
    subprocess.run(["cp", "-al", str(modules), str(studio / "node_modules")], check=True)
    config = {
        "sandboxId": None,
        "repoRoot": str(repo),
        "port": port,
        "host": "127.0.0.1",
        "cacheDir": str(studio / ".vite-cache"),
        "wsUrl": None,
        "componentGlob": component_glob,
        "wrapper": wrapper,
    }
    (studio / "studio.config.json").write_text(json.dumps(config, indent=2) + "\n")
    # The backend keeps .studio/ out of commits the same way.
    exclude = repo / ".git" / "info" / "exclude"
    if exclude.parent.is_dir():
        with exclude.open("a") as handle:
            handle.write("/.studio/\n")
    return studio


def _wait_ready(
    process: subprocess.Popen[bytes], port: int, log_path: Path, timeout: float
) -> None:
    try:
        wait_http_ok("127.0.0.1", port, timeout, process=process, interval=0.05)
    except RuntimeError as exc:
        raise TemplateStartError(f"vite: {exc}:\n{_tail(log_path)}") from None


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def run_template(
    repo: Path,
    deps_cache: Path,
    *,
    wrapper: str | None = None,
    component_glob: str = DEFAULT_COMPONENT_GLOB,
    ready_timeout: float = 60.0,
    cwd: Path | None = None,
    template_dir: Path = TEMPLATE_DIR,
    before_start: Callable[[Path], None] | None = None,
) -> Iterator[TemplateServer]:
    """Prepare ``repo`` like a sandbox and serve it with the template until the block ends.

    ``deps_cache`` holds the per-lockfile ``npm ci`` installs (share one per
    test session). Raises :class:`TemplateStartError` when Vite exits or is not
    ready in ``ready_timeout`` seconds. ``cwd`` overrides the working directory
    (the repository, as the backend starts it) for tests of what goes wrong elsewhere;
    ``template_dir`` a template other than ``studio-template/`` (with its node_modules).
    ``before_start`` edits the repository once its dependencies are installed
    (an edited package.json would not match the lockfile that ``npm ci`` reads).
    """
    install_repo_deps(repo, deps_cache)
    if before_start is not None:
        before_start(repo)
    port = free_port()
    studio = prepare_studio_dir(
        repo, port, wrapper=wrapper, component_glob=component_glob, template_dir=template_dir
    )
    log_path = studio / "vite.log"
    argv = [
        "node",
        str(studio / "node_modules" / "vite" / "bin" / "vite.js"),
        "--config",
        str(studio / "vite.config.mjs"),
        "--strictPort",
    ]
    # Own session: the group can be killed whole, and a Ctrl-C on the test
    # run does not reach Vite before the fixture does.
    process = spawn_group(argv, cwd or repo, log_path, dict(VITE_ENV))
    try:
        _wait_ready(process, port, log_path, ready_timeout)
        yield TemplateServer(
            repo=repo, studio_dir=studio, port=port, process=process, log_path=log_path
        )
    finally:
        kill_group(process)


def node_json(script: str) -> Any:
    """What an ES module ``script`` writes to stdout as JSON, run by real Node in the template
    (its plugin modules imported by file URL)."""
    done = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        cwd=TEMPLATE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)
