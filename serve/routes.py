"""The routes: parse, call the manager or the sandbox's actor, serialize.

Control-plane calls (create, list, teardown, finalize, repositories, users)
go to the manager; data-plane calls (execute, rollback, commits, components,
logs, events) go straight to the sandbox's actor after the cached ownership
check. Errors are raised, never rendered here: ``serve.errors`` maps them.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, WebSocket

from serve.auth import bearer_token, require_admin
from serve.errors import status_for
from serve.event_stream import serve_events
from serve.limits import client_address
from serve.renderer_proxy import renderer_url_for
from serve.replica import Replica
from serve.schemas import (
    CreatedUser,
    CreateSandboxRequest,
    CreateSandboxResponse,
    CreateUserRequest,
    FinalizeRequest,
    HealthResponse,
    LogsResponse,
    ReadinessResponse,
    RegisterRepositoryRequest,
    RepositoryAccessRequest,
    RepositoryView,
    RollbackRequest,
    SandboxStatus,
    UserGroupsRequest,
)
from serve.websocket import close
from studio.commands import ExecuteCommand, ExecuteResult, WriteFile, WriteFiles
from studio.errors import PayloadTooLarge, RateLimited, StudioError
from studio.models import CommitInfo, FinalizeResult, RollbackResult, SandboxInfo, UserInfo
from studio.store import RepositoryRecord

__all__ = [
    "check_sizes",
    "current_user",
    "execute_url",
    "get_replica",
    "router",
    "websocket_url",
]

PREFIX = "/api/v1"
router = APIRouter()


# async although it awaits nothing: FastAPI runs a plain ``def`` dependency in its
# thread pool, a hop to another thread and back on every request.
async def get_replica(request: Request) -> Replica:
    """The replica state the app was built with."""
    return cast(Replica, request.app.state.replica)


ReplicaDep = Annotated[Replica, Depends(get_replica)]


def _check_rate(replica: Replica, user: UserInfo) -> None:
    wait = replica.limiter.check(user.name)
    if wait > 0:
        raise RateLimited(
            f"too many requests from {user.name!r}: the limit is "
            f"{replica.limiter.per_minute} a minute (bursts of {replica.limiter.burst}); "
            f"retry in {wait:.1f} s",
            retry_after=wait,
        )


async def current_user(request: Request, replica: ReplicaDep) -> UserInfo:
    """The caller, from its bearer token; counted against its rate limit."""
    user = await replica.auth.user(
        bearer_token(request.headers.get("authorization")), client_address(request.scope)
    )
    _check_rate(replica, user)
    return user


async def admin_user(user: Annotated[UserInfo, Depends(current_user)]) -> UserInfo:
    """The caller, who must be an admin."""
    return require_admin(user)


User = Annotated[UserInfo, Depends(current_user)]
Admin = Annotated[UserInfo, Depends(admin_user)]


def websocket_url(request: Request | WebSocket, replica: Replica, sandbox_id: str) -> str:
    """Where a client reaches the sandbox's stream (see :func:`_direct_or_api`)."""
    return _direct_or_api(request, replica, f"{PREFIX}/sandboxes/{sandbox_id}/ws", websocket=True)


def execute_url(request: Request | WebSocket, replica: Replica, sandbox_id: str) -> str:
    """Where a client sends the sandbox's edits (see :func:`_direct_or_api`)."""
    return _direct_or_api(request, replica, f"{PREFIX}/sandboxes/{sandbox_id}/execute")


async def renderer_url_of(request: Request, replica: Replica, info: SandboxInfo) -> str | None:
    """The caller's way into the sandbox's renderer: the proxy's URL with a fresh ticket
    (serve.renderer_proxy), None while the sandbox has no running Vite. Only owners
    (and admins) get this far."""
    if info.renderer_url is None:
        return None
    # Served where the execute_url is: the replica's own listener, or the API's port.
    base = _direct_or_api(request, replica, "")
    return renderer_url_for(base, await replica.service_secret(), info.id)


