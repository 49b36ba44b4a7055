"""A sandbox's studio app and the Vite dev server that renders it.

``generate_studio_app`` materialises ``<worktree>/.studio/`` from the studio
template (node_modules linked to the install cache) and writes its
``studio.config.json``; :class:`ViteServer` runs Vite on it under a
:class:`~studio.process.ProcessManager` (or hands its first start to a
:class:`~studio.vite.standby.ViteStandby`) and keeps its port its own;
``cleanup_studio_app`` undoes both. Deciding when to restart Vite is its
supervisor's job (:mod:`studio.sandbox.vite_supervisor`): a restart is a
:meth:`ViteServer.stop` and a :meth:`ViteServer.start`.

Vite is spawned as ``node .studio/serve.mjs``, the template's launcher, which
imports vite.config.mjs and calls Vite's ``createServer`` (an ``npm run``
wrapper would survive as the only thing SIGTERM reaches; Vite's CLI would
load the config through a config loader first), with cwd = the worktree
(Tailwind finds its config from the cwd). The config sets ``strictPort``: a
taken port makes Vite exit with ``Port N is already in use`` instead of
silently moving to another one, and the server then moves to another port of
the node's range itself, rewriting the config.

The decisions (config JSON, argv, environment, "is this a port conflict?")
are pure functions.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import psutil

from studio.errors import (
    InvalidConfig,
    PathNotAllowed,
    PortInUse,
    ProcessStartError,
    ViteStartError,
)
from studio.install.cache import InstallOptions, ensure_install, ensure_node_modules, entry_name
from studio.install.managers import find_install_root
from studio.paths import atomic_write, normalize_user_path
from studio.ports import PortAllocator
from studio.process import ProcessManager, ProcessSpec, StopResult, reap_orphans
from studio.process.boundary import Boundary
from studio.process.environment import tool_environment
from studio.vite.deps import deps_seed_dir, template_fingerprint
from studio.vite.shell import SHELL_FILE, SHELL_MAP, ensure_shell, install_shell

if TYPE_CHECKING:
    from studio.vite.standby import ViteStandby

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_COMPONENT_GLOB",
    "LAUNCHER",
    "PAGE_EVENTS_PATH",
    "PROXY_SECRET_HEADER",
    "STUDIO_DIR",
    "VITE_ENV",
    "ViteServer",
    "app_root",
    "check_package_dir",
    "cleanup_studio_app",
    "generate_studio_app",
    "is_port_conflict",
    "read_studio_config",
    "renderer_base",
    "renderer_url",
    "studio_config",
    "vite_argv",
    "write_studio_config",
]

logger = logging.getLogger(__name__)

STUDIO_DIR = ".studio"
CONFIG_FILE = "studio.config.json"
# The template's script that starts Vite on the studio app (see vite_argv).
LAUNCHER = "serve.mjs"
VITE_CACHE_DIR = ".vite-cache"
DEFAULT_COMPONENT_GLOB = "src/**/*.{tsx,jsx}"
# Installed or generated per sandbox, never copied from the template.
_TEMPLATE_IGNORE = (
    "node_modules",
    VITE_CACHE_DIR,
    "dist",
    CONFIG_FILE,
    Path(SHELL_FILE).name,
    Path(SHELL_MAP).name,
)
# No browser window, no colour codes in the output the studio shows and parses.
VITE_ENV: Mapping[str, str] = {"BROWSER": "none", "NO_COLOR": "1", "FORCE_COLOR": "0"}
# Lines of Vite output attached to errors.
_ERROR_LINES = 50
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Vite's base: "/" or "/seg/.../" (the renderer proxy's per-sandbox path).
_BASE = re.compile(r"/(?:[^/?#]+/)*")
# The header the API's renderer proxy adds (the template's plugin/proxy-guard.mjs).
PROXY_SECRET_HEADER = "x-studio-proxy-secret"
_CONFLICT_PATTERNS = (
    re.compile(r"Port (\d+) is already in use"),
    re.compile(r"EADDRINUSE\b.*?:(\d+)\b"),
)


# --- pure decisions -------------------------------------------------------------


def _check_repo_relative(value: str, name: str) -> None:
    parts = PurePosixPath(value).parts
    if not value or PurePosixPath(value).is_absolute() or ".." in parts:
        raise InvalidConfig(
            f"{name} must be a path relative to the repository that stays inside it, got {value!r}"
        )


def studio_config(
    *,
    repo_root: Path,
    port: int,
    host: str = "127.0.0.1",
    sandbox_id: str | None = None,
    ws_url: str | None = None,
    base: str = "/",
    proxy_secret: str | None = None,
    component_glob: str = DEFAULT_COMPONENT_GLOB,
    wrapper: str | None = None,
    cache_dir: Path | None = None,
    deps_seed_dir: Path | None = None,
    workspace_root: Path | None = None,
) -> dict[str, Any]:
    """The ``studio.config.json`` the template's vite.config.mjs reads.

    ``repo_root`` is the package the studio renders, ``workspace_root`` the
    worktree it lies in (default: the same): Vite may serve files of the
    whole worktree, where a workspace's sibling packages are.

    ``cache_dir`` defaults to ``<repo_root>/.studio/.vite-cache`` (one Vite
    cache per sandbox: a shared one would mix optimised dependencies).
    ``deps_seed_dir`` is where sandboxes share their pre-bundled dependencies
    (:mod:`studio.vite.deps`); None optimises them in this sandbox alone.
    """
    _check_repo_relative(component_glob, "component_glob")
    if wrapper is not None:
        _check_repo_relative(wrapper, "wrapper")
    if not 1 <= port <= 65535:
        raise InvalidConfig(f"port must be in 1..65535, got {port}")
    if ws_url is not None and not ws_url.startswith(("ws://", "wss://", "/")):
        raise InvalidConfig(
            f"ws_url must be a ws:// or wss:// URL or an absolute path, got {ws_url!r}"
        )
    if not _BASE.fullmatch(base):
        raise InvalidConfig(f"base must be a URL path that starts and ends with '/', got {base!r}")
    if deps_seed_dir is not None and not deps_seed_dir.is_absolute():
        raise InvalidConfig(f"deps_seed_dir must be an absolute path, got {deps_seed_dir}")
    return {
        "sandboxId": sandbox_id,
        "repoRoot": str(repo_root),
        "workspaceRoot": str(workspace_root or repo_root),
        "port": port,
        "host": host,
        "cacheDir": str(cache_dir or repo_root / STUDIO_DIR / VITE_CACHE_DIR),
        "wsUrl": ws_url,
        "base": base,
        "proxySecret": proxy_secret,
        "componentGlob": component_glob,
        "wrapper": wrapper,
        "depsSeedDir": None if deps_seed_dir is None else str(deps_seed_dir),
    }


def check_package_dir(package_dir: str) -> str:
    """``package_dir`` normalised (``"packages/ui"``, ``""`` for the root), or InvalidConfig.

    It must be a path relative to the repository that stays inside it, by the
    rules every user path follows (:func:`studio.paths.normalize_user_path`).
    """
    value = package_dir.strip()
    if value in ("", ".", "./"):
        return ""
    try:
        return normalize_user_path(value)
    except PathNotAllowed as exc:
        raise InvalidConfig(
            f"package_dir must be a directory relative to the repository root that stays "
            f"inside it (like 'packages/ui'): {exc.message}"
        ) from None


def app_root(worktree: Path, package_dir: str = "") -> Path:
    """The directory the studio renders: ``worktree`` or its ``package_dir``.

    InvalidConfig when ``package_dir`` is not a relative path inside the
    worktree or is not a directory there.
    """
    relative = check_package_dir(package_dir)
    if not relative:
        return worktree
    root = worktree / relative
    if not root.is_dir() or not root.resolve().is_relative_to(worktree.resolve()):
        raise InvalidConfig(
            f"package_dir {relative!r} is not a directory of the repository (on the "
            "branch the sandbox started from)"
        )
    return root


def vite_argv(studio_dir: Path, *, node: str = "node") -> list[str]:
    """The command that starts Vite on the studio app in ``studio_dir``.

    The template's ``serve.mjs`` imports vite.config.mjs as a plain module and
    starts Vite's server from it (``strictPort`` is in the config). Vite's CLI
    would load the config through a loader: bundled with rolldown by default,
    or (``--configLoader native``, on Node < 22.15) behind module hooks that
    run in a worker thread: ~0.17 s more CPU before ready either way.
    """
    return [node, str(studio_dir / LAUNCHER)]


def is_port_conflict(output: Iterable[str], port: int | None = None) -> bool:
    """Whether Vite's ``output`` says its port (``port``, or any) was taken."""
    for line in output:
        text = _ANSI.sub("", line)
        for pattern in _CONFLICT_PATTERNS:
            match = pattern.search(text)
            if match and (port is None or int(match.group(1)) == port):
                return True
    return False


