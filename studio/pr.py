"""Pull requests: what finalizing a sandbox leaves on the forge.

Finalize is two steps: the git layer pushes ``design/studio-<id>`` to the
repository's remote, then a :class:`PullRequestProvider` opens the pull request.
This module only talks to the forge; it never runs git on a worktree.

- :class:`GitHubProvider` speaks GitHub's REST API through PyGithub (GitHub
  Enterprise: give its ``/api/v3`` base URL). It checks push permission when a
  sandbox is created, gives the git layer the URL and the environment (the
  token as an HTTP header, through GIT_CONFIG_* variables) it pushes with,
  and redacts the token from any text (git's error output) before it is shown.
- :class:`LocalProvider` is for a repository that is a local path (the embedded
  default): the branch is pushed to that origin and nothing more. Its result
  says so and carries no pull request URL or number.

:func:`build_pr_body` is a pure function: the description, every commit of the
branch, and a footer naming the sandbox.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from github import Auth, Github, GithubException, GithubRetry
from github.PullRequest import PullRequest
from github.Repository import Repository
from pydantic import BaseModel, ConfigDict

from studio.config import StudioSettings
from studio.errors import (
    InvalidConfig,
    InvalidRequest,
    PermissionDenied,
    PullRequestError,
    RepositoryNotFound,
    ServiceUnavailable,
    StudioError,
)
from studio.git import git_status
from studio.naming import branch_name

__all__ = [
    "DEFAULT_GITHUB_API_URL",
    "GITHUB_BODY_LIMIT",
    "CommitLike",
    "GitHubProvider",
    "LocalProvider",
    "PullRequestInfo",
    "PullRequestProvider",
    "build_pr_body",
]

logger = logging.getLogger(__name__)

DEFAULT_GITHUB_API_URL = "https://api.github.com"
# GitHub refuses a pull request body longer than this (422 "body is too long").
GITHUB_BODY_LIMIT = 65_536
REDACTED = "***"

_REPO_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
# Credentials in any URL git may echo, whoever's token it is.
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+@")
_ALREADY_EXISTS = "a pull request already exists"
# How much of GitHub's message an error quotes (an HTML error page can be long).
_MAX_QUOTED = 300
# What a refusal of GET /repos/{owner}/{name} means, by status.
_ACCESS_ERRORS: dict[int, tuple[type[StudioError], str]] = {
    401: (
        PermissionDenied,
        "GitHub rejected the token while checking access to {repo}: it is wrong, expired or "
        "revoked; set a valid COMPONENT_STUDIO_GITHUB_TOKEN",
    ),
    403: (
        PermissionDenied,
        "GitHub refused access to {repo}: the token may lack access to it (organization SSO, "
        "IP allow list) or a rate limit was hit",
    ),
    404: (
        RepositoryNotFound,
        "GitHub has no repository {repo} that the token can see: check the name, and that "
        "the token was granted this repository",
    ),
}
# Repository permissions GitHub reports, strongest first.
_PERMISSION_ORDER = ("admin", "maintain", "push", "triage", "pull")


class CommitLike(Protocol):
    """A commit as the git layer reports it; ``timestamp`` may also be present."""

    @property
    def hash(self) -> str: ...

    @property
    def message(self) -> str: ...


class PullRequestInfo(BaseModel):
    """What finalize left on the forge.

    ``url`` and ``number`` are None when no pull request was opened (a local
    repository has no forge); ``message`` says in words what happened.
    ``created`` is False when the pull request already existed.
    """

    model_config = ConfigDict(frozen=True)

    url: str | None
    number: int | None
    created: bool
    pushed_to: str
    message: str


class PullRequestProvider(Protocol):
    """The forge a sandbox's branch goes to when it is finalized.

    ``repository`` is ``owner/name`` for GitHub and the origin's path for a
    local repository.
    """

    def check_push_permission(self, repository: str) -> None:
        """Raise unless the service may push branches to ``repository``."""
        ...

    def open_pull_request(
        self, repository: str, *, head: str, base: str, title: str, body: str
    ) -> PullRequestInfo:
        """Open (or find the already open) pull request ``head`` -> ``base``."""
        ...

    def push_url(self, remote_url: str) -> str:
        """The URL the git layer pushes to; never with credentials in it."""
        ...

    def push_environment(self, remote_url: str) -> dict[str, str]:
        """What git's environment needs for that push (credentials, where needed)."""
        ...

    def redact(self, text: str) -> str:
        """``text`` without any secret of this provider (for git's error output)."""
        ...

    def image_url(self, remote_url: str, commit: str, path: str) -> str | None:
        """Where the forge shows the image at ``path`` of ``commit``; None: nowhere."""
        ...


def _first_line(message: str) -> str:
    lines = message.strip().splitlines()
    return lines[0].strip() if lines else "(no message)"


def _format_timestamp(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def _commit_line(commit: CommitLike, *, subject: bool) -> str:
    line = f"- `{commit.hash[:7]}`"
    if subject:
        line += " " + _first_line(commit.message)
        timestamp = getattr(commit, "timestamp", None)
        if timestamp is not None:
            stamp = _format_timestamp(timestamp)
            # The studio's own messages already end with the minute ("... - 2026-12-06 10:01").
            if stamp.removesuffix(" UTC") not in line:
                line += f" ({stamp})"
    return line


def build_pr_body(
    description: str,
    commits: Sequence[CommitLike],
    *,
    sandbox_id: str,
    limit: int = GITHUB_BODY_LIMIT,
    section: str = "",
) -> str:
    """The pull request body: description, ``section``, "Commits", a Component Studio footer.

    ``section`` (the screenshots, :func:`studio.pr_images.screenshot_section`)
    is kept whole: its builder keeps it within its own share of ``limit``.

    Every commit is listed (short hash, subject line, timestamp if known) in the
    order given. Only if that would pass ``limit`` characters (GitHub's maximum)
    is the list shortened: first the subjects are left out, then the
    description is cut, and only then does the list end with how many more
    commits there are.
    """
    branch = branch_name(sandbox_id)
    text = description.strip() or f"Changes made in Component Studio on `{branch}`."
    count = f"{len(commits)} commit{'' if len(commits) == 1 else 's'}"
    footer = (
        f"---\nOpened by Component Studio from sandbox `{sandbox_id}` (branch `{branch}`), {count}."
    )

    def assemble(description_text: str, lines: list[str]) -> str:
        listing = "\n".join(lines) if lines else "No commits."
        head = f"{description_text}\n\n" if description_text else ""
        head += f"{section.strip()}\n\n" if section.strip() else ""
        return f"{head}## Commits\n\n{listing}\n\n{footer}\n"

    body = assemble(text, [_commit_line(c, subject=True) for c in commits])
    if len(body) <= limit:
        return body
    note = f"\n(Subjects left out to stay within GitHub's {limit}-character limit.)"
    hashes = [_commit_line(c, subject=False) for c in commits]
    body = assemble(text, [*hashes, note])
    if len(body) <= limit:
        return body
    room = limit - len(assemble("", [*hashes, note])) - len("\n\n")
    if room > 1:
        return assemble(text[: room - 1].rstrip() + "…", [*hashes, note])
    # Even the hashes alone do not fit: list as many as fit, then say how many more.
    more = f"- … and {len(commits)} more"
    available = limit - len(assemble("", [more, note]))
    kept: list[str] = []
    for line in hashes:
        available -= len(line) + 1
        if available < 0:
            break
        kept.append(line)
    return assemble("", [*kept, f"- … and {len(commits) - len(kept)} more", note])


def _github_answer(exc: GithubException) -> tuple[str, list[str]]:
    """GitHub's ``message`` and its ``errors`` list, each error as one readable string."""
    data = exc.data
    if not isinstance(data, dict):
        return (str(data) if data else exc.message or "no message"), []
    errors: list[str] = []
    for error in data.get("errors") or []:
        if isinstance(error, dict):
            if error.get("message"):
                errors.append(str(error["message"]))
            else:
                where = ".".join(str(error[k]) for k in ("resource", "field") if error.get(k))
                errors.append(f"{where} {error.get('code', 'invalid')}".strip())
        else:
            errors.append(str(error))
    # PyGithub wraps an answer that is not JSON (a proxy's HTML error page) as {"data": text}.
    message = str(data.get("message") or data.get("data") or "no message")
    if len(message) > _MAX_QUOTED:
        message = message[:_MAX_QUOTED] + "…"
    return message, errors


def _quote_answer(status: int, message: str, errors: list[str]) -> str:
    answer = f"{status} {message!r}"
    if errors:
        answer += " (" + "; ".join(errors) + ")"
    return answer


def _check_repo_name(repository: str) -> None:
    # "." and ".." match the character class but would walk the API's URL paths.
    if not _REPO_NAME.match(repository) or {".", ".."} & set(repository.split("/")):
        raise InvalidRequest(
            f"GitHub repository {repository!r} is malformed: expected 'owner/name'"
        )


def _result(
    pull: PullRequest, repository: str, head: str, *, created: bool, said: str
) -> PullRequestInfo:
    logger.info(
        "%s for %s on %s",
        said,
        head,
        repository,
        extra={"repository": repository, "branch": head, "pr_number": pull.number},
    )
    return PullRequestInfo(
        url=pull.html_url,
        number=pull.number,
        created=created,
        pushed_to=repository,
        message=f"{said} for {head} on {repository}: {pull.html_url}",
    )


class GitHubProvider:
    """Pull requests on GitHub (or GitHub Enterprise) with a token, through PyGithub.

    The token is never put in a message, a log line or ``repr``. A client is
    made per operation, so the provider holds no connection and pickles to a
    Ray actor as its token and settings.
    """

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_GITHUB_API_URL,
        timeout: int = 15,
        retries: int = 3,
    ) -> None:
        if not token.strip():
            raise InvalidConfig(
                "a GitHub token is required to open pull requests: "
                "set COMPONENT_STUDIO_GITHUB_TOKEN"
            )
        self._token = token.strip()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries

    @classmethod
    def from_settings(cls, settings: StudioSettings) -> GitHubProvider:
        """The provider for ``COMPONENT_STUDIO_GITHUB_TOKEN`` and ``_GITHUB_API_URL``."""
        return cls(settings.github_token or "", base_url=settings.github_api_url)

    def __repr__(self) -> str:
        return f"GitHubProvider(base_url={self.base_url!r})"

    @contextlib.contextmanager
    def _client(self) -> Iterator[Github]:
        # lazy=True: objects are not fetched until an attribute needs them, so
        # get_repo() costs no request, and nothing follows the api.github.com
        # URLs inside answers (GitHub Enterprise, and Prism in tests).
        client = Github(
            base_url=self.base_url,
            auth=Auth.Token(self._token),
            lazy=True,
            timeout=self.timeout,
            # raise_on_status=False: once retries are spent, PyGithub raises with
            # GitHub's last answer instead of urllib3 calling it unreachable.
            retry=GithubRetry(total=self.retries, raise_on_status=False),
        )
        try:
            yield client
        finally:
            client.close()

    def check_push_permission(self, repository: str) -> None:
        """Raise unless the token may push to ``repository`` (called at sandbox creation).

        :class:`PermissionDenied` for a bad token (401), a refusal (403) or a
        token without push access; :class:`RepositoryNotFound` for 404;
        :class:`ServiceUnavailable` when GitHub cannot be reached or fails.
        """
        _check_repo_name(repository)
        with self._client() as client:
            try:
                permissions = client.get_repo(repository).permissions
            except GithubException as exc:
                self._raise_access_error(repository, exc)
            except requests.RequestException as exc:
                raise ServiceUnavailable(
                    self.redact(
                        f"could not reach GitHub at {self.base_url} to check access "
                        f"to {repository}: {exc}"
                    ),
                    repository=repository,
                ) from None
        granted = {
            name for name in _PERMISSION_ORDER if permissions and getattr(permissions, name, False)
        }
        if "push" in granted or "maintain" in granted or "admin" in granted:
            return
        held = next((name for name in _PERMISSION_ORDER if name in granted), None)
        raise PermissionDenied(
            f"the GitHub token may not push to {repository}: "
            + (f"it has '{held}' access" if held else "GitHub reported no permissions for it")
            + ", and Component Studio needs push (write) access to push design/studio-* "
            "branches and open pull requests. Grant the token 'Contents: write' and "
            "'Pull requests: write' (fine-grained token) or the 'repo' scope (classic token).",
            repository=repository,
            missing="push",
            held=held,
        )

    def _raise_access_error(self, repository: str, exc: GithubException) -> NoReturn:
        message, errors = _github_answer(exc)
        answer = self.redact(_quote_answer(exc.status, message, errors))
        error_type, what = _ACCESS_ERRORS.get(
            exc.status, (ServiceUnavailable, "GitHub failed while checking access to {repo}")
        )
        raise error_type(
            what.format(repo=repository) + f" (answered {answer})",
            repository=repository,
            status=exc.status,
            github_message=self.redact(message),
        ) from None

    def open_pull_request(
        self, repository: str, *, head: str, base: str, title: str, body: str
    ) -> PullRequestInfo:
        """Open the pull request ``head`` -> ``base`` on ``repository``.

        If GitHub answers that one is already open for ``head`` (finalizing
        twice), that pull request is returned with ``created=False``. Any other
        refusal is a :class:`PullRequestError` whose message quotes GitHub's
        answer and whose details hold ``status`` and ``github_message``.
        """
        _check_repo_name(repository)
        with self._client() as client:
            repo = client.get_repo(repository)
            try:
                pull = repo.create_pull(base=base, head=head, title=title, body=body)
            except GithubException as exc:
                message, errors = _github_answer(exc)
                if exc.status == 422 and any(_ALREADY_EXISTS in e.lower() for e in errors):
                    return self._existing_pull_request(repo, repository, head=head, base=base)
                self._raise_pr_error(repository, head, base, exc.status, message, errors)
            except requests.RequestException as exc:
                raise PullRequestError(
                    self.redact(
                        f"could not reach GitHub at {self.base_url} to open the pull "
                        f"request {head} -> {base} on {repository}: {exc}"
                    ),
                    repository=repository,
                    status=None,
                    github_message=None,
                ) from None
        return _result(
            pull, repository, head, created=True, said=f"opened pull request #{pull.number}"
        )

    def _existing_pull_request(
        self, repo: Repository, repository: str, *, head: str, base: str
    ) -> PullRequestInfo:
        owner = repository.split("/", 1)[0]
        # GitHub filters open pull requests by "owner:branch" for a same-repository head.
        head_filter = head if ":" in head else f"{owner}:{head}"
        try:
            found = repo.get_pulls(state="open", head=head_filter).get_page(0)
        except GithubException as exc:
            message, errors = _github_answer(exc)
            self._raise_pr_error(repository, head, base, exc.status, message, errors)
        if not found:
            raise PullRequestError(
                f"GitHub says a pull request for {head} already exists on {repository}, but "
                f"no open pull request has head {head_filter}; it may have just been closed, "
                "finalize again",
                repository=repository,
                status=422,
                github_message="A pull request already exists",
            )
        pull = found[0]
        return _result(
            pull,
            repository,
            head,
            created=False,
            said=f"pull request #{pull.number} was already open",
        )

    def _raise_pr_error(
        self, repository: str, head: str, base: str, status: int, message: str, errors: list[str]
    ) -> NoReturn:
        hint = {
            401: "the token is wrong, expired or revoked; set a valid "
            "COMPONENT_STUDIO_GITHUB_TOKEN",
            403: "the token may not open pull requests there (it needs 'Pull requests: write')",
            404: "the repository does not exist or the token cannot see it",
            422: "GitHub found the request invalid (no commits between the branches, "
            "a missing branch, or a body too long)",
        }.get(status, "GitHub failed; retry shortly")
        raise PullRequestError(
            self.redact(
                f"GitHub refused the pull request {head} -> {base} on {repository}: it answered "
                f"{_quote_answer(status, message, errors)}; {hint}"
            ),
            repository=repository,
            status=status,
            github_message=self.redact(message),
            github_errors=[self.redact(e) for e in errors],
        ) from None

    def push_url(self, remote_url: str) -> str:
        """``https://host/owner/name.git`` for ``remote_url``, any credentials in it dropped.

        The token goes in :meth:`push_environment`, not in the URL: a URL is part
        of git's command line, which every local user can read (``ps``).
        """
        parts = urlsplit(remote_url)
        if parts.scheme not in {"https", "http"} or not parts.hostname:
            raise InvalidRequest(
                f"cannot push with a token to {self.redact(remote_url)!r}: expected an https "
                "clone URL such as https://github.com/owner/name.git"
            )
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        if parts.port:
            host += f":{parts.port}"
        path = parts.path.rstrip("/")
        if not path.endswith(".git"):
            path += ".git"
        return urlunsplit((parts.scheme, host, path, "", ""))

    def push_environment(self, remote_url: str) -> dict[str, str]:
        """git's environment for a push to ``remote_url``: the token as an HTTP header.

        ``http.<url>.extraHeader`` set through ``GIT_CONFIG_COUNT``/``KEY``/``VALUE``
        (git 2.31+): on no command line, in no config file, and sent only to that
        remote's scheme, host and path (git matches the URL prefix). GitHub takes the
        token as the password of Basic authentication, user ``x-access-token``.
        """
        url = self.push_url(remote_url)
        basic = base64.b64encode(f"x-access-token:{self._token}".encode()).decode("ascii")
        return {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"http.{url}.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
        }

    def image_url(self, remote_url: str, commit: str, path: str) -> str | None:
        """``https://<host>/<owner>/<name>/blob/<commit>/<path>?raw=true`` for ``remote_url``.

        Named by commit, so the picture never changes under the pull request.
        ``?raw=true`` (GitHub's documented form for an image in an issue or pull
        request) answers with the file itself; GitHub checks the viewer's
        access to the repository, so a private repository's pictures show to
        its readers only.
        """
        web = self.push_url(remote_url).removesuffix(".git")
        return f"{web}/blob/{commit}/{quote(path)}?raw=true"

    def redact(self, text: str) -> str:
        """``text`` with the token, and any credentials inside a URL, replaced by ``***``."""
        basic = base64.b64encode(f"x-access-token:{self._token}".encode()).decode("ascii")
        for secret in {self._token, quote(self._token, safe=""), basic}:
            text = text.replace(secret, REDACTED)
        return _URL_CREDENTIALS.sub(f"x-access-token:{REDACTED}@", text)


def _git(cwd: Path, *args: str) -> tuple[int, str, str]:
    # The ceiling stops git from walking up: a plain directory inside some other
    # repository must not pass for a repository itself.
    return git_status(args, cwd=cwd, env={"GIT_CEILING_DIRECTORIES": str(cwd.parent)}, timeout=30)


class LocalProvider:
    """A repository that is a local path: the branch goes to that origin, no forge.

    Nothing is opened anywhere; the result says where the branch was pushed and
    carries no pull request URL or number.
    """

    def __repr__(self) -> str:
        return "LocalProvider()"

    @staticmethod
    def _git_dir(repository: str) -> Path:
        origin = Path(repository).resolve()
        if not origin.is_dir():
            raise RepositoryNotFound(
                f"the origin repository {repository} does not exist", repository=repository
            )
        code, out, err = _git(origin, "rev-parse", "--absolute-git-dir")
        if code != 0:
            raise RepositoryNotFound(
                f"{repository} is not a git repository: {err.strip()}",
                repository=repository,
            )
        return Path(out.strip())

    def check_push_permission(self, repository: str) -> None:
        """Raise :class:`RepositoryNotFound` unless ``repository`` is a git repository.

        Whether this process may write to it shows at push time, where the git
        layer reports git's own refusal.
        """
        self._git_dir(repository)

    def open_pull_request(
        self, repository: str, *, head: str, base: str, title: str, body: str
    ) -> PullRequestInfo:
        """Confirm ``head`` is in the origin and say that no pull request was opened."""
        origin = self._git_dir(repository)
        found, _, _ = _git(
            origin, "rev-parse", "--verify", "--quiet", f"refs/heads/{head}^{{commit}}"
        )
        if found != 0:
            raise PullRequestError(
                f"branch {head} is not in the origin {repository}: push it before finalizing",
                repository=repository,
                branch=head,
            )
        logger.info(
            "branch %s is in %s; no forge, no pull request",
            head,
            repository,
            extra={"repository": repository, "branch": head},
        )
        return PullRequestInfo(
            url=None,
            number=None,
            created=False,
            pushed_to=repository,
            message=(
                f"pushed {head} to {repository}; no forge configured, no pull request opened "
                f"(merge it into {base} there)"
            ),
        )

    def push_url(self, remote_url: str) -> str:
        """A local origin needs no credentials: ``remote_url`` unchanged."""
        return remote_url

    def push_environment(self, remote_url: str) -> dict[str, str]:
        """A local origin needs no credentials: nothing."""
        return {}

    def redact(self, text: str) -> str:
        """A local origin has no secret: ``text`` unchanged."""
        return text

    def image_url(self, remote_url: str, commit: str, path: str) -> str | None:
        """No forge shows a local origin's files: None (the body names the ref and paths)."""
        return None
