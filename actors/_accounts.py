"""Users, tokens and repositories: the manager's registry work that needs no Ray.

The admin token comes from the settings or, when unset, is generated once and
kept beside the registry (``<state_dir>/admin-token``, mode 0600) so that a
restarted manager keeps handing out the same one; the registry itself stores
only token hashes.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from actors._repositories import (
    check_local_repository,
    check_package_dir,
    check_remote_repository,
)
from studio.config import ComponentStudioConfig, StudioSettings
from studio.errors import Conflict, InvalidConfig, InvalidRequest, NotFound, PermissionDenied
from studio.layout import StateLayout
from studio.models import UserInfo
from studio.pr import GitHubProvider
from studio.sandbox_overrides import check_overrides
from studio.store import Registry, RepositoryAccess, RepositoryRecord, UserRecord
from studio.store.records import validation_message
from studio.viewer import viewer_token

__all__ = [
    "ADMIN_USER",
    "USER_TOKEN_PREFIX",
    "Accounts",
    "load_secret",
    "provider_spec",
    "resolve_admin_token",
    "user_info",
]

logger = logging.getLogger(__name__)

ADMIN_USER = "admin"
_TOKEN_BYTES = 32
# Tells a user token at a glance (and to secret scanners), like the viewer
# tokens' ``sv_``; and a token never starts with "-", which a command line
# (`studio --token T`) would take for an option.
USER_TOKEN_PREFIX = "st_"
# A granted push permission is trusted this long before GitHub is asked again.
PUSH_CHECK_TTL = 300.0


def user_info(record: UserRecord) -> UserInfo:
    """The API's view of a user (no token hash)."""
    return UserInfo(
        name=record.name,
        is_admin=record.is_admin,
        created_at=record.created_at,
        groups=record.groups,
    )


def provider_spec(settings: StudioSettings, github: str | None) -> dict[str, Any] | None:
    """How a sandbox opens its PR: GitHub, else None (local origin).

    Without the token: the sandbox asks the manager for it when it pushes or
    opens the pull request (``ManagerActor.push_credential``).
    """
    if github and settings.github_token:
        return {"kind": "github", "base_url": settings.github_api_url}
    return None


def load_secret(directory: Path, name: str, *, prefix: str = "") -> str:
    """A secret kept in ``directory`` (beside the registry), generated on first use."""
    path = directory / name
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    secret = prefix + secrets.token_urlsafe(_TOKEN_BYTES)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{name}.tmp")
    # Created 0600 from the start: never readable by others, even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    tmp.replace(path)
    logger.info("secret generated", extra={"path": str(path)})
    return secret


def resolve_admin_token(settings: StudioSettings) -> str:
    """The admin's token: the settings' own, else the one kept beside the registry.

    For ``studio up``, which prints it and hands it to the manager in its
    settings: no remote method returns the admin token.
    """
    if settings.admin_token:
        return settings.admin_token
    directory = StateLayout(settings.state_dir).registry.parent
    return load_secret(directory, "admin-token", prefix=USER_TOKEN_PREFIX)


