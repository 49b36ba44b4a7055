"""The one exception tree of Component Studio.

Every error the service raises on purpose is a :class:`StudioError`. Each class
carries a stable machine-readable ``code`` (what API clients switch on) and a
message that says what was wrong and what to do. HTTP statuses are assigned in
one place, ``serve/errors.py``, from the class.

::

    StudioError
    ├── NotFound
    │   ├── SandboxNotFound
    │   ├── RepositoryNotFound
    │   └── CommitNotFound
    ├── InvalidRequest
    │   ├── PathNotAllowed
    │   ├── InvalidConfig
    │   └── PayloadTooLarge
    ├── InvalidState
    │   └── PreparationFailed
    ├── Conflict
    │   └── BranchExists
    ├── GitError
    │   ├── GitLocked
    │   ├── RollbackOutOfRange
    │   ├── MissingBaseBranch
    │   ├── CorruptRepository
    │   └── GitRemoteError
    ├── ProcessError
    │   ├── ProcessStartError
    │   │   └── ViteStartError
    │   ├── PortInUse
    │   └── RestartLimitExceeded
    ├── Unauthenticated
    ├── PermissionDenied
    │   └── QuotaExceeded
    ├── RateLimited
    ├── PullRequestError
    └── ServiceUnavailable

Exceptions cross Ray process boundaries by pickling, so every class keeps its
constructor arguments in ``args`` and ``details`` and reduces to them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BranchExists",
    "CommitNotFound",
    "Conflict",
    "CorruptRepository",
    "GitError",
    "GitLocked",
    "GitRemoteError",
    "InvalidConfig",
    "InvalidRequest",
    "InvalidState",
    "MissingBaseBranch",
    "NotFound",
    "PathNotAllowed",
    "PayloadTooLarge",
    "PermissionDenied",
    "PortInUse",
    "PreparationFailed",
    "ProcessError",
    "ProcessStartError",
    "PullRequestError",
    "QuotaExceeded",
    "RateLimited",
    "RepositoryNotFound",
    "RestartLimitExceeded",
    "RollbackOutOfRange",
    "SandboxNotFound",
    "ServiceUnavailable",
    "StudioError",
    "Unauthenticated",
    "ViteStartError",
]


class StudioError(Exception):
    """Base of every error Component Studio raises on purpose.

    ``message`` is for people; ``code`` is for programs; ``details`` holds
    structured context (a state name, a port, the last lines of output) that
    API responses may include.
    """

    code = "studio_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword details do not survive the default pickling of exceptions.
        return (_rebuild, (type(self), self.message, self.details))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[StudioError], message: str, details: dict[str, Any]) -> StudioError:
    error = cls.__new__(cls)
    StudioError.__init__(error, message, **details)
    return error


class NotFound(StudioError):
    """Something the caller named does not exist (or is not theirs to see)."""

    code = "not_found"


class SandboxNotFound(NotFound):
    """No sandbox with that id exists for this caller."""

    code = "sandbox_not_found"


class RepositoryNotFound(NotFound):
    """No repository with that id or name is registered."""

    code = "repository_not_found"


class CommitNotFound(NotFound):
    """The commit hash does not name a commit of the sandbox's branch."""

    code = "commit_not_found"


class InvalidRequest(StudioError):
    """The request is malformed or asks for something that is never allowed."""

    code = "invalid_request"


class PathNotAllowed(InvalidRequest):
    """A file path escapes the worktree or names a protected location."""

    code = "path_not_allowed"


class InvalidConfig(InvalidRequest):
    """A configuration value is out of range or malformed."""

    code = "invalid_config"


class PayloadTooLarge(InvalidRequest):
    """File content or a request body exceeds the configured size limit."""

    code = "payload_too_large"


class InvalidState(StudioError):
    """The operation is not allowed in the object's current state.

    ``details["state"]`` names the state it is in.
    """

    code = "invalid_state"


class PreparationFailed(InvalidState):
    """The repository's preparation failed on the node a sandbox would go to.

    ``details["preparation"]`` is that node's preparation (step, error, the
    failing tool's last lines of output); an admin retries it with
    ``POST /api/v1/repositories/{id}/prepare`` once the cause is fixed.
    """

    code = "preparation_failed"


class Conflict(StudioError):
    """The operation would overwrite something that already exists."""

    code = "conflict"


class BranchExists(Conflict):
    """A branch with the derived name already exists; it is never overwritten."""

    code = "branch_exists"


class GitError(StudioError):
    """A git operation failed; the message says what git said and what to do."""

    code = "git_error"


class GitLocked(GitError):
    """A lock file (``index.lock``, a locked worktree) blocks the repository."""

    code = "git_locked"


class RollbackOutOfRange(GitError):
    """A rollback target lies outside the sandbox's commits since its base."""

    code = "rollback_out_of_range"


class MissingBaseBranch(GitError):
    """The base branch to start a sandbox from does not exist in the repository."""

    code = "missing_base_branch"


class CorruptRepository(GitError):
    """The node-local mirror or a worktree is damaged and must be recreated."""

    code = "corrupt_repository"


class GitRemoteError(GitError):
    """Fetching from or pushing to a remote failed."""

    code = "git_remote_error"


class ProcessError(StudioError):
    """A supervised child process could not be started, kept or stopped."""

    code = "process_error"


class ProcessStartError(ProcessError):
    """A child process exited or never became ready while starting.

    ``details["output"]`` holds its last lines of output.
    """

    code = "process_start_error"


class ViteStartError(ProcessStartError):
    """The Vite dev server did not become healthy in time."""

    code = "vite_start_error"


class PortInUse(ProcessError):
    """A port needed by a child process is taken and no other was free."""

    code = "port_in_use"


class RestartLimitExceeded(ProcessError):
    """A process failed more often than ``max_restarts`` allows."""

    code = "restart_limit_exceeded"


class Unauthenticated(StudioError):
    """No token, or a token that maps to no user."""

    code = "unauthenticated"


class PermissionDenied(StudioError):
    """The caller (or the service's GitHub token) may not do this."""

    code = "permission_denied"


class QuotaExceeded(PermissionDenied):
    """A per-user or per-sandbox quota is used up; ``details`` name it and its ``limit``."""

    code = "quota_exceeded"


class RateLimited(StudioError):
    """Too many requests; ``details["retry_after"]`` says how many seconds to wait."""

    code = "rate_limited"


class PullRequestError(StudioError):
    """The forge refused to open the pull request; the message quotes its answer."""

    code = "pull_request_error"


class ServiceUnavailable(StudioError):
    """A part of the service (the manager, Ray) is restarting; retry shortly."""

    code = "service_unavailable"