def _direct_or_api(
    request: Request | WebSocket, replica: Replica, path: str, *, websocket: bool = False
) -> str:
    """``path`` on the replica's own listener, or on the host the client reached the API on.

    The listener when the replica has one (``serve.direct``: no proxy between
    the client and the replica) and the client spoke plain HTTP; a client
    behind TLS keeps the TLS port.
    """
    forwarded = request.headers.get("x-forwarded-proto", request.url.scheme)
    secure = forwarded in ("https", "wss")
    direct = replica.direct
    if direct is not None and not secure:
        base = direct.base_url if websocket else direct.http_base_url
        if base is not None:
            return f"{base}{path}"
    scheme = ("wss" if secure else "ws") if websocket else ("https" if secure else "http")
    settings = replica.settings
    host = request.headers.get("host") or f"{settings.public_host}:{settings.ws_port}"
    return f"{scheme}://{host}{path}"


# -- health -------------------------------------------------------------------


@router.get("/healthz", response_model=HealthResponse, tags=["health"])
async def healthz(replica: ReplicaDep) -> HealthResponse:
    """Liveness: this replica answers (always 200); ``manager`` says whether the manager does."""
    try:
        await replica.backend.manager("health", seconds=2.0)
    except StudioError:
        return HealthResponse(manager="unavailable")
    return HealthResponse(manager="ok")


@router.get(
    "/readyz",
    response_model=ReadinessResponse,
    tags=["health"],
    responses={
        503: {
            "model": ReadinessResponse,
            "description": "Not ready yet: `waiting_for` says what is missing.",
        }
    },
)
async def readyz(replica: ReplicaDep, response: Response) -> ReadinessResponse:
    """Readiness: 200 once the manager answers and the repositories the service needs are
    registered (``ready_repositories``), 503 saying what is missing until then."""
    registered: set[str] | None
    try:
        records: list[RepositoryRecord] = await replica.backend.manager(
            "list_repositories", seconds=2.0
        )
    except StudioError:
        registered = None
    else:
        registered = {record.name for record in records}
    readiness = ReadinessResponse.of(replica.options.ready_repositories, registered)
    if readiness.status != "ready":
        response.status_code = 503
    return readiness


# -- sandboxes: control plane ---------------------------------------------------


@router.post(
    f"{PREFIX}/sandboxes",
    status_code=201,
    response_model=CreateSandboxResponse,
    tags=["sandboxes"],
    responses={
        202: {
            "model": CreateSandboxResponse,
            "description": "With `wait=false`: the sandbox is starting; follow its setup "
            "steps on `websocket_url` (status events) or poll its status.",
        }
    },
)
async def create_sandbox(
    body: CreateSandboxRequest,
    request: Request,
    response: Response,
    user: User,
    replica: ReplicaDep,
    wait: Annotated[
        bool,
        Query(description="Answer when the sandbox is running (201), or at once (202)."),
    ] = True,
) -> CreateSandboxResponse:
    """Create a sandbox on a registered repository; answers when it is running.

    With ``wait=false`` it answers 202 once the sandbox is starting, and the
    setup goes on: its WebSocket says each step (mirror, worktree, install, vite).
    """
    info: SandboxInfo = await replica.backend.manager(
        "create_sandbox",
        user.name,
        body.repository_id,
        body.overrides,
        wait,
        is_admin=user.is_admin,
        seconds=900.0,
    )
    replica.backend.remember_owner(info.id, user.name)
    if not wait:
        response.status_code = 202
    return CreateSandboxResponse(
        sandbox_id=info.id,
        renderer_url=await renderer_url_of(request, replica, info),
        websocket_url=websocket_url(request, replica, info.id),
        execute_url=execute_url(request, replica, info.id),
        branch=info.branch,
        status=info.status,
    )


@router.get(f"{PREFIX}/sandboxes", response_model=list[SandboxStatus], tags=["sandboxes"])
async def list_sandboxes(
    request: Request, user: User, replica: ReplicaDep, include_ended: bool = False
) -> list[SandboxStatus]:
    """The caller's sandboxes (ended ones with ``include_ended=true``)."""
    infos: list[SandboxInfo] = await replica.backend.manager(
        "list_sandboxes", user.name, include_ended
    )
    return [
        SandboxStatus.of(
            i,
            websocket_url(request, replica, i.id),
            execute_url(request, replica, i.id),
            await renderer_url_of(request, replica, i),
        )
        for i in infos
    ]