class Accounts:
    """Users and repositories of one registry, under the service's settings."""

    def __init__(self, registry: Registry, settings: StudioSettings) -> None:
        self._registry = registry
        self._settings = settings
        self._admin_token = self._load_admin_token()
        self._viewer_secret = self._load_secret("viewer-secret")
        self._push_checked: dict[str, float] = {}
        # Tokens looked up since the start (the manager's health shows it): what
        # unauthenticated traffic costs the manager, for operators and tests.
        self.token_lookups = 0
        self._ensure_admin()

    # -- users ------------------------------------------------------------

    def _load_admin_token(self) -> str:
        if self._settings.admin_token:
            return self._settings.admin_token
        return load_secret(self._registry.path.parent, "admin-token", prefix=USER_TOKEN_PREFIX)

    def _load_secret(self, name: str, *, prefix: str = "") -> str:
        return load_secret(self._registry.path.parent, name, prefix=prefix)

    def _ensure_admin(self) -> None:
        current = self._registry.user_for_token(self._admin_token)
        if current is not None and current.name == ADMIN_USER and current.is_admin:
            return
        # The configured token changed since the admin was created: replace the user.
        if any(user.name == ADMIN_USER for user in self._registry.list_users()):
            self._registry.remove_user(ADMIN_USER)
        self._registry.add_user(ADMIN_USER, self._admin_token, is_admin=True)

    @property
    def admin_token(self) -> str:
        """The admin user's bearer token."""
        return self._admin_token

    @property
    def viewer_secret(self) -> str:
        """The secret sandboxes' viewer tokens derive from (studio.viewer)."""
        return self._viewer_secret

    def viewer_token(self, sandbox_id: str) -> str:
        """The token a sandbox's studio page opens its event stream with."""
        return viewer_token(self._viewer_secret, sandbox_id)

    def authenticate(self, token: str) -> UserInfo | None:
        """The user whose token this is, or None."""
        self.token_lookups += 1
        record = self._registry.user_for_token(token)
        return None if record is None else user_info(record)

    def create_user(
        self, name: str, is_admin: bool = False, groups: Sequence[str] = ()
    ) -> tuple[UserInfo, str]:
        """A new user and their token (shown this once; only its hash is kept)."""
        token = USER_TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
        record = self._registry.add_user(name, token, is_admin=is_admin, groups=groups)
        return user_info(record), token

    def set_user_groups(self, name: str, groups: Sequence[str]) -> UserInfo:
        """Replace a user's groups (what repository grants to groups see of them)."""
        return user_info(self._registry.set_user_groups(name, groups))

    # -- repository access (docs/security.md, repository access) ------------

    def _groups_of(self, name: str) -> list[str]:
        user = self._registry.get_user(name)
        return [] if user is None else user.groups

    def repositories_for(self, name: str, is_admin: bool) -> list[RepositoryRecord]:
        """The repositories ``name`` may use: all for an admin."""
        records = self._registry.list_repositories()
        if is_admin:
            return records
        groups = self._groups_of(name)
        return [r for r in records if r.access is None or r.access.allows(name, groups)]

    def check_repository_access(
        self, repository_id: int, name: str, is_admin: bool
    ) -> RepositoryRecord:
        """The repository, when ``name`` may use it; :class:`PermissionDenied` naming the
        grant to ask for otherwise (:class:`RepositoryNotFound` when there is none)."""
        record = self._registry.get_repository(repository_id)
        if is_admin or record.access is None:
            return record
        if not record.access.allows(name, self._groups_of(name)):
            raise PermissionDenied(
                f"user {name!r} has no access to repository {repository_id} "
                f"({record.name!r}): an admin grants it to the user or one of their groups "
                f"(PUT /api/v1/repositories/{repository_id}/access)",
                repository_id=repository_id,
            )
        return record

    def set_repository_access(
        self, repository_id: int, access: dict[str, Any] | None
    ) -> RepositoryRecord:
        """Restrict a repository to ``access`` ({"users": [...], "groups": [...]}), or open
        it to every user (None)."""
        if access is None:
            return self._registry.set_repository_access(repository_id, None)
        try:
            checked = RepositoryAccess.model_validate(access)
        except ValidationError as exc:
            raise InvalidRequest(f"invalid access: {validation_message(exc)}") from exc
        return self._registry.set_repository_access(repository_id, checked)

    def list_users(self) -> list[UserInfo]:
        """Every user, by name."""
        return [user_info(record) for record in self._registry.list_users()]

    def delete_user(self, name: str) -> None:
        """Remove a user (their sandboxes stay); the admin cannot be removed."""
        if name == ADMIN_USER:
            raise InvalidRequest(
                "the admin user cannot be deleted; change COMPONENT_STUDIO_ADMIN_TOKEN to "
                "replace its token"
            )
        if not any(user.name == name for user in self._registry.list_users()):
            raise NotFound(f"no user named {name!r}", name=name)
        self._registry.remove_user(name)

    # -- repositories -----------------------------------------------------

    def register_repository(
        self,
        name: str,
        *,
        path: str | None = None,
        github: str | None = None,
        clone_url: str | None = None,
        default_branch: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> RepositoryRecord:
        """Check and register a repository (see :mod:`actors._repositories`)."""
        if not name or not name.strip():
            raise InvalidRequest("a repository needs a name")
        if path is None and clone_url is None and github is None:
            raise InvalidRequest("give a repository a local path, a clone_url or a github name")
        if path is not None and clone_url is not None:
            raise InvalidRequest("give a repository a local path or a clone_url, not both")
        if self._registry.find_repository(name) is not None:
            raise Conflict(f"a repository named {name!r} is already registered", name=name)
        if path is not None:
            checked = check_local_repository(path, self._settings.repo_roots, default_branch)
        else:
            url = clone_url or f"https://github.com/{github}.git"
            checked = check_remote_repository(url, default_branch)
        config = self._checked_install_config(config, checked.source, checked.default_branch)
        if github is not None and self._settings.github_token:
            # Sandboxes of this repository push and open PRs: refuse it now, not at finalize.
            GitHubProvider.from_settings(self._settings).check_push_permission(github)
        return self._registry.add_repository(
            name,
            checked.source,
            github=github,
            default_branch=checked.default_branch,
            config=config,
        )

    def _checked_install_config(
        self, config: dict[str, Any] | None, source: str, branch: str
    ) -> dict[str, Any] | None:
        """``config`` with its ``package_dir`` normalised, once it is known to exist (else 400)."""
        if not config or "package_dir" not in config:
            return config
        try:
            checked = self._settings.default_config().with_overrides(
                {"package_dir": config["package_dir"]}
            )
        except ValidationError as exc:
            raise InvalidConfig(f"invalid repository config: {validation_message(exc)}") from None
        check_package_dir(source, branch, checked.package_dir)
        return {**config, "package_dir": checked.package_dir}

    def check_push_access(self, repository_id: int) -> None:
        """Refuse a sandbox whose branch could not be pushed (403 at create, not at finalize).

        Asks GitHub for repositories that have a forge and a configured token;
        a granted permission is remembered for :data:`PUSH_CHECK_TTL` seconds
        so creates do not each pay a round trip.
        """
        repository = self._registry.get_repository(repository_id)
        if repository.github is None or not self._settings.github_token:
            return
        checked_at = self._push_checked.get(repository.github)
        if checked_at is not None and time.monotonic() - checked_at < PUSH_CHECK_TTL:
            return
        GitHubProvider.from_settings(self._settings).check_push_permission(repository.github)
        self._push_checked[repository.github] = time.monotonic()

    def config_for(
        self, repository_id: int, overrides: dict[str, Any] | None
    ) -> ComponentStudioConfig:
        """A sandbox's effective config: settings, then the repository's, then ``overrides``.

        :class:`RepositoryNotFound` for an unknown id; :class:`InvalidConfig`
        naming the field for a bad override; :class:`PermissionDenied` for one
        only the repository's config may make (``studio.sandbox_overrides``).
        """
        repository = self._registry.get_repository(repository_id)
        check_overrides(
            overrides,
            repository=repository.name,
            default_branch=repository.default_branch,
            repository_config=repository.config,
        )
        try:
            return (
                self._settings.default_config()
                .with_overrides(
                    {"repository": repository.name, "branch": repository.default_branch}
                )
                .with_overrides(repository.config)
                .with_overrides(overrides)
            )
        except ValidationError as exc:
            raise InvalidConfig(f"invalid sandbox config: {validation_message(exc)}") from None

    def list_repositories(self) -> list[RepositoryRecord]:
        """Every registered repository."""
        return self._registry.list_repositories()
