"""Path validation and file operations inside a worktree, on a real filesystem."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studio.errors import InvalidRequest, NotFound, PathNotAllowed, PayloadTooLarge
from studio.paths import (
    FileListing,
    atomic_write,
    is_protected_name,
    list_files,
    normalize_user_path,
    read_text_file,
    relative_inside,
    resolve_inside,
    safe_delete,
    write_file,
)

# --- a worktree with traps -------------------------------------------------


def build_tree(base: Path) -> Path:
    """``base/root`` (the worktree) and ``base/outside`` plus links between them."""
    root = base / "root"
    outside = base / "outside"
    (root / "src" / "components").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (root / ".studio").mkdir()
    (root / "node_modules" / "react").mkdir(parents=True)
    (root / "src" / "Button.tsx").write_text("export const Button = 1;\n")
    (root / "README.md").write_text("# readme\n")
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    (outside / "dir").mkdir()
    (outside / "dir" / "inner.txt").write_text("inner\n")
    (base / "sibling.txt").write_text("sibling\n")
    links = {
        "out_rel": "../outside",
        "out_abs": str(outside),
        "out_file": "../outside/secret.txt",
        "out_dangling": "../outside/not-yet",
        "out_and_back": "../outside/../root/src",
        "in_dir": "src",
        "in_abs": str(root / "src"),
        "in_file": "src/Button.tsx",
        "in_dangling": "src/new.tsx",
        "to_git": ".git",
        "to_git_abs": str(root / ".git"),
        "to_root": ".",
        "loop_a": "loop_b",
        "loop_b": "loop_a",
        "self_loop": "self_loop",
        "chain1": "chain2",
        "chain2": "src/components",
        "src/up": "..",
        "src/up_up": "../..",
        "src/components/deep_out": "../../../outside/dir",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path)


def snapshot(base: Path, skip: Path) -> dict[str, tuple[str, str]]:
    """Every entry under ``base`` except those under ``skip`` (links not followed)."""
    result: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        current = Path(dirpath)
        if current == skip:
            dirnames[:] = [d for d in dirnames if d == ".git"]
            filenames = []
        for name in dirnames + filenames:
            path = current / name
            info = path.lstat()
            key = str(path.relative_to(base))
            if stat.S_ISLNK(info.st_mode):
                result[key] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                result[key] = ("dir", oct(info.st_mode))
            else:
                result[key] = ("file", path.read_text(errors="replace") + oct(info.st_mode))
    return result


# --- rules, one by one -----------------------------------------------------


@pytest.mark.parametrize(
    ("user_path", "rule"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (".", "root"),
        ("./", "root"),
        ("//", "absolute"),
        ("/etc/passwd", "absolute"),
        ("C:\\Windows\\x", "absolute"),
        ("c:foo", "absolute"),
        ("\\\\server\\share\\x", "absolute"),
        ("\\x", "absolute"),
        ("src\\Button.tsx", "backslash"),
        ("..", "'..'"),
        ("../outside/secret.txt", "'..'"),
        ("src/../../outside", "'..'"),
        ("src/../README.md", "'..'"),
        ("src/Butt\x00on.tsx", "NUL"),
        ("src/a\nb.tsx", "control"),
        ("src/\x1b[31m.tsx", "control"),
        ("src/\x7f.tsx", "control"),
        ("src/\u200b.git/x", "invisible"),
        ("src/\u202eabc.tsx", "invisible"),
        ("src/\ufeffa.tsx", "invisible"),
        (".git/config", "protected"),
        (".git", "protected"),
        ("src/.git/hooks/pre-commit", "protected"),
        (".GIT/config", "protected"),
        (".Git/config", "protected"),
        (".studio/vite.config.ts", "protected"),
        (".STUDIO/x", "protected"),
        ("node_modules/react/index.js", "protected"),
        ("Node_Modules/x", "protected"),
        ("packages/ui/node_modules/x", "protected"),
        ("\uff0egit/config", "protected"),  # full-width full stop
        ("\ufe52git/config", "protected"),  # small full stop
        (".\uff47\uff49\uff54/config", "protected"),  # full-width letters
        (".git./config", "protected"),
        (".git /config", "protected"),
        (".git. . /config", "protected"),
        ("GIT~1/config", "protected"),
        ("\uff0e\uff0e/outside", "imitates"),  # full-width ".."
        ("\uff0e", "imitates"),
        ("a\uff0fb", "imitates"),  # full-width solidus
        ("a\u2215b", "backslash-free"),  # division slash is not NFKC-folded to "/"
        ("a" * 256, "255 bytes"),
        ("\u00e9" * 128, "255 bytes"),  # 256 bytes in UTF-8
        ("/".join(["a" * 200] * 21), "4096 bytes"),
        ("src/\ud800.tsx", "Unicode"),
    ],
)
def test_rule_rejects(tree: Path, user_path: str, rule: str) -> None:
    if rule == "backslash-free":
        # Not every slash look-alike is folded: this one is an ordinary file name.
        assert resolve_inside(tree, user_path) == tree / user_path
        return
    with pytest.raises(PathNotAllowed) as info:
        resolve_inside(tree, user_path)
    assert rule.lower() in str(info.value).lower()
    assert info.value.code == "path_not_allowed"


def test_non_string_is_rejected(tree: Path) -> None:
    with pytest.raises(PathNotAllowed, match="must be a string"):
        resolve_inside(tree, b"src/x.tsx")  # type: ignore[arg-type]


def test_long_path_message_is_shortened(tree: Path) -> None:
    with pytest.raises(PathNotAllowed) as info:
        resolve_inside(tree, "a" * 5000)
    assert len(str(info.value)) < 300
    assert "5000 characters" in str(info.value)


@pytest.mark.parametrize(
    ("user_path", "expected"),
    [
        ("src/Button.tsx", "src/Button.tsx"),
        ("./src//Button.tsx", "src/Button.tsx"),
        ("src/./new/File.tsx", "src/new/File.tsx"),
        ("src/Button.tsx/", "src/Button.tsx"),
        ("a" * 255, "a" * 255),
        ("src/caf\u00e9.tsx", "src/caf\u00e9.tsx"),
        ("src/.gitignore", "src/.gitignore"),
        (".github/workflows/ci.yml", ".github/workflows/ci.yml"),
        ("git/x", "git/x"),
        ("studio/x", "studio/x"),
        ("my.git/x", "my.git/x"),
        ("node_modules_backup/x", "node_modules_backup/x"),
        ("...", "..."),
        ("a..b", "a..b"),
        ("src/ä/日本語.tsx", "src/ä/日本語.tsx"),
    ],
)
def test_allowed_paths(tree: Path, user_path: str, expected: str) -> None:
    assert normalize_user_path(user_path) == expected
    assert relative_inside(tree, user_path) == expected
    assert resolve_inside(tree, user_path) == tree / expected


def test_name_is_not_rewritten(tree: Path) -> None:
    # NFKC is for checking only: the decomposed spelling names its own file.
    decomposed = "src/cafe\u0301.tsx"
    assert relative_inside(tree, decomposed) == decomposed


# --- symbolic links -----------------------------------------------------------


@pytest.mark.parametrize(
    ("user_path", "rule"),
    [
        ("out_rel", "outside"),
        ("out_rel/secret.txt", "outside"),
        ("out_rel/new/file.txt", "outside"),
        ("out_abs/secret.txt", "outside"),
        ("out_file", "outside"),
        ("out_dangling", "outside"),
        ("out_and_back/Button.tsx", "outside"),
        ("src/up_up/outside/secret.txt", "outside"),
        ("src/components/deep_out/inner.txt", "outside"),
        ("to_git/config", "protected"),
        ("to_git_abs/config", "protected"),
        ("to_git", "protected"),
        ("to_root", "root"),
        ("src/up", "root"),
        ("loop_a", "loop"),
        ("loop_a/x", "loop"),
        ("self_loop", "loop"),
    ],
)
def test_symlink_rules(tree: Path, user_path: str, rule: str) -> None:
    with pytest.raises(PathNotAllowed, match=rule):
        resolve_inside(tree, user_path)


@pytest.mark.parametrize(
    ("user_path", "expected"),
    [
        ("in_dir/Button.tsx", "src/Button.tsx"),
        ("in_abs/Button.tsx", "src/Button.tsx"),
        ("in_file", "src/Button.tsx"),
        ("in_dangling", "src/new.tsx"),
        ("chain1/Card.tsx", "src/components/Card.tsx"),
        ("src/up/README.md", "README.md"),
        ("to_root/README.md", "README.md"),
        ("in_dir/up/in_dir/Button.tsx", "src/Button.tsx"),
    ],
)
def test_symlinks_inside_resolve_to_their_target(tree: Path, user_path: str, expected: str) -> None:
    assert relative_inside(tree, user_path) == expected
    resolved = resolve_inside(tree, user_path)
    assert resolved == tree / expected
    assert not any(p.is_symlink() for p in [resolved, *resolved.parents])


def test_root_given_through_a_link(tmp_path: Path) -> None:
    root = build_tree(tmp_path)
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    # An absolute link spelled with the alias still counts as inside.
    (root / "via_alias").symlink_to(alias / "src")
    assert resolve_inside(alias, "via_alias/Button.tsx") == root / "src" / "Button.tsx"
    assert relative_inside(alias, "src/Button.tsx") == "src/Button.tsx"


def test_long_link_chain_within_limit(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "l0").symlink_to("target")
    for i in range(1, 40):
        (root / f"l{i}").symlink_to(f"l{i - 1}")
    assert resolve_inside(root, "l39") == root / "target"
    (root / "l40").symlink_to("l39")
    (root / "l41").symlink_to("l40")
    with pytest.raises(PathNotAllowed, match="too many levels"):
        resolve_inside(root, "l41")


def test_path_through_a_file(tree: Path) -> None:
    # Not a policy matter: the path is inside, writing there fails cleanly.
    target = resolve_inside(tree, "README.md/child.txt")
    assert target == tree / "README.md" / "child.txt"
    with pytest.raises(InvalidRequest, match="directory and a file"):
        write_file(tree, "README.md/child.txt", "x")
    assert (tree / "README.md").read_text() == "# readme\n"


@pytest.mark.parametrize(
    ("name", "protected"),
    [
        (".git", True),
        (".GiT", True),
        ("\uff0e\uff47\uff49\uff54", True),
        (".git...", True),
        ("node_modules", True),
        ("NODE_MODULES ", True),
        (".studio", True),
        ("git~1", True),
        (".gitignore", False),
        ("git", False),
        ("studio", False),
        ("", False),
    ],
)
def test_is_protected_name(name: str, protected: bool) -> None:
    assert is_protected_name(name) is protected


# --- atomic_write ---------------------------------------------------------


def test_atomic_write_creates_parents_and_writes(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c.txt"
    atomic_write(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    atomic_write(target, b"\x00\xffbytes")
    assert target.read_bytes() == b"\x00\xffbytes"
    atomic_write(target, bytearray(b"array"))
    assert target.read_bytes() == b"array"
    assert sorted(p.name for p in target.parent.iterdir()) == ["c.txt"]


def test_atomic_write_empty_content(tmp_path: Path) -> None:
    target = tmp_path / "empty.txt"
    target.write_text("was here")
    atomic_write(target, "")
    assert target.read_bytes() == b""


def test_atomic_write_keeps_existing_mode(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o751)
    atomic_write(script, "#!/bin/sh\necho hi\n")
    assert stat.S_IMODE(script.stat().st_mode) == 0o751
    assert script.read_text() == "#!/bin/sh\necho hi\n"


def test_atomic_write_new_file_gets_umask_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    target = tmp_path / "new.txt"
    atomic_write(target, "x")
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_atomic_write_replaces_inode(tmp_path: Path) -> None:
    # A hard link elsewhere keeps the old content: the writer never writes in place.
    target = tmp_path / "file.txt"
    target.write_text("old")
    other = tmp_path / "hardlink.txt"
    os.link(target, other)
    atomic_write(target, "new")
    assert target.read_text() == "new"
    assert other.read_text() == "old"


def test_atomic_write_replaces_a_link_instead_of_following_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    link = tmp_path / "link.txt"
    link.symlink_to(outside)
    atomic_write(link, "new")
    assert outside.read_text() == "keep"
    assert not link.is_symlink()
    assert link.read_text() == "new"


def test_atomic_write_onto_a_directory_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path / "dir", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["dir"]


def test_atomic_write_rejects_other_types(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="not int"):
        atomic_write(tmp_path / "file.txt", 42)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


FILE_TOO_BIG_CHILD = """
import resource, signal, sys
from pathlib import Path
from studio.paths import atomic_write
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
try:
    atomic_write(Path(sys.argv[1]), b"n" * 100_000)
