"""File paths inside a sandbox's worktree, and the file operations built on them.

Every path a user (a designer, an AI agent) sends is relative to the worktree
and goes through :func:`resolve_inside` before anything touches the disk. It is
refused with :class:`~studio.errors.PathNotAllowed`, naming the rule, when it:

- is empty, or names the worktree root itself;
- is absolute (``/etc``, ``C:\\x``, ``C:x``, ``\\\\server\\share``);
- contains a backslash, a NUL byte, a control or invisible formatting character;
- has a ``..`` component (even one that would stay inside);
- has a component that is, or looks like, ``.git``, ``.studio`` or
  ``node_modules`` once case is folded and Unicode is NFKC-normalised (full-width
  dots, ``.GIT``, trailing dots and spaces that Windows and macOS ignore);
- has a component longer than 255 bytes or is longer than 4096 bytes (UTF-8);
- passes through a symbolic link (anywhere, dangling or not) whose target lies
  outside the worktree or inside one of the protected directories, or through
  a chain of links deeper than the kernel would follow.

Symbolic links are resolved here, one component at a time, the way the kernel
would; the path handed back contains no link, so what the caller then opens is
exactly what was checked.

Writes are atomic (:func:`atomic_write`): Vite reads a file the moment its
watcher fires and, with in-place writes, sometimes sees it empty and keeps the
page stale. A temporary file in the same directory is written, flushed to disk,
then renamed over the target.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from studio.errors import InvalidRequest, NotFound, PathNotAllowed, PayloadTooLarge

__all__ = [
    "MAX_COMPONENT_BYTES",
    "MAX_PATH_BYTES",
    "PROTECTED_NAMES",
    "FileListing",
    "atomic_write",
    "is_protected_name",
    "list_files",
    "normalize_user_path",
    "read_text_file",
    "relative_inside",
    "resolve_inside",
    "safe_delete",
    "write_file",
]

PROTECTED_NAMES = frozenset({".git", ".studio", "node_modules"})
MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4096
# Linux gives up after 40 links (ELOOP); following more would only spin.
_MAX_SYMLINK_HOPS = 40
# NTFS 8.3 short name of ".git"; git itself refuses it for the same reason.
_PROTECTED_FOLDED = PROTECTED_NAMES | {"git~1"}
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
_TEMP_PREFIX = ".studio-write-"
_TEMP_SUFFIX = ".tmp"


def _reject(user_path: object, rule: str) -> PathNotAllowed:
    shown = repr(user_path)
    if len(shown) > 120:
        # A 4 KiB path quoted whole would bury the rule it broke.
        shown = shown[:100] + f"...' ({len(str(user_path))} characters)"
    return PathNotAllowed(f"path {shown} is not allowed: {rule}", path=str(user_path)[:1024])


def _folded(component: str) -> str:
    # Compatibility-normalised and case-folded: ".GIT" and a full-width ".git" meet ".git".
    return unicodedata.normalize("NFKC", component).casefold()


def is_protected_name(component: str) -> bool:
    """Whether a single path component is, or passes for, a protected directory name."""
    # Windows and old macOS drop trailing dots and spaces, so ".git. " is ".git" there.
    return _folded(component).rstrip(" .") in _PROTECTED_FOLDED


def _bad_character(component: str) -> str | None:
    for char in component:
        category = unicodedata.category(char)
        # Cc: NUL and other control characters. Cf: zero-width and bidi marks,
        # which make one name look like another (and HFS+ ignores some of them).
        if category in ("Cc", "Cf"):
            return f"U+{ord(char):04X}"
    return None


def _components(user_path: object) -> list[str]:
    """The checked components of ``user_path``; raises :class:`PathNotAllowed`."""
    if not isinstance(user_path, str):
        raise _reject(user_path, "a path must be a string")
    if not user_path.strip():
        raise _reject(user_path, "the path is empty")
    if user_path.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(user_path):
        raise _reject(
            user_path, "absolute paths are not allowed; give a path relative to the repository"
        )
    if "\x00" in user_path:
        raise _reject(user_path, "NUL bytes are not allowed")
    if "\\" in user_path:
        raise _reject(user_path, "backslashes are not allowed; separate directories with '/'")
    bad = _bad_character(user_path)
    if bad is not None:
        raise _reject(user_path, f"control or invisible formatting character {bad} is not allowed")
    try:
        encoded_length = len(user_path.encode("utf-8"))
    except UnicodeEncodeError:
        raise _reject(user_path, "the path is not valid Unicode (lone surrogate)") from None
    if encoded_length > MAX_PATH_BYTES:
        raise _reject(user_path, f"the path is longer than {MAX_PATH_BYTES} bytes")
    parts = [part for part in user_path.split("/") if part not in ("", ".")]
    if not parts:
        raise _reject(user_path, "it names the repository root, not a file in it")
    for part in parts:
        if part == "..":
            raise _reject(user_path, "'..' components are not allowed")
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise _reject(user_path, f"a component is longer than {MAX_COMPONENT_BYTES} bytes")
        folded = _folded(part)
        # NFKC turns full-width and small-form dots and slashes into ASCII ones:
        # a name that merely looks like ".." or "a/b" is refused as a trick.
        if "/" in folded or "\\" in folded or folded.strip(" ") in (".", ".."):
            raise _reject(user_path, f"component {part!r} imitates a separator or '..'")
        if is_protected_name(part):
            raise _reject(
                user_path,
                f"component {part!r} names a protected directory "
                f"({', '.join(sorted(PROTECTED_NAMES))})",
            )
    return parts


def normalize_user_path(user_path: str) -> str:
    """The checked, normalised form of ``user_path`` (``./a//b`` -> ``a/b``); no disk access."""
    return "/".join(_components(user_path))


def _is_inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _resolve(root: Path, user_path: str) -> tuple[Path, str]:
    """Walk ``user_path`` below ``root`` like the kernel would; see :func:`resolve_inside`."""
    parts = _components(user_path)
    root_real = Path(os.path.realpath(root))
    # A link may spell the root the way the caller did rather than canonically.
    root_spellings = (str(root_real), str(Path(root).absolute()))
    current = root_real
    pending = list(parts)
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            # Only reachable through a link target; ``current`` holds no link,
            # so its lexical parent is its real parent.
            if current == root_real:
                raise _reject(user_path, "a symbolic link on the way points outside the repository")
            current = current.parent
            continue
        candidate = current / part
        try:
            is_link = stat.S_ISLNK(candidate.lstat().st_mode)
        except (FileNotFoundError, NotADirectoryError):
            is_link = False
        if not is_link:
            current = candidate
            continue
        hops += 1
        if hops > _MAX_SYMLINK_HOPS:
            raise _reject(user_path, "too many levels of symbolic links (a link loop?)")
        target = str(candidate.readlink())
        if target.startswith("/"):
            base = next((r for r in root_spellings if _is_inside(target, r)), None)
            if base is None:
                raise _reject(user_path, "a symbolic link on the way points outside the repository")
            # Textually, not with relpath: normalising "a/link/../b" would skip the link.
            current = root_real
            target = target[len(base) :]
        pending[:0] = target.split("/")
    if current == root_real:
        raise _reject(user_path, "it resolves to the repository root, not a file in it")
    relative = current.relative_to(root_real).as_posix()
    if any(is_protected_name(part) for part in relative.split("/")):
        raise _reject(user_path, "a symbolic link on the way leads into a protected directory")
    return current, relative


def resolve_inside(root: Path, user_path: str) -> Path:
    """The real, link-free path that ``user_path`` names inside ``root``.

    ``root`` is the worktree; ``user_path`` is relative to it. Raises
    :class:`~studio.errors.PathNotAllowed` naming the broken rule (see the
    module docstring). The file itself need not exist.
    """
    return _resolve(root, user_path)[0]


def relative_inside(root: Path, user_path: str) -> str:
    """The POSIX path, relative to ``root``, of the file ``user_path`` resolves to."""
    return _resolve(root, user_path)[1]


def _fsync_directory(directory: Path) -> None:
    # The rename itself is only durable once the directory entry is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        # Some filesystems refuse fsync on a directory; the write itself succeeded.
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _as_bytes(data: str | bytes | bytearray | memoryview) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    # bytes(42) would quietly be 42 NUL bytes.
    raise TypeError(f"content must be str or bytes, not {type(data).__name__}")


def atomic_write(
    path: Path, data: str | bytes | bytearray | memoryview, *, fsync: bool = True
) -> None:
    """Replace ``path``'s content with ``data`` (a str is written as UTF-8) atomically.

    Readers see either the old content or the new one, never a part. With
    ``fsync`` the file and the rename are on disk before this returns. Parent
    directories are created; an existing file keeps its permission bits, a new
    one gets the default mode the umask allows. ``path`` is replaced as a
    directory entry: a link there is replaced, not written through (callers pass
    paths from :func:`resolve_inside`, which contain no links). On error the
    temporary file is removed and the old content stays.
    """
    payload = _as_bytes(data)
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    keep_mode: int | None = None
    with contextlib.suppress(FileNotFoundError):
        existing = os.lstat(path)
        if stat.S_ISREG(existing.st_mode):
            keep_mode = stat.S_IMODE(existing.st_mode)
    # Not named after the target: Vite globs such as src/**/*.tsx must not match it.
    temp = directory / f"{_TEMP_PREFIX}{secrets.token_hex(8)}{_TEMP_SUFFIX}"
    # os.open (unlike mkstemp's 0600) lets the kernel apply the umask to 0666.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        try:
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if keep_mode is not None:
                os.fchmod(fd, keep_mode)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    if fsync:
        _fsync_directory(directory)


def write_file(
    root: Path,
    user_path: str,
    data: bytes | str,
    max_bytes: int | None = None,
    *,
    fsync: bool = True,
) -> Path:
    """Check ``user_path``, then write ``data`` to it atomically; returns the real path.

    ``fsync`` as for :func:`atomic_write`.

    Raises :class:`PathNotAllowed` for a forbidden path, :class:`PayloadTooLarge`
    past ``max_bytes`` and :class:`InvalidRequest` when a directory is in the way.
    """
    payload = _as_bytes(data)
    if max_bytes is not None and len(payload) > max_bytes:
        raise PayloadTooLarge(
            f"content of {user_path!r} is {len(payload)} bytes; the limit is {max_bytes}",
            size=len(payload),
            limit=max_bytes,
        )
    target = resolve_inside(root, user_path)
    try:
        atomic_write(target, payload, fsync=fsync)
    except (IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
        raise InvalidRequest(
            f"cannot write {user_path!r}: {exc.strerror or exc}; a directory and a file "
            "cannot share a name",
            path=user_path,
        ) from exc
    return target


def safe_delete(root: Path, user_path: str) -> Path:
    """Delete the file ``user_path`` inside ``root``; returns the real path deleted.

    Raises :class:`PathNotAllowed` for a forbidden path, :class:`NotFound` when
    there is no such file and :class:`InvalidRequest` for a directory.
    """
    target = resolve_inside(root, user_path)
    try:
        mode = os.lstat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"no file {user_path!r} in the repository", path=user_path) from None
    if stat.S_ISDIR(mode):
        raise InvalidRequest(
            f"{user_path!r} is a directory; delete the files in it one by one", path=user_path
        )
    target.unlink()
    return target


def read_text_file(root: Path, user_path: str, max_bytes: int) -> str:
    """The UTF-8 text of the file ``user_path`` inside ``root``.

    Raises :class:`PathNotAllowed`, :class:`NotFound`, :class:`PayloadTooLarge`
    past ``max_bytes``, and :class:`InvalidRequest` for anything but a regular
    file or for content that is not UTF-8 text.
    """
    target = resolve_inside(root, user_path)
    try:
        # O_NONBLOCK: opening a FIFO someone left in the worktree must not hang.
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"no file {user_path!r} in the repository", path=user_path) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidRequest(f"{user_path!r} is not a regular file", path=user_path)
        chunks: list[bytes] = []
        # One byte more than allowed tells "too large" from "exactly at the limit".
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        content = b"".join(chunks)
    finally:
        os.close(fd)
    if len(content) > max_bytes:
        raise PayloadTooLarge(
            f"{user_path!r} is larger than {max_bytes} bytes", path=user_path, limit=max_bytes
        )
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"{user_path!r} is not UTF-8 text", path=user_path) from None


