"""Path fuzzing of a running sandbox: whatever the path, nothing is written outside the worktree.

Hypothesis builds file paths from traversal, absolute prefixes, symlinks made
inside the worktree that point out of it, ``.git/`` and ``.studio/`` spellings,
NUL bytes, very long names and Unicode look-alikes, and sends them through
every file command of a real :class:`ComponentStudioSandbox` (real git, real
Vite). Every generated name carries a marker, so a write that escaped is found
by name anywhere under the test's directory or in /tmp; files that already
exist outside the worktree (a sentinel directory the symlinks point at, the
mirror's config, the worktree's own ``.git`` file and ``.studio/``) are hashed
before and after.
"""

# The fixtures are imported from test_sandbox_fixtures, then requested by name.
# ruff: noqa: F811

from __future__ import annotations

import hashlib
import os
import unicodedata
from pathlib import Path

import hypothesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from pydantic import ValidationError

from studio.commands import command_adapter
from studio.errors import InvalidRequest, NotFound, StudioError
from studio.sandbox import ComponentStudioSandbox
from studio.state import SandboxState
from tests.studio.test_sandbox_fixtures import (  # noqa: F401 (fixtures)
    SandboxFactory,
    install_cache,
    make_sandbox,
    origin,
    settings,
)
from tests.support.gitrepo import git

MARKER = "zzfuzz"
SECRET = "sentinel secret: must never be read or changed\n"

# What a hostile path is made of.
SEGMENTS = [
    "..",
    ".",
    "",
    "src",
    "src/components",
    ".git",
    ".GIT",
    ".Git",
    ".git ",
    ".git.",
    ".studio",
    ".STUDIO",
    ".studio.",
    "node_modules",
    "out-dir",
    "out-file",
    "abs-link",
    "up-link",
    "loop",
    "..\\..",
    "%2e%2e",
    "%2F",
    "\uff0e\uff0e",  # fullwidth dots: NFKC makes them ".."
    "\u2025",  # two-dot leader
    "..\u2215",  # division slash
    "\u0000",
    "src\x00.txt",
    "e\u0301",  # decomposed é
    "\u00e9",  # composed é
    "\u200b",  # zero-width space
    "\u202e",  # right-to-left override
    "~",
    "$HOME",
    "CON",
    "a" * 255,
    "b" * 300,
]
PREFIXES = ["", "/", "//", "./", "../", "../../", "../../../", "/tmp/", "~/", "\\", "C:\\"]
NAMES = [
    f"{MARKER}.txt",
    f"{MARKER}.tsx",
    f".{MARKER}",
    f"{MARKER}\u0000.txt",
    f"\uff3a\uff3a{MARKER}",  # fullwidth "ZZ" in front: NFKC folds it
    f"{MARKER}" + "c" * 250,
]


def _paths(worktree: Path, sentinel: Path) -> st.SearchStrategy[str]:
    absolute = [f"{worktree}/", f"{sentinel}/", f"{worktree}/../", f"{worktree}/src/out-dir/"]
    built = st.builds(
        lambda prefix, parts, name: prefix + "/".join(parts) + ("/" if parts else "") + name,
        st.sampled_from(PREFIXES + absolute),
        st.lists(st.sampled_from(SEGMENTS), max_size=6),
        st.sampled_from(NAMES),
    )
    # Existing files outside the worktree, or inside it but off limits, spelled many ways.
    targets = st.sampled_from(
        [
            ".git",
            ".git/config",
            ".git/HEAD",
            "./.git/../.git/config",
            ".studio/vite.config.mjs",
            ".studio/studio.config.json",
            "src/out-file",
            "src/out-dir/keep.txt",
            "src/up-link/keep.txt",
            "src/abs-link/keep.txt",
            "../../mirrors/ui-kit.git/config",
            "../../mirrors/ui-kit.git/HEAD",
            f"{sentinel}/keep.txt",
            "../" * 12 + str(sentinel / "keep.txt").lstrip("/"),
        ]
    )
    noise = st.text(min_size=1, max_size=80).map(lambda text: text + "/" + MARKER)
    return st.one_of(built, targets, noise)


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable: {exc.__class__.__name__}"


def _protected(sandbox: ComponentStudioSandbox, sentinel: Path) -> dict[str, str]:
    """Hashes of the files no command may touch."""
    worktree = sandbox.worktree_path
    mirror = sandbox.layout.mirror("ui-kit")
    files = [*sentinel.rglob("*"), worktree / ".git", mirror / "config", mirror / "HEAD"]
    files += [p for p in (worktree / ".studio").iterdir() if p.is_file()]
    return {str(p): _digest(p) for p in files if p.is_file()}