except OSError as exc:
    print(type(exc).__name__, exc.errno)
"""


def test_atomic_write_failure_midway_leaves_old_content(tmp_path: Path) -> None:
    # A real short write: the file size limit stops the temp file at 1000 bytes.
    target = tmp_path / "file.txt"
    target.write_text("old")
    result = subprocess.run(
        [sys.executable, "-c", FILE_TOO_BIG_CHILD, str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["OSError", str(errno.EFBIG)]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_atomic_write_in_read_only_directory_leaves_nothing(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "file.txt").write_text("old")
    locked.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            atomic_write(locked / "file.txt", "new")
        assert (locked / "file.txt").read_text() == "old"
        assert [p.name for p in locked.iterdir()] == ["file.txt"]
    finally:
        locked.chmod(0o755)


def test_concurrent_atomic_writes_leave_one_complete_content(tmp_path: Path) -> None:
    target = tmp_path / "shared.txt"
    # Large and distinct contents: a torn write would mix two of them.
    contents = [(f"writer {i}\n" * 20_000).encode() for i in range(8)]
    barrier = threading.Barrier(len(contents))
    errors: list[BaseException] = []
    seen: list[bytes] = []
    stop = threading.Event()

    def writer(data: bytes) -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(5):
                atomic_write(target, data)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.append(target.read_bytes())
            except FileNotFoundError:
                continue

    threads = [threading.Thread(target=writer, args=(data,)) for data in contents]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stop.set()
    watcher.join(timeout=60)
    assert not errors
    assert target.read_bytes() in contents
    assert all(snapshot_content in contents for snapshot_content in seen)
    assert [p.name for p in tmp_path.iterdir()] == ["shared.txt"]


# --- write_file, safe_delete, read_text_file --------------------------------


def test_write_file_through_an_inside_link(tree: Path) -> None:
    target = write_file(tree, "in_dir/New.tsx", "export {};\n")
    assert target == tree / "src" / "New.tsx"
    assert (tree / "src" / "New.tsx").read_text() == "export {};\n"


def test_write_file_size_limit(tree: Path) -> None:
    write_file(tree, "src/ok.txt", "x" * 10, max_bytes=10)
    with pytest.raises(PayloadTooLarge, match="11 bytes; the limit is 10") as info:
        write_file(tree, "src/big.txt", "x" * 11, max_bytes=10)
    assert info.value.details["limit"] == 10
    assert not (tree / "src" / "big.txt").exists()
    # The limit is in bytes, not characters.
    with pytest.raises(PayloadTooLarge):
        write_file(tree, "src/big.txt", "\u00e9" * 6, max_bytes=10)


def test_write_file_onto_a_directory(tree: Path) -> None:
    with pytest.raises(InvalidRequest, match="cannot write 'src'"):
        write_file(tree, "src", "x")


def test_write_file_refuses_protected(tree: Path) -> None:
    with pytest.raises(PathNotAllowed):
        write_file(tree, ".git/config", "evil")
    assert (tree / ".git" / "config").read_text() == "[core]\n"


def test_safe_delete(tree: Path) -> None:
    assert safe_delete(tree, "README.md") == tree / "README.md"
    assert not (tree / "README.md").exists()
    with pytest.raises(NotFound, match=r"no file 'README\.md'"):
        safe_delete(tree, "README.md")
    with pytest.raises(NotFound):
        safe_delete(tree, "README.md/child")
    with pytest.raises(InvalidRequest, match="is a directory"):
        safe_delete(tree, "src")
    with pytest.raises(PathNotAllowed):
        safe_delete(tree, "out_file")
    assert (tree.parent / "outside" / "secret.txt").exists()


def test_safe_delete_through_inside_link_deletes_the_target(tree: Path) -> None:
    assert safe_delete(tree, "in_file") == tree / "src" / "Button.tsx"
    assert not (tree / "src" / "Button.tsx").exists()


def test_read_text_file(tree: Path) -> None:
    assert read_text_file(tree, "src/Button.tsx", 1000) == "export const Button = 1;\n"
    assert read_text_file(tree, "in_file", 1000) == "export const Button = 1;\n"
    assert read_text_file(tree, "README.md", len("# readme\n")) == "# readme\n"
    with pytest.raises(PayloadTooLarge, match="larger than 8 bytes"):
        read_text_file(tree, "README.md", 8)
    with pytest.raises(NotFound):
        read_text_file(tree, "src/Missing.tsx", 1000)
    with pytest.raises(NotFound):
        read_text_file(tree, "README.md/x", 1000)
    with pytest.raises(InvalidRequest, match="not a regular file"):
        read_text_file(tree, "src", 1000)
    with pytest.raises(PathNotAllowed):
        read_text_file(tree, "out_file", 1000)
    (tree / "binary.bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(InvalidRequest, match="not UTF-8"):
        read_text_file(tree, "binary.bin", 1000)


def test_read_text_file_does_not_hang_on_a_fifo(tree: Path) -> None:
    os.mkfifo(tree / "pipe")
    with pytest.raises(InvalidRequest, match="not a regular file"):
        read_text_file(tree, "pipe", 1000)
    assert "pipe" not in list_files(tree).files


# --- list_files -------------------------------------------------------------


def test_list_files_skips_protected_and_outside(tree: Path) -> None:
    (tree / "src" / ".studio-write-0123456789abcdef.tmp").write_text("half")
    (tree / "src" / "components" / "Card.tsx").write_text("card")
    (tree / "src" / "components" / ".GIT").mkdir()
    (tree / "src" / "components" / ".GIT" / "x").write_text("x")
    listing = list_files(tree)
    # Links to directories are not followed; links to files inside are listed.
    assert listing == FileListing(
        files=["README.md", "in_file", "src/Button.tsx", "src/components/Card.tsx"],
        truncated=False,
    )


def test_list_files_subdir_and_limit(tree: Path) -> None:
    for i in range(5):
        (tree / "src" / "components" / f"C{i}.tsx").write_text("c")
    assert list_files(tree, "src/components").files == [
        f"src/components/C{i}.tsx" for i in range(5)
    ]
    assert list_files(tree, "./").files == list_files(tree, "").files
    limited = list_files(tree, "src", limit=3)
    assert limited.truncated is True
    assert len(limited.files) == 3
    assert limited == list_files(tree, "src", limit=3)
    exact = list_files(tree, "src/components", limit=5)
    assert exact.truncated is False and len(exact.files) == 5


def test_list_files_errors(tree: Path) -> None:
    with pytest.raises(NotFound, match="no directory"):
        list_files(tree, "missing")
    with pytest.raises(InvalidRequest, match="is a file"):
        list_files(tree, "README.md")
    with pytest.raises(PathNotAllowed):
        list_files(tree, "out_rel")
    with pytest.raises(PathNotAllowed):
        list_files(tree, ".git")
    with pytest.raises(PathNotAllowed):
        list_files(tree, "/")


def test_list_files_through_an_inside_dir_link(tree: Path) -> None:
    assert list_files(tree, "in_dir").files == ["src/Button.tsx"]


# --- fuzzing ------------------------------------------------------------------

SEGMENTS = st.sampled_from(
    [
        "..",
        ".",
        "",
        "src",
        "components",
        "Button.tsx",
        "new.tsx",
        ".git",
        ".GIT",
        "\uff0egit",
        ".studio",
        "node_modules",
        "out_rel",
        "out_abs",
        "out_file",
        "out_dangling",
        "out_and_back",
        "in_dir",
        "in_abs",
        "in_file",
        "in_dangling",
        "to_git",
        "to_root",
        "loop_a",
        "chain1",
        "up",
        "up_up",
        "deep_out",
        "outside",
        "secret.txt",
        "README.md",
        "..\\..",
        "C:",
        "\x00",
        "\u2024\u2024",  # one-dot leaders
        "\uff0e\uff0e",
        "a" * 300,
    ]
)
LINKY = st.sampled_from(["src/up", "src/up_up", "src/components/deep_out", "in_dir/up"])
PATHS = st.one_of(
    # Mostly names that exist in the tree, so links are really walked.
    st.lists(st.one_of(SEGMENTS, LINKY), min_size=1, max_size=8).map("/".join),
    st.lists(st.one_of(SEGMENTS, LINKY), min_size=1, max_size=4).map("/".join),
    st.lists(st.one_of(SEGMENTS, st.text(max_size=12)), min_size=0, max_size=8).map("/".join),
    st.lists(SEGMENTS, min_size=1, max_size=6).map(lambda parts: "/" + "/".join(parts)),
    st.text(max_size=40),
    st.text(alphabet="./\\ab", max_size=30),
)


@pytest.fixture(scope="module")
def fuzz_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("fuzz")
    yield build_tree(base)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(user_path=PATHS)
def test_fuzz_either_refused_or_inside_and_outside_untouched(
    fuzz_tree: Path, user_path: str
) -> None:
    base = fuzz_tree.parent
    before = snapshot(base, skip=fuzz_tree)
    try:
        resolved = resolve_inside(fuzz_tree, user_path)
    except PathNotAllowed:
        return
    real = Path(os.path.realpath(resolved))
    assert real.is_relative_to(os.path.realpath(fuzz_tree))
    assert real != Path(os.path.realpath(fuzz_tree))
    relative = real.relative_to(os.path.realpath(fuzz_tree))
    assert not any(is_protected_name(part) for part in relative.parts)
    # A directory or file in the way may make the write fail; escaping may not.
    with contextlib.suppress(OSError):
        atomic_write(resolved, b"fuzz")
    assert snapshot(base, skip=fuzz_tree) == before


@settings(max_examples=300, deadline=None)
@given(user_path=PATHS)
def test_fuzz_normalize_is_pure_and_stable(user_path: str) -> None:
    try:
        normalized = normalize_user_path(user_path)
    except PathNotAllowed:
        return
    assert normalize_user_path(normalized) == normalized
    assert not normalized.startswith("/")
    assert ".." not in normalized.split("/")
    assert "\\" not in normalized and "\x00" not in normalized