@router.get(f"{PREFIX}/sandboxes/{{sandbox_id}}", response_model=SandboxStatus, tags=["sandboxes"])
async def get_sandbox(
    sandbox_id: str, request: Request, user: User, replica: ReplicaDep
) -> SandboxStatus:
    """A sandbox's status, commits and URLs."""
    await replica.backend.authorize(user, sandbox_id)
    info: SandboxInfo = await replica.backend.manager("get_sandbox", sandbox_id, None)
    return SandboxStatus.of(
        info,
        websocket_url(request, replica, sandbox_id),
        execute_url(request, replica, sandbox_id),
        await renderer_url_of(request, replica, info),
    )


@router.delete(
    f"{PREFIX}/sandboxes/{{sandbox_id}}", response_model=SandboxStatus, tags=["sandboxes"]
)
async def delete_sandbox(
    sandbox_id: str, request: Request, user: User, replica: ReplicaDep
) -> SandboxStatus:
    """Tear the sandbox down; its branch and commits are kept."""
    await replica.backend.authorize(user, sandbox_id)
    info: SandboxInfo = await replica.backend.manager(
        "teardown_sandbox", sandbox_id, None, seconds=300.0
    )
    replica.backend.forget(sandbox_id)
    return SandboxStatus.of(info, None)


@router.post(
    f"{PREFIX}/sandboxes/{{sandbox_id}}/finalize",
    response_model=FinalizeResult,
    tags=["sandboxes"],
)
async def finalize_sandbox(
    sandbox_id: str, body: FinalizeRequest, user: User, replica: ReplicaDep
) -> FinalizeResult:
    """Push the branch, open a pull request with every commit (and, with ``images``, the
    touched stories before and after), end the sandbox."""
    await replica.backend.authorize(user, sandbox_id)
    result: FinalizeResult = await replica.backend.manager(
        "finalize_sandbox",
        sandbox_id,
        None,
        body.title,
        body.description,
        body.images,
        seconds=900.0,
    )
    replica.backend.forget(sandbox_id)
    return result


# -- sandboxes: data plane ------------------------------------------------------


