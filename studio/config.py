"""Configuration: a sandbox's :class:`ComponentStudioConfig` and the service's settings.

``ComponentStudioConfig`` carries the API's per-sandbox fields (repository,
branch, auto_commit, commit_pattern, health_check_interval, timeout_hours,
vite_port, websocket_port) plus the supervision knobs. A repository registers
a config; a create request may override fields of it.

``StudioSettings`` is the service's own configuration, every field read from
an environment variable ``COMPONENT_STUDIO_<FIELD>``. Each setting is declared
once here, with its default and description.
"""

from __future__ import annotations

import shlex
import string
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from studio.errors import PathNotAllowed
from studio.layout import StateLayout
from studio.naming import is_sandbox_branch
from studio.paths import normalize_user_path
from studio.process.boundary import Boundary, Isolation

__all__ = [
    "COMMIT_PLACEHOLDERS",
    "RAY_WORKER_PORT_MAX",
    "RAY_WORKER_PORT_MIN",
    "ComponentStudioConfig",
    "StudioSettings",
    "format_commit_message",
    "load_settings",
    "service_port_problem",
]

# Ray hands out worker ports from this range (its default); a port there can collide.
RAY_WORKER_PORT_MIN = 10002
RAY_WORKER_PORT_MAX = 19999
MIN_PORT = 1024
MAX_PORT = 65535
_SERVICE_PORT_CHOICE = (
    f"choose a port from {MIN_PORT} to {RAY_WORKER_PORT_MIN - 1} "
    f"or from {RAY_WORKER_PORT_MAX + 1} to {MAX_PORT}"
)

# Upper bounds of the per-sandbox settings that the manager waits by or that hold
# resources (docs/limits.md): past them an override is refused (400 naming the field
# and the bound), whoever asks. Raising one above the service's default is for admins.
MAX_TIMEOUT_HOURS = 168.0  # a week of inactivity
MAX_READY_TIMEOUT_SECONDS = 600.0
MAX_BACKOFF_SECONDS = 300.0
MAX_STABLE_START_SECONDS = 3600.0
MAX_RESTARTS = 100
MAX_UNHEALTHY_THRESHOLD = 100
MAX_HEALTH_CHECK_INTERVAL_SECONDS = 3600.0
# The repository's setup command (codegen, generated CSS): a short argv, run with a timeout.
MAX_SETUP_ARGS = 64
MAX_SETUP_COMMAND_CHARS = 4096
MAX_SETUP_TIMEOUT_SECONDS = 1800.0

COMMIT_PLACEHOLDERS = frozenset({"description", "action", "timestamp", "file", "sandbox"})
COMMIT_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M"


def _check_port(value: int, name: str) -> int:
    if not MIN_PORT <= value < RAY_WORKER_PORT_MIN:
        raise ValueError(
            f"{name} must be between {MIN_PORT} and {RAY_WORKER_PORT_MIN - 1} "
            f"(ports from {RAY_WORKER_PORT_MIN} up belong to Ray's workers), got {value}"
        )
    return value


def service_port_problem(port: int) -> str | None:
    """Why ``port`` cannot be one the service listens on (API, WebSocket), or None.

    Any port from 1024 up that is outside Ray's worker port range will do;
    the message says which ones are left.
    """
    if port < MIN_PORT:
        return f"below {MIN_PORT}; {_SERVICE_PORT_CHOICE}"
    if port > MAX_PORT:
        return f"above {MAX_PORT}; {_SERVICE_PORT_CHOICE}"
    if RAY_WORKER_PORT_MIN <= port <= RAY_WORKER_PORT_MAX:
        return (
            f"inside Ray's worker port range {RAY_WORKER_PORT_MIN}-{RAY_WORKER_PORT_MAX}; "
            + _SERVICE_PORT_CHOICE
        )
    return None