def _escaped(roots: list[Path], worktree: Path) -> list[str]:
    """Files or directories named with the marker anywhere outside the worktree."""
    found = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            if here == worktree:
                dirnames.clear()
                continue
            for name in dirnames + filenames:
                if MARKER in unicodedata.normalize("NFKC", name).lower():
                    found.append(str(here / name))
            if root == Path("/tmp"):
                dirnames.clear()  # /tmp's top level only: other users' trees are not ours
    return found


def test_fuzzed_paths_never_reach_outside_the_worktree(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox("sb_fuzz0001")
    sandbox.on_setup()
    worktree = sandbox.worktree_path
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text(SECRET)
    # Symlinks a user cannot make through the API, but a repository may contain.
    (worktree / "src" / "out-dir").symlink_to(sentinel, target_is_directory=True)
    (worktree / "src" / "out-file").symlink_to(sentinel / "keep.txt")
    (worktree / "src" / "abs-link").symlink_to("/tmp", target_is_directory=True)
    (worktree / "src" / "up-link").symlink_to("../..", target_is_directory=True)
    (worktree / "src" / "loop").symlink_to("loop")
    protected = _protected(sandbox, sentinel)
    tmp_before = {p.name for p in Path("/tmp").iterdir()}
    outcomes: dict[str, int] = {}

    @hypothesis.settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(
        path=_paths(worktree, sentinel),
        command=st.sampled_from(["write_file", "write_files", "delete_file", "read_file"]),
    )
    # The escapes that matter most are always tried, whatever the draw.
    @hypothesis.example(path="src/out-dir/keep.txt", command="write_file")
    @hypothesis.example(path="src/out-file", command="write_file")
    @hypothesis.example(path="src/out-file", command="read_file")
    @hypothesis.example(path="src/out-dir/keep.txt", command="delete_file")
    @hypothesis.example(path=f"src/up-link/{MARKER}.txt", command="write_file")
    @hypothesis.example(path=f"src/abs-link/{MARKER}.txt", command="write_files")
    @hypothesis.example(path=f"../{MARKER}.txt", command="write_file")
    @hypothesis.example(path=".git/config", command="write_file")
    @hypothesis.example(path=".studio/vite.config.mjs", command="delete_file")
    @hypothesis.example(path=f"src/{MARKER}\u0000.txt", command="write_file")
    @hypothesis.example(path=f"\uff0e\uff0e/{MARKER}.txt", command="write_file")
    def attempt(path: str, command: str) -> None:
        body: dict[str, object] = {"command": command, "file_path": path}
        if command in ("write_file",):
            body["content"] = f"{MARKER} content\n"
        if command == "write_files":
            body = {
                "command": command,
                "files": [
                    {"file_path": f"src/fine-{MARKER}.txt", "content": "fine\n"},
                    {"file_path": path, "content": f"{MARKER}\n"},
                ],
            }
        try:
            parsed = command_adapter.validate_python(body)
        except ValidationError:
            outcomes["invalid"] = outcomes.get("invalid", 0) + 1
            return
        try:
            result = sandbox.on_execute(parsed)
        except (InvalidRequest, NotFound) as exc:
            # A refusal: clear, and of the client's making (4xx), never a git or I/O failure.
            assert exc.message
            outcomes[exc.code] = outcomes.get(exc.code, 0) + 1
        except StudioError as exc:  # pragma: no cover - a failure report
            raise AssertionError(f"{command} {path!r}: {exc.code}: {exc.message}") from exc
        else:
            outcomes["accepted"] = outcomes.get("accepted", 0) + 1
            assert SECRET not in (result.content or ""), path
            for name in result.files or []:
                landed = (worktree / name).resolve()
                assert landed.is_relative_to(worktree.resolve()), (path, name)
                assert not landed.is_relative_to(worktree / ".studio"), (path, name)
        assert _protected(sandbox, sentinel) == protected, path
        assert sandbox.state is SandboxState.RUNNING

    attempt()
    assert _escaped([tmp_path, Path("/tmp")], worktree) == []
    new_in_tmp = {p.name for p in Path("/tmp").iterdir()} - tmp_before
    assert not [n for n in new_in_tmp if MARKER in unicodedata.normalize("NFKC", n).lower()]
    assert _protected(sandbox, sentinel) == protected
    assert (sentinel / "keep.txt").read_text() == SECRET
    assert sorted(p.name for p in sentinel.iterdir()) == ["keep.txt"]
    # The generator did reach both sides: refusals, and some writes that were fine.
    assert outcomes.get("path_not_allowed", 0) > 0, outcomes
    assert outcomes.get("accepted", 0) > 0, outcomes
    # The sandbox still works, and git agrees with the disk.
    done = sandbox.on_execute(
        command_adapter.validate_python(
            {"command": "write_file", "file_path": "src/after-fuzz.txt", "content": "ok\n"}
        )
    )
    assert done.commit_hash == git(worktree, "rev-parse", "HEAD")
    tracked = git(worktree, "ls-files").splitlines()
    assert not [t for t in tracked if t.startswith((".git/", ".studio/"))]