def renderer_url(host: str, port: int, base: str = "/") -> str:
    """``http://host:port<base>`` (IPv6 hosts in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{base}"


# Beside the page, under its base: the sandbox's event stream, which the API's
# renderer proxy serves itself (the page's cookie lets it in).
PAGE_EVENTS_PATH = "__studio/events"


def renderer_base(sandbox_id: str) -> str:
    """The URL path a sandbox's renderer is served under, by the API and by its Vite (``base``)."""
    return f"/r/{sandbox_id}/"


# --- the studio app on disk -------------------------------------------------------


def read_studio_config(studio_dir: Path) -> dict[str, Any]:
    """The parsed ``studio.config.json`` of ``studio_dir``."""
    path = studio_dir / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidConfig(
            f"{path} does not exist: generate the studio app (generate_studio_app) first"
        ) from None
    except ValueError as exc:
        raise InvalidConfig(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidConfig(f"{path} must hold a JSON object")
    return data


def write_studio_config(studio_dir: Path, config: Mapping[str, Any]) -> None:
    """Write ``studio.config.json`` atomically (Vite may be reading it)."""
    atomic_write(studio_dir / CONFIG_FILE, json.dumps(dict(config), indent=2) + "\n")


def generate_studio_app(
    worktree: Path,
    *,
    template_dir: Path,
    cache_root: Path,
    port: int,
    host: str = "127.0.0.1",
    ws_url: str | None = None,
    sandbox_id: str | None = None,
    base: str = "/",
    proxy_secret: str | None = None,
    component_glob: str = DEFAULT_COMPONENT_GLOB,
    wrapper: str | None = None,
    npm: str = "npm",
    node: str = "node",
    share_deps: bool = True,
    prebuilt_shell: bool = True,
    package_dir: str = "",
    install_scripts: bool = False,
    package_cache: Path | None = None,
) -> Path:
    """Materialise ``<worktree>/<package_dir>/.studio/`` and return it.

    ``package_dir`` (relative, "" for the repository root) is the package the
    studio renders: Vite's root, where stories are found, where ``.studio/``
    goes (:func:`app_root`). The template is copied without node_modules
    (replacing an earlier ``.studio/``); its node_modules are a link to the
    install cache's entry in ``cache_root`` (never written through: no tool
    writes into them, Vite's cache is ``.studio/.vite-cache``). The
    repository's own are installed at the workspace root that installs the
    package (the nearest directory up from it with a lockfile: npm, pnpm or
    yarn, :mod:`studio.install`), once per node, and hard-linked wherever the
    worktree has no node_modules yet; ``install_scripts`` lets dependencies'
    lifecycle scripts run, ``package_cache`` is the package managers' download
    cache (None: each one's per-user default). Keeping ``.studio/`` and
    ``node_modules/`` out of commits is the git layer's job (info/exclude).
    With ``share_deps``, Vite's pre-bundled dependencies come from (or go to)
    the node's seed for these node_modules (:mod:`studio.vite.deps`). With
    ``prebuilt_shell``, the page loads the app's modules prebuilt in one file
    (:mod:`studio.vite.shell`, built once per template on the node).
    """
    root = app_root(worktree, package_dir)
    config = studio_config(
        repo_root=root,
        workspace_root=worktree,
        port=port,
        host=host,
        sandbox_id=sandbox_id,
        ws_url=ws_url,
        base=base,
        proxy_secret=proxy_secret,
        component_glob=component_glob,
        wrapper=wrapper,
    )
    if not (template_dir / "package-lock.json").is_file():
        raise InvalidConfig(
            f"{template_dir} is not the studio template (no package-lock.json); "
            "set COMPONENT_STUDIO_TEMPLATE_DIR"
        )
    template_modules = ensure_node_modules(template_dir, cache_root, npm=npm, node=node)
    studio_dir = root / STUDIO_DIR
    if studio_dir.exists():
        shutil.rmtree(studio_dir)
    shutil.copytree(
        template_dir, studio_dir, symlinks=True, ignore=shutil.ignore_patterns(*_TEMPLATE_IGNORE)
    )
    # A link, not a copy: Node resolves the config's imports to the cache's real
    # files, which a Vite standby (studio.vite.standby) has already loaded.
    (studio_dir / "node_modules").symlink_to(template_modules.resolve(), target_is_directory=True)
    install_root = find_install_root(worktree, root)
    repo_install = None
    if install_root is not None:
        options = InstallOptions(
            allow_scripts=install_scripts, package_cache=package_cache, npm=npm
        )
        if (install_root / "node_modules").exists():
            # Installed already (a recovered worktree): named as the entry it came from.
            repo_install = entry_name(install_root, options, node=node)
        else:
            installed = ensure_install(install_root, cache_root, options, node=node)
            installed.link_into(install_root)
            repo_install = installed.entry.name
    fingerprint = template_fingerprint(template_dir, _TEMPLATE_IGNORE)
    if share_deps:
        seed = deps_seed_dir(
            root,
            template_dir=template_dir,
            template_modules=template_modules,
            repo_install=repo_install,
            ignore=_TEMPLATE_IGNORE,
            fingerprint=fingerprint,
        )
        config["depsSeedDir"] = None if seed is None else str(seed.resolve())
    if prebuilt_shell:
        shell = ensure_shell(studio_dir, template_modules, fingerprint, node=node)
        if shell is not None:
            install_shell(studio_dir, shell)
    write_studio_config(studio_dir, config)
    logger.info(
        "studio app generated",
        extra={
            "sandbox_id": sandbox_id,
            "worktree": str(worktree),
            "package_dir": package_dir,
            "port": port,
            "install": repo_install,
        },
    )
    return studio_dir


def cleanup_studio_app(
    worktree: Path, server: ViteServer | None = None, *, pid_file: Path | None = None
) -> None:
    """Stop Vite, release its port, remove ``<worktree>/.studio/``.

    Without the ``server`` object (an actor restarted since), ``pid_file``
    names the process record its Vite left, and what it recorded is killed.
    """
    if server is not None:
        server.close()
    elif pid_file is not None:
        reap_orphans(pid_file)
    shutil.rmtree(worktree / STUDIO_DIR, ignore_errors=True)


# --- the server ---------------------------------------------------------------------


def _probe(
    host: str, port: int, timeout: float, base: str = "/", secret: str | None = None
) -> bool:
    # http.client rather than an HTTP library: no proxy settings from the
    # environment, no TLS context per call, nothing shared between threads.
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    # A sandbox's Vite answers only requests that carry its proxy secret (proxy-guard.mjs).
    headers = {PROXY_SECRET_HEADER: secret} if secret else {}
    try:
        conn.request("GET", f"{base}@vite/client", headers=headers)
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` (or a child of it) has a listening socket on ``port``."""
    try:
        leader = psutil.Process(pid)
        procs = [leader, *leader.children(recursive=True)]
    except psutil.Error:
        return False
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                    return True
    return False


def _vite_writable(worktree: Path, config: Mapping[str, Any]) -> list[Path]:
    """What Vite may write inside a boundary: its worktree, its cache dir (inside
    the worktree unless configured elsewhere), and the seed's directory while
    the seed is still to be published (its plugin publishes there,
    studio.vite.deps); a published seed stays read-only."""
    workspace = Path(config.get("workspaceRoot") or worktree)
    writable = [workspace]
    cache = config.get("cacheDir")
    if isinstance(cache, str) and not Path(cache).is_relative_to(workspace):
        Path(cache).mkdir(parents=True, exist_ok=True)
        writable.append(Path(cache))
    seed = config.get("depsSeedDir")
    if isinstance(seed, str) and not Path(seed).is_dir():
        seeds = Path(seed).parent
        seeds.mkdir(parents=True, exist_ok=True)
        writable.append(seeds)
    return writable


class ViteServer:
    """The Vite dev server of one worktree's studio app.

    Reads port and host from ``<worktree>/.studio/studio.config.json``. When
    the port turns out to be taken, takes another one from ``ports`` (under
    the sandbox's id), rewrites the config and tries again, at most
    ``port_attempts`` ports per start (a restart is a start too, so a Vite
    whose port was taken while it was down moves as well). ``close()`` stops
    Vite and releases the port. A ``standby`` runs the first start when it
    fits this studio app (else it is closed and Vite spawned as usual).

    ``boundary`` is the OS boundary Vite runs in (:mod:`studio.process.boundary`):
    the worktree (the config's ``workspaceRoot``) is all it may write, and the
    deps seed's directory while the seed is still to be published. A standby
    runs outside any boundary, so with one in force it is closed unused.
    """

    def __init__(
        self,
        worktree: Path,
        *,
        ports: PortAllocator,
        node: str = "node",
        unhealthy_threshold: int = 3,
        pid_file: Path | None = None,
        port_attempts: int = 5,
        probe_timeout: float = 1.0,
        standby: ViteStandby | None = None,
        boundary: Boundary | None = None,
    ) -> None:
        if port_attempts < 1 or probe_timeout <= 0:
            raise InvalidConfig("port_attempts must be >= 1 and probe_timeout > 0")
        self.worktree = worktree
        self.studio_dir = worktree / STUDIO_DIR
        config = read_studio_config(self.studio_dir)
        self.host: str = config["host"]
        self.port: int = config["port"]
        # Behind the API's renderer proxy: Vite's base, and the secret its requests carry.
        self.base: str = config.get("base") or "/"
        self.proxy_secret: str | None = config.get("proxySecret")
        self.owner: str = config.get("sandboxId") or f"standalone:{worktree}"
        self.ports = ports
        self.port_attempts = port_attempts
        self.probe_timeout = probe_timeout
        self.pid_file = pid_file
        # Runs the first start instead of a spawn, when it fits this studio app.
        self._standby = standby
        # The pid whose listening socket on self.port was seen; None: not yet.
        self._verified: tuple[int, int] | None = None
        # A port on which something other than our Vite answered the probe.
        self._foreign_port: int | None = None
        self.boundary = boundary or Boundary()
        # What Vite may write inside the boundary; the first is its worktree.
        self.writable = _vite_writable(worktree, config) if self.boundary.enforced else []
        self.manager = ProcessManager(
            ProcessSpec(
                argv=self.boundary.wrap(
                    vite_argv(self.studio_dir, node=node),
                    cwd=worktree,
                    writable=self.writable,
                ),
                cwd=worktree,
                # Only allow-listed variables: the repository's code runs in this Node.
                env=tool_environment(VITE_ENV),
                inherit=False,
                name=f"vite[{self.owner}]",
            ),
            readiness_probe=self._ready,
            unhealthy_threshold=unhealthy_threshold,
            pid_file=pid_file,
        )

    @property
    def url(self) -> str:
        """The renderer's URL on Vite's own port, ``http://host:port<base>``."""
        return renderer_url(self.host, self.port, self.base)

    @property
    def pid(self) -> int | None:
        return self.manager.pid

    def output(self, lines: int | None = None) -> list[str]:
        """Vite's last ``lines`` lines of output, newest last."""
        return self.manager.output(lines)

    # -- health --------------------------------------------------------------

    def check_health(self) -> bool:
        """Vite alive, its ``/@vite/client`` not failed ``unhealthy_threshold`` times in a row."""
        return self.manager.check_health()

    def wait_exit(self, timeout: float | None = None) -> int | None:
        """Vite's exit code once its process exits (``None`` if ``timeout`` passed first).

        Without ``timeout`` it sleeps until the exit, costing nothing while Vite runs.
        """
        return self.manager.wait(timeout)

    def _ready(self) -> bool:
        if not _probe(self.host, self.port, self.probe_timeout, self.base, self.proxy_secret):
            return False
        pid = self.manager.pid
        if pid is None:
            return False
        if self._verified == (pid, self.port):
            return True
        # Something answered on our port: make sure it is our Vite, not a
        # server that got the port first (ours then exits with strictPort).
        if not _listens_on(pid, self.port):
            self._foreign_port = self.port
            return False
        self._verified = (pid, self.port)
        return True

    # -- lifecycle -----------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start Vite and wait until it is healthy, moving to another port if needed.

        Raises :class:`ViteStartError` (with Vite's output) when it cannot be
        spawned, exits or is not ready within ``timeout`` seconds,
        :class:`PortInUse` when ``port_attempts`` ports in a row were taken.
        Vite is stopped when it raises.
        """
        if self.pid_file is not None:
            # What an earlier incarnation of this sandbox left still holds the port.
            reap_orphans(self.pid_file)
        standby, self._standby = self._standby, None
        adopted = None
        if standby is not None and self.boundary.enforced and not self._inside(standby):
            standby.close()  # not in a boundary of this worktree: the repository's code must not
        elif standby is not None:
            adopted = standby.hand_over(self.worktree, self.studio_dir)
        deadline = time.monotonic() + timeout
        for attempt in range(1, self.port_attempts + 1):
            self._spawn(adopted)
            adopted = None
            try:
                self.manager.wait_ready(max(deadline - time.monotonic(), 0.001))
            except ProcessStartError as exc:
                output = exc.details.get("output") or self.output(_ERROR_LINES)
                conflict = self._foreign_port == self.port or is_port_conflict(output, self.port)
                self.manager.stop()
                if not conflict:
                    raise self._start_error(
                        f"Vite did not become healthy on {self.url}: {exc.message}",
                        returncode=exc.details.get("returncode"),
                    ) from exc
                if attempt == self.port_attempts:
                    raise PortInUse(
                        f"Vite found {attempt} ports in a row taken (last {self.port}); "
                        "something else is claiming ports of the Vite range",
                        port=self.port,
                        output=output,
                    ) from exc
                self._move_port()
            else:
                logger.info(
                    "vite ready",
                    extra={"sandbox_id": self.owner, "port": self.port, "pid": self.pid},
                )
                return

    def _inside(self, standby: ViteStandby) -> bool:
        """Whether ``standby`` runs in a boundary made for this Vite's worktree."""
        bound = standby.bound_to
        workspace = self.writable[0] if self.writable else self.worktree
        return bound is not None and workspace.is_relative_to(bound)

    def stop(self, timeout: float = 5.0) -> StopResult:
        """SIGTERM Vite's process group, SIGKILL it after ``timeout`` s; keeps the port."""
        return self.manager.stop(timeout)

    def close(self, timeout: float = 5.0) -> StopResult:
        """Stop Vite (and a standby never used) and release its port reservation."""
        standby, self._standby = self._standby, None
        if standby is not None:
            standby.close()
        result = self.stop(timeout)
        self.ports.release(self.port, self.owner)
        return result

    def _spawn(self, adopt: subprocess.Popen[bytes] | None) -> None:
        try:
            self.manager.start(adopt=adopt)
        except ProcessStartError as exc:
            self.manager.stop()
            raise self._start_error(f"cannot start Vite: {exc.message}") from exc

    def _move_port(self) -> None:
        old = self.port
        new = self.ports.allocate(self.owner)
        config = read_studio_config(self.studio_dir)
        config["port"] = new
        write_studio_config(self.studio_dir, config)
        self.port = new
        # Only our own reservation: a port reserved by another sandbox stays its own.
        self.ports.release(old, self.owner)
        logger.warning(
            "port %d was taken, moving Vite to %d",
            old,
            new,
            extra={"sandbox_id": self.owner, "old_port": old, "port": new},
        )

    def _start_error(self, message: str, **details: Any) -> ViteStartError:
        return ViteStartError(
            message, output=self.output(_ERROR_LINES), port=self.port, url=self.url, **details
        )