def _check_service_port(value: int) -> int:
    problem = service_port_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def commit_pattern_placeholders(pattern: str) -> set[str]:
    """The ``{name}`` placeholders used by ``pattern``; raises ValueError if malformed."""
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise ValueError(f"commit_pattern {pattern!r} is malformed: {exc}") from exc
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field == "" or spec or conversion:
            raise ValueError(
                f"commit_pattern {pattern!r}: use plain named placeholders such as "
                "{description}, without positions, conversions or format specs"
            )
        names.add(field)
    return names


class ComponentStudioConfig(BaseModel):
    """Per-sandbox configuration: the API's ``ComponentStudioConfig`` plus supervision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repository: str = Field("", description="Repository id or name the sandbox works on.")
    branch: str = Field("main", min_length=1, description="Base branch the sandbox starts from.")
    auto_commit: bool = Field(True, description="Commit every file change made through execute.")
    commit_pattern: str = Field(
        "AI: {description} - {timestamp}",
        min_length=1,
        description="Commit message pattern; placeholders: "
        + ", ".join("{" + p + "}" for p in sorted(COMMIT_PLACEHOLDERS)),
    )
    health_check_interval: float = Field(
        10.0,
        gt=0,
        le=MAX_HEALTH_CHECK_INTERVAL_SECONDS,
        description="Seconds between two health checks of Vite.",
    )
    timeout_hours: float = Field(
        4.0,
        gt=0,
        le=MAX_TIMEOUT_HOURS,
        description="Hours of inactivity after which the sandbox is torn down.",
    )
    vite_port: int = Field(5173, description="First port of the node's Vite port range.")
    websocket_port: int = Field(
        8080, description="Port the renderer reaches the event WebSocket on (the API's port)."
    )
    max_restarts: int = Field(
        3,
        ge=0,
        le=MAX_RESTARTS,
        description="Vite restarts allowed before the sandbox is FAILED.",
    )
    restart_backoff: float = Field(
        0.1,
        gt=0,
        le=MAX_BACKOFF_SECONDS,
        description="Seconds before the first restart; doubles on each further one.",
    )
    restart_backoff_max: float = Field(
        10.0,
        gt=0,
        le=MAX_BACKOFF_SECONDS,
        description="Longest wait between two restarts, in seconds.",
    )
    stable_start: float = Field(
        30.0,
        gt=0,
        le=MAX_STABLE_START_SECONDS,
        description="Seconds of healthy running after which the restart count resets.",
    )
    unhealthy_threshold: int = Field(
        3,
        ge=1,
        le=MAX_UNHEALTHY_THRESHOLD,
        description="Failed health probes in a row before Vite counts as unhealthy.",
    )
    ready_timeout: float = Field(
        60.0,
        gt=0,
        le=MAX_READY_TIMEOUT_SECONDS,
        description="Seconds Vite may take to answer /@vite/client after start.",
    )
    durable_commits: bool = Field(
        True,
        description="Execute and rollback answer once the branch is on the origin too, so "
        "an edit survives the loss of its node (what it costs per edit: docs/performance.md, "
        "durable commits). False: they answer once it is on the node's disk and push "
        "within a second.",
    )
    push_timeout: float = Field(
        10.0,
        gt=0,
        le=600,
        description="Seconds a durable execute waits for its push; past it the answer says "
        "pushed=false (the commit is on the node's disk, the push is retried).",
    )
    component_glob: str = Field(
        "src/**/*.{tsx,jsx}", min_length=1, description="Where the studio looks for components."
    )
    wrapper_component: str | None = Field(
        None,
        description="Module path (inside the repository) whose default export wraps every "
        "rendered component, for providers when there is no .storybook/preview.",
    )
    # Set in a repository's config by an admin (at registration); a create's
    # overrides may not set them (studio.sandbox_overrides).
    editable_config_paths: tuple[str, ...] = Field(
        (),
        max_length=200,
        description="Paths (relative to the repository) that execute may write or delete "
        "although the toolchain runs or installs from them (package.json, lockfiles, "
        "*.config.js, ...; studio.toolchain_files). Repository config only, set by an admin.",
    )
    allowed_branches: tuple[str, ...] = Field(
        (),
        max_length=200,
        description="Branches besides the default one that a create may name as its base "
        "branch. Never a sandbox's design/studio-* branch. Repository config only, set by "
        "an admin.",
    )

    package_dir: str = Field(
        "",
        description="The package the studio renders, relative to the repository root "
        "(like 'packages/ui' in a monorepo; '' for the root): Vite's root and where stories "
        "are found. Dependencies are installed at the workspace root above it (its lockfile).",
    )
    install_scripts: bool = Field(
        False,
        description="Let dependencies' lifecycle scripts (postinstall, ...) run at install. "
        "Off: only those the repository's own configuration allows (pnpm's "
        "onlyBuiltDependencies) run. A failing script never stops a sandbox: the install is "
        "retried without scripts.",
    )

    setup_command: tuple[str, ...] = Field(
        (),
        description="The repository's own setup step, run in each sandbox's package directory "
        "after its dependencies are linked and before its Vite starts, inside the sandbox's "
        "OS boundary (what it writes stays in the worktree and out of commits): a list of "
        "arguments, or one string split like a shell would (no shell runs it, so no pipes or "
        "variables), such as 'node_modules/.bin/panda codegen' or 'npm run build:css'. A "
        "failure does not stop the sandbox: its record says so with the tool's output. "
        "Empty: none. Repository config only, set by an admin.",
    )
    setup_timeout: float = Field(
        300.0,
        gt=0,
        le=MAX_SETUP_TIMEOUT_SECONDS,
        description="Seconds the setup command may run before it is killed (then it counts "
        "as failed). Repository config only, set by an admin.",
    )

    @field_validator("setup_command", mode="before")
    @classmethod
    def _split_setup_command(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return tuple(shlex.split(value))
            except ValueError as exc:
                raise ValueError(f"setup_command {value[:200]!r} cannot be split: {exc}") from None
        return value

    @field_validator("setup_command")
    @classmethod
    def _bounded_setup_command(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) > MAX_SETUP_ARGS:
            raise ValueError(f"setup_command has {len(value)} arguments; at most {MAX_SETUP_ARGS}")
        if sum(len(arg) + 1 for arg in value) > MAX_SETUP_COMMAND_CHARS:
            raise ValueError(f"setup_command is longer than {MAX_SETUP_COMMAND_CHARS} characters")
        if any("\0" in arg for arg in value):
            raise ValueError("setup_command holds a NUL character")
        if value and not value[0].strip():
            raise ValueError("setup_command's program (its first argument) is empty")
        return value

    @field_validator("package_dir")
    @classmethod
    def _relative_package_dir(cls, value: str) -> str:
        value = value.strip()
        if value in ("", ".", "./"):
            return ""
        try:
            return normalize_user_path(value)
        except PathNotAllowed as exc:
            raise ValueError(
                "package_dir must be a directory relative to the repository root that stays "
                f"inside it (like 'packages/ui'): {exc.message}"
            ) from None

    @field_validator("vite_port")
    @classmethod
    def _port_in_range(cls, value: int, info: Any) -> int:
        return _check_port(value, info.field_name)

    @field_validator("editable_config_paths")
    @classmethod
    def _normalised_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # The same checks as an execute's path: an entry names a file inside the repository.
        try:
            return tuple(normalize_user_path(path) for path in value)
        except PathNotAllowed as exc:
            raise ValueError(f"editable_config_paths: {exc}") from None

    @field_validator("allowed_branches")
    @classmethod
    def _no_sandbox_branches(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for branch in value:
            if not branch.strip():
                raise ValueError("allowed_branches holds an empty branch name")
            if is_sandbox_branch(branch):
                raise ValueError(
                    f"allowed_branches may not list {branch!r}: design/studio-* branches are "
                    "sandboxes' own work, and a sandbox never starts from another's"
                )
        return value

    @field_validator("websocket_port")
    @classmethod
    def _service_port(cls, value: int) -> int:
        return _check_service_port(value)

    @field_validator("commit_pattern")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        unknown = commit_pattern_placeholders(value) - COMMIT_PLACEHOLDERS
        if unknown:
            known = ", ".join("{" + p + "}" for p in sorted(COMMIT_PLACEHOLDERS))
            names = ", ".join("{" + p + "}" for p in sorted(unknown))
            raise ValueError(f"commit_pattern uses unknown placeholder {names}; known: {known}")
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> ComponentStudioConfig:
        if self.restart_backoff > self.restart_backoff_max:
            raise ValueError(
                f"restart_backoff ({self.restart_backoff}) must not exceed "
                f"restart_backoff_max ({self.restart_backoff_max})"
            )
        return self

    def with_overrides(self, overrides: dict[str, Any] | None) -> ComponentStudioConfig:
        """A validated copy with ``overrides`` applied (unknown fields are an error)."""
        if not overrides:
            return self
        return ComponentStudioConfig.model_validate({**self.model_dump(), **overrides})


def format_commit_message(pattern: str, **values: str) -> str:
    """Fill ``pattern`` (already validated) with ``values``; missing ones become ''."""
    filled = {name: values.get(name, "") for name in commit_pattern_placeholders(pattern)}
    message = pattern.format(**filled).strip()
    return message or "Component Studio edit"


def _split_paths(value: Any) -> Any:
    if isinstance(value, str):
        # "a, b" is two roots, "a" and "b": spaces around commas are not part of a path.
        return [Path(p.strip()).expanduser() for p in value.split(",") if p.strip()]
    return value


class StudioSettings(BaseSettings):
    """The service's settings; each one is ``COMPONENT_STUDIO_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="COMPONENT_STUDIO_", extra="ignore")

    template_dir: Path = Field(
        Path(__file__).resolve().parent.parent / "studio-template",
        description="The renderer app copied into each sandbox as .studio/.",
    )
    state_dir: Path = Field(
        Path.home() / ".component-studio",
        description="Node-local state: mirrors, worktrees, install cache, pid files, registry.",
    )
    vite_port: int = Field(5173, description="First port of each node's Vite port range.")
    vite_port_count: int = Field(
        400, ge=1, description="How many ports the Vite range holds (it must end below 10002)."
    )
    ws_port: int = Field(8000, description="Port of the HTTP + WebSocket API (Serve's proxy).")
    ws_direct_port: int = Field(
        8100,
        description=(
            "First port of the API replicas' own listeners for the event WebSocket and "
            "execute (each replica takes the first free one; websocket_url and execute_url "
            "point there): no Serve proxy between client and replica. 0 turns the listener "
            "off: both go through ws_port, and each frame and edit crosses the proxy "
            "(docs/performance.md, direct listener)."
        ),
    )
    host: str = Field("127.0.0.1", description="Address the API and Vite servers bind to.")
    public_host: str = Field(
        "127.0.0.1", description="Host name put into renderer and WebSocket URLs for clients."
    )
    timeout_hours: float = Field(
        4.0, gt=0, le=MAX_TIMEOUT_HOURS, description="Default inactivity timeout of sandboxes."
    )
    max_restarts: int = Field(
        3, ge=0, le=MAX_RESTARTS, description="Default Vite restart limit of sandboxes."
    )
    warm_workers: int = Field(
        4,
        ge=0,
        description=(
            "Spare Ray workers (each with a Vite standby) every node keeps booted for the "
            "next sandboxes: a create that finds one skips the boot of a worker process. "
            "Each spare holds memory and a sliver of a core while it waits; size the pool "
            "to the creates expected at once. 0 turns the pool off: every sandbox actor "
            "boots its own worker (docs/performance.md, warm pool)."
        ),
    )
    ready_sandboxes: int = Field(
        1,
        ge=0,
        le=8,
        description=(
            "Sandboxes each registered repository keeps started ahead of need (worktree, "
            "studio app and Vite up, on the node the scheduler picks). A create with no "
            "overrides takes one over and answers at once, and another is started in its "
            "place; one whose repository's branch has moved since it started is replaced, "
            "not handed out. Each holds a Vite (memory: docs/performance.md, ready "
            "sandboxes). 0 turns them off: every create sets its sandbox up."
        ),
    )
    ready_sandbox_quiet_s: float = Field(
        10.0,
        ge=0,
        le=600,
        description=(
            "Seconds after a create took a ready sandbox before any replacement starts: "
            "a replacement's setup and warm-up are seconds of CPU that the taker's first "
            "page load would otherwise share (docs/performance.md, ready sandboxes)."
        ),
    )
    worker_preload: bool = Field(
        True,
        description=(
            "Each new Ray worker of a node imports the sandbox actor's modules (and starts "
            "its Vite standby) while it waits, when Ray names actors._preload in "
            "preload_python_modules. False: the preload does nothing, and a sandbox actor "
            "imports them after it was created, on the create's path; no standbys either "
            "(docs/performance.md, worker preload). Read by the workers from their "
            "environment."
        ),
    )
    vite_standby: bool = Field(
        True,
        description=(
            "Each spare worker keeps a Node process that has imported Vite, and the sandbox "
            "actor that lands there starts its Vite through it. False: no standby is "
            "started or used, each sandbox spawns a fresh node process "
            "(docs/performance.md, Vite standby). Workers read it from their environment, "
            "sandbox actors from the service's settings."
        ),
    )
    prebuilt_shell: bool = Field(
        True,
        description=(
            "The studio app's own modules are prebuilt into one file once per template on "
            "a node, and each sandbox's page loads that. False: every first page load has "
            "Vite transform the app from source (docs/performance.md, prebuilt shell)."
        ),
    )
    isolation: Isolation = Field(
        Isolation.BWRAP,
        description=(
            "The OS boundary around every process that runs repository code (Vite): "
            "'bwrap' runs it under bubblewrap, in namespaces of its own with only its "
            "worktree writable and nothing of the state directory, $HOME or Ray's session "
            "visible; 'none' runs it as the service's own user, for a single trusted user "
            "(docs/security.md). With 'bwrap' no Vite standby is used: it would run outside."
        ),
    )
    vite_deps_seed: bool = Field(
        True,
        description=(
            "Vite's pre-bundled dependencies are optimised once per node and install, and "
            "each sandbox's Vite starts from a copy. False: every sandbox's Vite optimises "
            "them in its own cache dir (docs/performance.md, deps seed)."
        ),
    )
    health_check_interval: float = Field(
        10.0, gt=0, description="Seconds between two reconcile ticks of the manager."
    )
    node_check_interval: float = Field(
        1.0,
        gt=0,
        description=(
            "Seconds between two looks at the cluster's nodes: a node lost with sandboxes on "
            "it starts a reconcile pass at once instead of at the next tick."
        ),
    )
    admin_token: str | None = Field(
        None, description="Bearer token of the admin user; generated and printed when unset."
    )
    github_token: str | None = Field(
        None, description="Token used to push branches and open pull requests on GitHub."
    )
    github_api_url: str = Field(
        "https://api.github.com",
        description="GitHub API base URL (GitHub Enterprise: its /api/v3).",
    )
    repo_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated directories under which local repositories may be registered.",
    )
    max_file_bytes: int = Field(
        1_048_576, ge=1, description="Largest file content accepted by execute, in bytes."
    )
    rate_limit_per_minute: int = Field(
        600, ge=1, description="Requests per minute and user before 429 (token bucket)."
    )
    rate_limit_burst: int = Field(60, ge=1, description="Requests a user may make at once.")
    inprocess_commits: bool = Field(
        True,
        description=(
            "Commit the files an execute wrote inside the sandbox's own process with libgit2 "
            "(pygit2), not with git processes: the faster path (docs/performance.md). False "
            "commits through the git CLI (GitPython), several processes per edit, to compare "
            "the two or to rule the in-process path out when debugging."
        ),
    )

    # -- limits (docs/limits.md) --
    max_request_bytes: int = Field(
        5 * 1024 * 1024,
        ge=1024,
        description=(
            "Largest HTTP request body, in bytes: a larger one is answered 413 before it is "
            "parsed or its caller authenticated (its Content-Length is checked first, a "
            "chunked body is counted as it arrives)."
        ),
    )
    ws_max_message_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest WebSocket message a client may send; a larger one closes it (1009).",
    )
    ws_messages_per_second: float = Field(
        20.0, gt=0, description="Messages a second one WebSocket client may send (token bucket)."
    )
    ws_message_burst: int = Field(
        60, ge=1, description="Messages one WebSocket client may send at once; past it, 4429."
    )
    address_rate_limit_per_minute: int = Field(
        1200,
        ge=1,
        description=(
            "Requests (and WebSocket connects) a minute from one client address, counted "
            "before authentication, per API replica; past it, 429."
        ),
    )
    address_rate_limit_burst: int = Field(
        300, ge=1, description="Requests one client address may make at once."
    )
    auth_failures_per_minute: int = Field(
        30,
        ge=1,
        description=(
            "Unknown tokens a minute one client address may present, per replica; past it "
            "its requests with unknown tokens get 429 without a lookup at the manager."
        ),
    )
    auth_failure_burst: int = Field(
        10, ge=1, description="Unknown tokens one client address may present at once."
    )
    max_sandboxes_per_user: int = Field(
        10,
        ge=0,
        description="Live sandboxes one (non-admin) user may have; 0: no limit.",
    )
    sandbox_disk_quota_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=0,
        description=(
            "Bytes a sandbox's worktree may hold (its files, not .git, .studio or "
            "node_modules); a write past it is refused. 0: no limit."
        ),
    )

    _split_roots = field_validator("repo_roots", mode="before")(_split_paths)

    @field_validator("vite_port")
    @classmethod
    def _port_in_range(cls, value: int, info: Any) -> int:
        return _check_port(value, info.field_name)

    @field_validator("ws_port")
    @classmethod
    def _service_port(cls, value: int) -> int:
        return _check_service_port(value)

    @field_validator("ws_direct_port")
    @classmethod
    def _port_or_off(cls, value: int) -> int:
        return value if value == 0 else _check_service_port(value)

    @model_validator(mode="after")
    def _range_below_ray(self) -> StudioSettings:
        last = self.vite_port + self.vite_port_count - 1
        if last >= RAY_WORKER_PORT_MIN:
            raise ValueError(
                f"the Vite port range {self.vite_port}-{last} reaches Ray's worker ports "
                f"({RAY_WORKER_PORT_MIN} and up); lower vite_port or vite_port_count"
            )
        return self

    def default_config(self) -> ComponentStudioConfig:
        """The sandbox config these settings imply, before repository overrides."""
        return ComponentStudioConfig(
            vite_port=self.vite_port,
            websocket_port=self.ws_port,
            timeout_hours=self.timeout_hours,
            max_restarts=self.max_restarts,
            health_check_interval=self.health_check_interval,
        )

    def boundary(self) -> Boundary:
        """The boundary this node's Vites run in (the ``isolation`` setting)."""
        return Boundary.for_node(
            self.isolation,
            install_cache=StateLayout(self.state_dir).install_cache,
            template_dir=self.template_dir,
        )


def load_settings(**overrides: Any) -> StudioSettings:
    """Settings from the environment, with keyword overrides on top."""
    return StudioSettings(**overrides)