def check_sizes(command: ExecuteCommand, limit: int) -> None:
    """PayloadTooLarge for a written file over ``limit`` bytes (``max_file_bytes``)."""
    if isinstance(command, WriteFile):
        files = [(command.file_path, command.content)]
    elif isinstance(command, WriteFiles):
        files = [(f.file_path, f.content) for f in command.files]
    else:
        return
    for path, content in files:
        size = len(content.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise PayloadTooLarge(
                f"{path}: content of {size} bytes exceeds the limit of {limit} bytes",
                size=size,
                limit=limit,
            )


@router.post(
    f"{PREFIX}/sandboxes/{{sandbox_id}}/execute",
    response_model=ExecuteResult,
    tags=["sandboxes"],
)
async def execute(
    sandbox_id: str,
    command: Annotated[ExecuteCommand, Body()],
    user: User,
    replica: ReplicaDep,
) -> ExecuteResult:
    """Write, delete, read or list files; every write is a commit.

    With ``"wait": "render"`` a write or delete answers once the stories it
    touched re-rendered in the node's browser, their verdict in ``render``;
    ``"wait": "screenshot"`` also links each rendered story's picture
    (``screenshot_url``, taken on the verdict's page and cached).
    """
    await replica.backend.authorize(user, sandbox_id)
    check_sizes(command, replica.settings.max_file_bytes)
    result: ExecuteResult = await replica.backend.sandbox(
        sandbox_id, "execute", command.model_dump()
    )
    return result


@router.post(
    f"{PREFIX}/sandboxes/{{sandbox_id}}/rollback",
    response_model=RollbackResult,
    tags=["sandboxes"],
)
async def rollback(
    sandbox_id: str, body: RollbackRequest, user: User, replica: ReplicaDep
) -> RollbackResult:
    """Move the branch back to a commit or by steps, or undo the last rollback."""
    await replica.backend.authorize(user, sandbox_id)
    result: RollbackResult = await replica.backend.sandbox(
        sandbox_id,
        "rollback",
        commit_hash=body.commit_hash,
        steps=body.steps,
        undo=body.undo,
        wait=body.wait,
    )
    return result


@router.get(
    f"{PREFIX}/sandboxes/{{sandbox_id}}/commits",
    response_model=list[CommitInfo],
    tags=["sandboxes"],
)
async def commits(
    sandbox_id: str,
    user: User,
    replica: ReplicaDep,
    count: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[CommitInfo]:
    """The branch's commits, newest first, down to the base commit."""
    await replica.backend.authorize(user, sandbox_id)
    history: list[CommitInfo] = await replica.backend.sandbox(sandbox_id, "history", count)
    return history


@router.get(f"{PREFIX}/sandboxes/{{sandbox_id}}/components", tags=["sandboxes"])
async def components(sandbox_id: str, user: User, replica: ReplicaDep) -> dict[str, Any]:
    """The studio app's component index (what the renderer lists)."""
    await replica.backend.authorize(user, sandbox_id)
    index: dict[str, Any] = await replica.backend.sandbox(sandbox_id, "components")
    return index


@router.get(
    f"{PREFIX}/sandboxes/{{sandbox_id}}/logs", response_model=LogsResponse, tags=["sandboxes"]
)
async def logs(
    sandbox_id: str,
    user: User,
    replica: ReplicaDep,
    lines: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> LogsResponse:
    """The last lines of the sandbox's Vite output."""
    await replica.backend.authorize(user, sandbox_id)
    return LogsResponse(lines=await replica.backend.sandbox(sandbox_id, "logs", lines))


@router.websocket(f"{PREFIX}/sandboxes/{{sandbox_id}}/ws")
async def sandbox_events(websocket: WebSocket, sandbox_id: str, since: int | None = None) -> None:
    """The sandbox's live events: a hello, what was missed since ``since``, then live.

    Token: ``Authorization: Bearer`` or ``?token=`` (browsers cannot set
    headers on a WebSocket). A refusal is a close with code 4000 + the HTTP
    status (4401, 4404, 4409, 4429, 4503) and the reason.
    """
    replica: Replica = websocket.app.state.replica
    token = bearer_token(websocket.headers.get("authorization")) or websocket.query_params.get(
        "token"
    )
    try:
        user = await replica.auth.user(token, client_address(websocket.scope))
        _check_rate(replica, user)
        await replica.backend.authorize(user, sandbox_id)
    except StudioError as exc:
        await websocket.accept()
        await close(websocket, 4000 + status_for(exc), exc.message)
        return
    await serve_events(websocket, replica, sandbox_id, since)


# -- repositories and users (admin) --------------------------------------------


@router.post(
    f"{PREFIX}/repositories",
    status_code=201,
    response_model=RepositoryRecord,
    tags=["repositories"],
)
async def register_repository(
    body: RegisterRepositoryRequest, _admin: Admin, replica: ReplicaDep
) -> RepositoryRecord:
    """Register a local repository under an allowed root, or a GitHub one."""
    record: RepositoryRecord = await replica.backend.manager(
        "register_repository",
        body.name,
        seconds=300.0,
        path=body.path,
        github=body.github,
        clone_url=body.clone_url,
        default_branch=body.default_branch,
        config=body.sandbox_config(),
    )
    return record


@router.get(f"{PREFIX}/repositories", response_model=list[RepositoryView], tags=["repositories"])
async def list_repositories(user: User, replica: ReplicaDep) -> list[RepositoryView]:
    """The registered repositories the caller may use (sandboxes are created on their ids),
    with their preparation; ``source`` and ``access`` are shown to admins only."""
    records: list[RepositoryRecord] = await replica.backend.manager(
        "list_repositories", user.name, user.is_admin
    )
    return [RepositoryView.of(record, is_admin=user.is_admin) for record in records]


RepositoryId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The repository's id.")]


@router.get(
    f"{PREFIX}/repositories/{{repository_id}}",
    response_model=RepositoryView,
    tags=["repositories"],
)
async def get_repository(
    repository_id: RepositoryId, user: User, replica: ReplicaDep
) -> RepositoryView:
    """One registered repository and its preparation (``preparing | ready | failed``, the
    step, per node, and on failure the failing tool's output); 403 when the caller has
    no access to it."""
    record: RepositoryRecord = await replica.backend.manager(
        "get_repository", repository_id, user.name, user.is_admin
    )
    return RepositoryView.of(record, is_admin=user.is_admin)


@router.put(
    f"{PREFIX}/repositories/{{repository_id}}/access",
    response_model=RepositoryView,
    tags=["repositories"],
)
async def set_repository_access(
    repository_id: RepositoryId, body: RepositoryAccessRequest, _admin: Admin, replica: ReplicaDep
) -> RepositoryView:
    """Restrict the repository to these users and groups (and the admins); replaces its
    grants. Sandboxes already made on it stay their owners'."""
    record: RepositoryRecord = await replica.backend.manager(
        "set_repository_access", repository_id, body.model_dump()
    )
    return RepositoryView.of(record, is_admin=True)


@router.delete(
    f"{PREFIX}/repositories/{{repository_id}}/access",
    response_model=RepositoryView,
    tags=["repositories"],
)
async def open_repository_access(
    repository_id: RepositoryId, _admin: Admin, replica: ReplicaDep
) -> RepositoryView:
    """Open the repository to every user again (its grants are dropped)."""
    record: RepositoryRecord = await replica.backend.manager(
        "set_repository_access", repository_id, None
    )
    return RepositoryView.of(record, is_admin=True)


@router.post(
    f"{PREFIX}/repositories/{{repository_id}}/prepare",
    status_code=202,
    response_model=RepositoryRecord,
    tags=["repositories"],
)
async def prepare_repository(
    repository_id: RepositoryId, _admin: Admin, replica: ReplicaDep
) -> RepositoryRecord:
    """Prepare the repository again where its preparation failed or is done (after fixing
    its cause); a preparation under way goes on. Answers at once: follow it on GET."""
    record: RepositoryRecord = await replica.backend.manager(
        "prepare_repository", repository_id, seconds=60.0
    )
    return record


@router.post(f"{PREFIX}/users", status_code=201, response_model=CreatedUser, tags=["users"])
async def create_user(body: CreateUserRequest, _admin: Admin, replica: ReplicaDep) -> CreatedUser:
    """Create a user; its token is in this answer and nowhere else."""
    user, token = await replica.backend.manager(
        "create_user", body.name, body.is_admin, body.groups
    )
    return CreatedUser(
        name=user.name,
        is_admin=user.is_admin,
        created_at=user.created_at,
        groups=user.groups,
        token=token,
    )


@router.put(f"{PREFIX}/users/{{name}}/groups", response_model=UserInfo, tags=["users"])
async def set_user_groups(
    name: str, body: UserGroupsRequest, _admin: Admin, replica: ReplicaDep
) -> UserInfo:
    """Replace a user's groups; repository grants to groups follow at once."""
    user: UserInfo = await replica.backend.manager("set_user_groups", name, body.groups)
    replica.auth.forget_user(name)
    return user


@router.get(f"{PREFIX}/users", response_model=list[UserInfo], tags=["users"])
async def list_users(_admin: Admin, replica: ReplicaDep) -> list[UserInfo]:
    """Every user (never a token)."""
    users: list[UserInfo] = await replica.backend.manager("list_users")
    return users


@router.delete(f"{PREFIX}/users/{{name}}", status_code=204, tags=["users"])
async def delete_user(name: str, _admin: Admin, replica: ReplicaDep) -> Response:
    """Delete a user; its token stops working."""
    await replica.backend.manager("delete_user", name)
    replica.auth.forget_user(name)
    return Response(status_code=204)