@dataclass(frozen=True)
class FileListing:
    """Files found by :func:`list_files`; ``truncated`` when ``limit`` cut the list short."""

    files: list[str]
    truncated: bool


def _names_root(subdir: str) -> bool:
    return not subdir.startswith("/") and all(p in ("", ".") for p in subdir.split("/"))


def list_files(root: Path, subdir: str = "", limit: int = 10_000) -> FileListing:
    """Regular files under ``subdir`` of ``root``, as sorted POSIX paths relative to ``root``.

    Protected directories (``.git``, ``.studio``, ``node_modules``) and the
    writer's temporary files are skipped. Links are never followed into
    directories; a link to a file is listed only if it resolves inside ``root``.
    At most ``limit`` files are returned, the same ones on every call.
    """
    root_real = Path(os.path.realpath(root))
    if _names_root(subdir):
        start = root_real
    else:
        start = resolve_inside(root, subdir)
        if not start.exists():
            raise NotFound(f"no directory {subdir!r} in the repository", path=subdir)
        if not start.is_dir():
            raise InvalidRequest(f"{subdir!r} is a file, not a directory", path=subdir)
    files: list[str] = []
    stack = [start]
    while stack:
        directory = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue  # removed or unreadable while we walked: nothing to list there
        subdirectories: list[Path] = []
        for entry in entries:
            if is_protected_name(entry.name) or _is_temp_name(entry.name):
                continue
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                subdirectories.append(path)
            elif entry.is_file(follow_symlinks=False) or _is_file_link_inside(path, root_real):
                if len(files) >= limit:
                    return FileListing(files=sorted(files), truncated=True)
                files.append(path.relative_to(root_real).as_posix())
        stack.extend(reversed(subdirectories))
    return FileListing(files=sorted(files), truncated=False)


def _is_temp_name(name: str) -> bool:
    return name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX)


def _is_file_link_inside(path: Path, root_real: Path) -> bool:
    if not path.is_symlink():
        return False
    try:
        target = resolve_inside(root_real, path.relative_to(root_real).as_posix())
        return stat.S_ISREG(target.stat().st_mode)
    except PathNotAllowed:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise
