"""studio/pr.py against Prism serving GitHub's OpenAPI description, and real git repositories.

What a provider sent is checked at the recording front (tests/support/prism.py)
between PyGithub and Prism; Prism's answers are GitHub's own documented examples.
"""

from __future__ import annotations

import base64
import logging
import pickle
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

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
from studio.pr import (
    GITHUB_BODY_LIMIT,
    GitHubProvider,
    LocalProvider,
    PullRequestInfo,
    PullRequestProvider,
    build_pr_body,
)
from tests.support.gitrepo import commit_all, git
from tests.support.prism import VALID_TOKEN, GitHubFront

REPO = "octo/hello"
HEAD = "design/studio-abc123"
SANDBOX = "sb_abc123"
# Prism answers with the spec's example pull request, whatever was sent.
EXAMPLE_PR_URL = "https://github.com/octocat/Hello-World/pull/1347"
EXAMPLE_PR_NUMBER = 1347


@dataclass
class Commit:
    hash: str
    message: str


@dataclass
class TimedCommit:
    hash: str
    message: str
    timestamp: object


def _commits(count: int) -> list[Commit]:
    # Distinct short hashes, as real ones are.
    return [
        Commit(f"{i:07x}" + "f" * 33, f"AI: change number {i}\n\nlonger body {i}")
        for i in range(count)
    ]


def _provider(front: GitHubFront, token: str = VALID_TOKEN, **kwargs: Any) -> GitHubProvider:
    return GitHubProvider(token, base_url=front.url, **kwargs)


def _with_permissions(permissions: dict[str, bool] | None) -> Any:
    def change(repo: dict[str, Any]) -> dict[str, Any]:
        changed = {k: v for k, v in repo.items() if k != "permissions"}
        if permissions is not None:
            changed["permissions"] = permissions
        return changed

    return change


def _assert_no_token(error: StudioError, token: str = VALID_TOKEN) -> None:
    assert token not in str(error)
    assert token not in repr(error.details)
    assert token not in repr(pickle.loads(pickle.dumps(error)).details)


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- build_pr_body ---------------------------------------------------------------------------


def test_body_lists_every_commit_between_description_and_footer() -> None:
    commits = _commits(25)
    body = build_pr_body("Make the button **blue**.", commits, sandbox_id=SANDBOX)

    assert body.startswith("Make the button **blue**.\n\n## Commits\n\n")
    for commit in commits:
        assert f"- `{commit.hash[:7]}` {commit.message.splitlines()[0]}\n" in body
    assert "longer body" not in body  # subject lines only
    positions = [body.index(c.message.splitlines()[0] + "\n") for c in commits]
    assert positions == sorted(positions)  # in the order given
    footer = body[body.index("\n---\n") :]
    assert f"sandbox `{SANDBOX}`" in footer
    assert f"branch `{HEAD}`" in footer
    assert "Component Studio" in footer
    assert "25 commits" in footer


def test_body_without_description_or_commits_still_says_what_it_is() -> None:
    body = build_pr_body("   \n", [], sandbox_id=SANDBOX)
    assert body.startswith(f"Changes made in Component Studio on `{HEAD}`.")
    assert "No commits." in body
    assert "0 commits" in body
    assert "1 commit." in build_pr_body("x", _commits(1), sandbox_id=SANDBOX)


def test_body_shows_commit_timestamps_in_utc_when_known() -> None:
    aware = datetime(2026, 11, 25, 16, 30, tzinfo=timezone(timedelta(hours=2)))
    commits = [
        TimedCommit("a" * 40, "aware", aware),
        TimedCommit("b" * 40, "naive", datetime(2026, 11, 25, 9, 5)),
        TimedCommit("c" * 40, "text", "2026-11-25T14:30:00Z"),
        TimedCommit("d" * 40, "", None),
    ]
    body = build_pr_body("d", commits, sandbox_id=SANDBOX)
    assert "- `aaaaaaa` aware (2026-11-25 14:30 UTC)" in body
    assert "- `bbbbbbb` naive (2026-11-25 09:05)" in body
    assert "- `ccccccc` text (2026-11-25T14:30:00Z)" in body
    assert "- `ddddddd` (no message)\n" in body


def test_a_message_that_already_names_its_minute_is_not_stamped_twice() -> None:
    stamp = datetime(2026, 12, 6, 10, 1, tzinfo=UTC)
    commits = [
        TimedCommit("a" * 40, "Update Button.tsx - 2026-12-06 10:01", stamp),
        TimedCommit("b" * 40, "Update Button.tsx - 2026-12-06 09:59", stamp),
    ]
    body = build_pr_body("d", commits, sandbox_id=SANDBOX)
    assert "- `aaaaaaa` Update Button.tsx - 2026-12-06 10:01\n" in body
    assert "- `bbbbbbb` Update Button.tsx - 2026-12-06 09:59 (2026-12-06 10:01 UTC)" in body


def test_body_too_long_for_github_drops_subjects_but_keeps_every_hash() -> None:
    commits = _commits(3000)
    full = build_pr_body("d", commits, sandbox_id=SANDBOX, limit=10**7)
    assert len(full) > GITHUB_BODY_LIMIT

    body = build_pr_body("d", commits, sandbox_id=SANDBOX)
    assert len(body) <= GITHUB_BODY_LIMIT
    assert body.startswith("d\n\n")
    assert all(f"- `{c.hash[:7]}`\n" in body for c in commits)
    assert "change number" not in body
    assert "Subjects left out" in body
    assert "3000 commits" in body


def test_body_cuts_the_description_before_any_commit() -> None:
    commits = _commits(20)
    hashes_only = build_pr_body("", commits, sandbox_id=SANDBOX, limit=1000)
    limit = len(hashes_only) + 40
    body = build_pr_body("word " * 500, commits, sandbox_id=SANDBOX, limit=limit)
    assert len(body) <= limit
    assert body.startswith("word word")
    assert "…\n\n## Commits" in body
    assert all(f"- `{c.hash[:7]}`\n" in body for c in commits)


def test_body_with_more_commits_than_fit_says_how_many_more() -> None:
    commits = _commits(200)
    body = build_pr_body("description", commits, sandbox_id=SANDBOX, limit=1200)
    assert len(body) <= 1200
    assert "description" not in body
    listed = [c for c in commits if f"- `{c.hash[:7]}`\n" in body]
    assert listed == commits[: len(listed)]
    assert len(listed) > 10
    assert f"- … and {200 - len(listed)} more\n" in body
    assert "200 commits" in body


def test_body_needs_a_valid_sandbox_id() -> None:
    with pytest.raises(InvalidRequest, match="malformed"):
        build_pr_body("d", [], sandbox_id="not-an-id")


# --- token handling ---------------------------------------------------------------------------


def test_the_push_url_carries_no_credentials_and_the_environment_the_token() -> None:
    provider = GitHubProvider("ghp_secret")
    want = "https://github.com/octo/hello.git"
    assert provider.push_url("https://github.com/octo/hello.git") == want
    assert provider.push_url("https://github.com/octo/hello") == want
    assert provider.push_url("https://old:creds@github.com/octo/hello/") == want
    assert (
        provider.push_url("https://ghe.example.com:8443/team/ui.git")
        == "https://ghe.example.com:8443/team/ui.git"
    )
    env = provider.push_environment("https://old:creds@github.com/octo/hello")
    basic = base64.b64encode(b"x-access-token:ghp_secret").decode()
    # Scoped to that remote's URL: git sends the header to no other host.
    assert env == {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.https://github.com/octo/hello.git.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
    }
    with pytest.raises(InvalidRequest, match="https clone URL") as caught:
        provider.push_url("git@github.com:octo/hello.git")
    assert "ghp_secret" not in str(caught.value)
    local = LocalProvider()
    assert (local.push_url("/srv/repo"), local.push_environment("/srv/repo")) == ("/srv/repo", {})


def test_redact_removes_the_token_in_every_form_git_may_print() -> None:
    provider = GitHubProvider("ghp_a/b+c")
    url = "https://x-access-token:ghp_a%2Fb%2Bc@github.com/octo/hello.git"
    header = provider.push_environment(url)["GIT_CONFIG_VALUE_0"]
    git_output = (
        f"fatal: unable to access '{url}/': The requested URL returned error: 403\n"
        f"trace: {header}\n"
        "remote: token ghp_a/b+c was refused\n"
        "fatal: could not read from https://someone:other-secret@example.com/x.git"
    )
    redacted = provider.redact(git_output)
    assert "ghp_a" not in redacted
    assert "other-secret" not in redacted
    assert "x-access-token:***@github.com/octo/hello.git" in redacted
    assert "remote: token *** was refused" in redacted
    assert "trace: Authorization: Basic ***" in redacted


def test_provider_never_shows_its_token() -> None:
    provider = GitHubProvider(" ghp_secret\n", base_url="https://ghe.example.com/api/v3/")
    assert "ghp_secret" not in repr(provider)
    assert provider.base_url == "https://ghe.example.com/api/v3"
    assert "ghp_secret" not in provider.push_url("https://x.example/o/r.git")
    with pytest.raises(InvalidConfig, match="COMPONENT_STUDIO_GITHUB_TOKEN"):
        GitHubProvider("  ")


def test_provider_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPONENT_STUDIO_GITHUB_TOKEN", "ghp_from_env")
    monkeypatch.setenv("COMPONENT_STUDIO_GITHUB_API_URL", "https://ghe.example.com/api/v3")
    provider = GitHubProvider.from_settings(StudioSettings())
    assert provider.base_url == "https://ghe.example.com/api/v3"
    assert provider.redact("ghp_from_env") == "***"
    monkeypatch.delenv("COMPONENT_STUDIO_GITHUB_TOKEN")
    with pytest.raises(InvalidConfig):
        GitHubProvider.from_settings(StudioSettings())


def test_repository_names_are_checked_before_any_request() -> None:
    provider = GitHubProvider("ghp_secret", base_url=_closed_port_url())
    for bad in ("octo", "octo/hello/extra", "../etc", "octo/..", "octo/hel lo"):
        with pytest.raises(InvalidRequest, match="owner/name"):
            provider.check_push_permission(bad)
        with pytest.raises(InvalidRequest, match="owner/name"):
            provider.open_pull_request(bad, head=HEAD, base="main", title="t", body="b")


# --- GitHub through Prism ---------------------------------------------------------------------


def test_open_pull_request_sends_head_base_title_body(
    github_front: GitHubFront, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = build_pr_body("Blue button.", _commits(3), sandbox_id=SANDBOX)

    info = _provider(github_front).open_pull_request(
        REPO, head=HEAD, base="main", title="Studio: blue button", body=body
    )

    [sent] = github_front.sent("POST", "/repos/octo/hello/pulls")
    assert sent.json() == {
        "head": HEAD,
        "base": "main",
        "title": "Studio: blue button",
        "body": body,
    }
    assert sent.headers["authorization"] == f"token {VALID_TOKEN}"
    assert info == PullRequestInfo(
        url=EXAMPLE_PR_URL,
        number=EXAMPLE_PR_NUMBER,
        created=True,
        pushed_to=REPO,
        message=f"opened pull request #1347 for {HEAD} on octo/hello: {EXAMPLE_PR_URL}",
    )
    assert info.url is not None
    # Only the pull request was asked for: lazy PyGithub fetched no repository first.
    assert [(r.method, r.path) for r in github_front.requests] == [
        ("POST", "/repos/octo/hello/pulls")
    ]
    assert "opened pull request #1347" in caplog.text
    assert VALID_TOKEN not in caplog.text


def test_result_survives_pickling_and_json() -> None:
    info = PullRequestInfo(url="u", number=1, created=True, pushed_to=REPO, message="m")
    assert pickle.loads(pickle.dumps(info)) == info
    assert PullRequestInfo.model_validate_json(info.model_dump_json()) == info


def test_check_push_permission_passes_with_push_access(github_front: GitHubFront) -> None:
    # Prism's one example repository is seen by a read-only token (push: false);
    # GitHub tells a token with write access push: true. Only that field is changed.
    github_front.edit(
        "GET", "/repos/octo/hello", _with_permissions({"admin": False, "push": True, "pull": True})
    )
    _provider(github_front).check_push_permission(REPO)
    [sent] = github_front.sent("GET", "/repos/octo/hello")
    assert sent.headers["authorization"] == f"token {VALID_TOKEN}"


def test_check_push_permission_refuses_a_read_only_token(github_front: GitHubFront) -> None:
    with pytest.raises(PermissionDenied) as caught:
        _provider(github_front).check_push_permission(REPO)
    error = caught.value
    assert "may not push to octo/hello" in str(error)
    assert "'pull' access" in str(error)
    assert error.details == {"repository": REPO, "missing": "push", "held": "pull"}
    _assert_no_token(error)


def test_check_push_permission_refuses_when_github_reports_none(
    github_front: GitHubFront,
) -> None:
    github_front.edit("GET", "/repos/octo/hello", _with_permissions(None))
    with pytest.raises(PermissionDenied, match="reported no permissions"):
        _provider(github_front).check_push_permission(REPO)


@pytest.mark.parametrize(
    ("status", "error_type", "words"),
    [
        (404, RepositoryNotFound, "no repository octo/hello that the token can see"),
        (403, PermissionDenied, "refused access to octo/hello"),
    ],
)
def test_check_push_permission_maps_github_refusals(
    github_front: GitHubFront, status: int, error_type: type[StudioError], words: str
) -> None:
    github_front.prefer("GET", "/repos/octo/hello", f"code={status}")
    with pytest.raises(error_type) as caught:
        _provider(github_front).check_push_permission(REPO)
    assert words in str(caught.value)
    assert f"answered {status} 'string'" in str(caught.value)  # Prism's schema-made message
    assert caught.value.details["status"] == status


def test_check_push_permission_with_a_bad_token(github_front: GitHubFront) -> None:
    with pytest.raises(PermissionDenied) as caught:
        _provider(github_front, token="ghp_wrongToken").check_push_permission(REPO)
    assert "rejected the token" in str(caught.value)
    assert "401 'Bad credentials'" in str(caught.value)
    assert "COMPONENT_STUDIO_GITHUB_TOKEN" in str(caught.value)
    assert caught.value.details["status"] == 401
    _assert_no_token(caught.value, "ghp_wrongToken")


def test_check_push_permission_when_github_fails(github_front: GitHubFront) -> None:
    github_front.answer("GET", "/repos/octo/hello", 502, {"message": "Server Error"})
    with pytest.raises(ServiceUnavailable, match="502 'Server Error'"):
        _provider(github_front, retries=2).check_push_permission(REPO)
    # PyGithub retried server errors before giving up.
    assert len(github_front.sent("GET", "/repos/octo/hello")) == 3


def test_unreachable_github_is_reported_with_its_address() -> None:
    url = _closed_port_url()
    provider = GitHubProvider(VALID_TOKEN, base_url=url, retries=0)
    with pytest.raises(ServiceUnavailable, match=f"could not reach GitHub at {url}") as caught:
        provider.check_push_permission(REPO)
    _assert_no_token(caught.value)
    with pytest.raises(PullRequestError, match=f"could not reach GitHub at {url}") as caught_pr:
        provider.open_pull_request(REPO, head=HEAD, base="main", title="t", body="b")
    _assert_no_token(caught_pr.value)


def test_prism_422_surfaces_as_a_pull_request_error_quoting_it(
    github_front: GitHubFront,
) -> None:
    # Prism answers with the spec's validation-error schema (strings are "string").
    github_front.prefer("POST", "/repos/octo/hello/pulls", "code=422")
    with pytest.raises(PullRequestError) as caught:
        _provider(github_front).open_pull_request(REPO, head=HEAD, base="main", title="t", body="b")
    error = caught.value
    assert f"refused the pull request {HEAD} -> main on octo/hello" in str(error)
    assert "answered 422 'string' (string)" in str(error)
    assert error.details["status"] == 422
    assert error.details["github_message"] == "string"
    assert error.details["github_errors"] == ["string"]
    _assert_no_token(error)


def test_github_validation_errors_are_quoted_in_full(github_front: GitHubFront) -> None:
    github_front.answer(
        "POST",
        "/repos/octo/hello/pulls",
        422,
        {
            "message": "Validation Failed",
            "errors": [
                {
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": f"No commits between main and {HEAD}",
                },
                {"resource": "PullRequest", "field": "base", "code": "invalid"},
            ],
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
        },
    )
    with pytest.raises(PullRequestError) as caught:
        _provider(github_front).open_pull_request(REPO, head=HEAD, base="main", title="t", body="b")
    assert (
        f"answered 422 'Validation Failed' (No commits between main and {HEAD}; "
        "PullRequest.base invalid)"
    ) in str(caught.value)
    assert caught.value.details["github_errors"] == [
        f"No commits between main and {HEAD}",
        "PullRequest.base invalid",
    ]


def test_finalizing_twice_returns_the_open_pull_request(github_front: GitHubFront) -> None:
    provider = _provider(github_front)
    first = provider.open_pull_request(REPO, head=HEAD, base="main", title="t", body="b")
    assert first.created
    # GitHub's answer to a second pull request for the same head.
    github_front.answer(
        "POST",
        "/repos/octo/hello/pulls",
        422,
        {
            "message": "Validation Failed",
            "errors": [
                {
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": f"A pull request already exists for octo:{HEAD}.",
                }
            ],
        },
    )

    second = provider.open_pull_request(REPO, head=HEAD, base="main", title="t", body="b")

    assert (second.url, second.number, second.created) == (first.url, first.number, False)
    assert "already open" in second.message
    [listed] = github_front.sent("GET", "/repos/octo/hello/pulls")
    assert listed.query["head"] == [f"octo:{HEAD}"]
    assert listed.query["state"] == ["open"]


def test_already_exists_but_none_open_is_an_error(github_front: GitHubFront) -> None:
    github_front.answer(
        "POST",
        "/repos/octo/hello/pulls",
        422,
        {"message": "Validation Failed", "errors": [{"message": "A pull request already exists"}]},
    )
    github_front.edit("GET", "/repos/octo/hello/pulls", lambda pulls: [])
    with pytest.raises(PullRequestError, match="no open pull request has head octo:"):
        _provider(github_front).open_pull_request(REPO, head=HEAD, base="main", title="t", body="b")


def test_listing_the_existing_pull_request_can_fail_too(github_front: GitHubFront) -> None:
    github_front.answer(
        "POST",
        "/repos/octo/hello/pulls",
        422,
        {"message": "Validation Failed", "errors": [{"message": "A pull request already exists"}]},
    )
    github_front.answer(
        "GET", "/repos/octo/hello/pulls", 403, {"message": "Resource not accessible"}
    )
    with pytest.raises(PullRequestError, match="403 'Resource not accessible'") as caught:
        _provider(github_front).open_pull_request(REPO, head=HEAD, base="main", title="t", body="b")
    assert caught.value.details["status"] == 403


def test_open_pull_request_with_a_bad_token(github_front: GitHubFront) -> None:
    token = "ghp_wrongToken"
    with pytest.raises(PullRequestError) as caught:
        _provider(github_front, token=token).open_pull_request(
            REPO, head=HEAD, base="main", title="t", body="b"
        )
    error = caught.value
    assert "answered 401 'Bad credentials'" in str(error)
    assert "token is wrong, expired or revoked" in str(error)
    assert error.details["status"] == 401
    assert error.details["github_message"] == "Bad credentials"
    _assert_no_token(error, token)


@pytest.mark.parametrize(("status", "hint"), [(403, "Pull requests: write"), (404, "cannot see")])
def test_open_pull_request_refusals_say_what_to_do(
    github_front: GitHubFront, status: int, hint: str
) -> None:
    github_front.prefer("POST", "/repos/octo/hello/pulls", f"code={status}")
    with pytest.raises(PullRequestError, match=hint) as caught:
        _provider(github_front).open_pull_request(REPO, head=HEAD, base="main", title="t", body="b")
    assert caught.value.details["status"] == status


def test_an_html_error_page_is_quoted_shortened(github_front: GitHubFront) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1>" + b"<p>padding</p>" * 100 + b"</body></html>"
    github_front.answer("POST", "/repos/octo/hello/pulls", 502, page)
    with pytest.raises(PullRequestError, match="GitHub failed; retry shortly") as caught:
        _provider(github_front, retries=1).open_pull_request(
            REPO, head=HEAD, base="main", title="t", body="b"
        )
    message = caught.value.details["github_message"]
    assert message.startswith("<html><body><h1>502 Bad Gateway</h1>")
    assert message.endswith("…")
    assert len(message) < len(page)
    assert caught.value.details["status"] == 502
    assert len(github_front.sent("POST", "/repos/octo/hello/pulls")) == 2


def test_errors_given_as_plain_strings_are_quoted(github_front: GitHubFront) -> None:
    # Some GitHub endpoints list errors as bare strings rather than objects.
    github_front.answer(
        "POST",
        "/repos/octo/hello/pulls",
        422,
        {"message": "Validation Failed", "errors": ["Head sha can't be blank"]},
    )
    with pytest.raises(PullRequestError, match=r"'Validation Failed' \(Head sha can't be blank\)"):
        _provider(github_front).open_pull_request(REPO, head=HEAD, base="main", title="t", body="b")


def test_an_empty_error_answer_still_names_the_status(github_front: GitHubFront) -> None:
    github_front.answer("GET", "/repos/octo/hello", 503, b"")
    with pytest.raises(ServiceUnavailable, match="answered 503 'no message'") as caught:
        _provider(github_front, retries=0).check_push_permission(REPO)
    assert caught.value.details["status"] == 503


# --- local repositories -----------------------------------------------------------------------


def _bare_origin(source: Path, tmp_path: Path) -> Path:
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(origin))
    return origin


def test_local_provider_reports_the_push_without_inventing_a_pull_request(
    simple_repo: Path, tmp_path: Path
) -> None:
    origin = _bare_origin(simple_repo, tmp_path)
    git(simple_repo, "checkout", "-q", "-b", HEAD)
    (simple_repo / "src" / "Button.tsx").write_text("export const Button = () => null;\n")
    commit_all(simple_repo, "AI: simplify Button")
    git(simple_repo, "push", "-q", str(origin), HEAD)

    provider: PullRequestProvider = LocalProvider()
    provider.check_push_permission(str(origin))
    info = provider.open_pull_request(str(origin), head=HEAD, base="main", title="t", body="b")

    assert info.url is None
    assert info.number is None
    assert not info.created
    assert info.url is None
    assert info.pushed_to == str(origin)
    assert info.message.startswith(f"pushed {HEAD} to {origin}; no forge configured")
    assert "no pull request opened" in info.message


def test_local_provider_refuses_a_branch_that_was_not_pushed(
    simple_repo: Path, tmp_path: Path
) -> None:
    origin = _bare_origin(simple_repo, tmp_path)
    with pytest.raises(PullRequestError, match=f"branch {HEAD} is not in the origin"):
        LocalProvider().open_pull_request(str(origin), head=HEAD, base="main", title="t", body="b")


def test_local_provider_checks_that_the_origin_is_a_repository(
    simple_repo: Path, tmp_path: Path
) -> None:
    provider = LocalProvider()
    provider.check_push_permission(str(simple_repo))  # a non-bare origin is fine too
    with pytest.raises(RepositoryNotFound, match="does not exist"):
        provider.check_push_permission(str(tmp_path / "missing"))
    # A plain directory inside a repository is not that repository.
    inside = simple_repo / "src"
    with pytest.raises(RepositoryNotFound, match="is not a git repository"):
        provider.check_push_permission(str(inside))
    assert repr(provider) == "LocalProvider()"


def test_local_provider_has_no_secret_to_add_or_hide(tmp_path: Path) -> None:
    provider = LocalProvider()
    assert provider.push_url(str(tmp_path)) == str(tmp_path)
    assert provider.push_environment(str(tmp_path)) == {}
    assert provider.redact("fatal: nothing secret") == "fatal: nothing secret"


def test_timestamps_in_utc_helper_is_consistent() -> None:
    # The same instant written in two zones renders the same.
    instant = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    other = instant.astimezone(timezone(timedelta(hours=-5)))
    a = build_pr_body("d", [TimedCommit("a" * 40, "m", instant)], sandbox_id=SANDBOX)
    b = build_pr_body("d", [TimedCommit("a" * 40, "m", other)], sandbox_id=SANDBOX)
    assert a == b
