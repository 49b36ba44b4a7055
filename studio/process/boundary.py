"""The OS boundary around processes that run repository code: bubblewrap, or none.

Vite loads the repository's configuration (PostCSS, Tailwind, its plugins)
and whatever a designer or an agent wrote into the worktree. With
``isolation = "bwrap"`` each such process runs under ``bwrap``:

- new user, PID, mount, IPC, UTS and cgroup namespaces; inside, an
  unprivileged uid (:data:`SANDBOX_UID`) with no capabilities, and no nested
  user namespaces (``--disable-userns``, where bwrap has it: 0.8 and later);
- a root of its own: the system's programs and libraries (``/usr``, ``/lib``,
  ``/bin``, a few files of ``/etc``) and the node-wide paths it needs (the
  install cache, the studio template, Node's prefix) read-only, its own
  worktree read-write, a private ``/tmp``, its own ``/proc``, a minimal ``/dev``.
  Nothing else exists in there: not the state directory (the registry, the
  mirrors, other worktrees, pid records), not ``$HOME``, not Ray's session
  directory (``/tmp/ray``), not other sandboxes;
- the host's network namespace, a measured limit: the API and the browser
  reach Vite at its TCP port, which a new network namespace would hide
  (docs/security.md, the boundary and its limits).

Not ``--new-session``: everything inside stays in the process group of the
``bwrap`` leader, so the supervisor's group kill and the orphan reaper
(:mod:`studio.process.orphans`) reach all of it; the children have no
terminal (stdin is a pipe or /dev/null), so the TIOCSTI escape that
``--new-session`` closes does not apply. Not ``--die-with-parent``: the
kernel delivers that signal when the *thread* that spawned bwrap ends, and
Vite is started from short-lived threads; a supervisor that dies is covered
by its pid record instead (as without the boundary). The PID namespace adds
its own guarantee: when bwrap's init (pid 1 inside) dies, the kernel kills
everything left inside.

The environment is the caller's (an allow-list, :mod:`studio.process.environment`);
``HOME`` and ``TMPDIR`` point at the private ``/tmp``.
"""

from __future__ import annotations

import enum
import functools
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "SANDBOX_UID",
    "SYSTEM_PATHS",
    "Boundary",
    "Isolation",
    "bwrap_problem",
    "node_prefix",
]

# The uid and gid inside the boundary: not root, not the overflow uid (65534)
# that unmapped owners show as.
SANDBOX_UID = 10001
# Read-only system paths: programs, libraries, name resolution, certificates, time zones.
SYSTEM_PATHS = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/resolv.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
)
_HOSTNAME = "studio-sandbox"
_CHECK_TIMEOUT = 10.0


class Isolation(enum.StrEnum):
    """Which boundary processes that run repository code get (the ``isolation`` setting)."""

    BWRAP = "bwrap"
    NONE = "none"


def node_prefix(node: str = "node") -> Path | None:
    """The install prefix of ``node`` (``<prefix>/bin/node``), or None when it is not found."""
    found = shutil.which(node)
    if found is None:
        return None
    return Path(found).resolve().parent.parent


@functools.cache
def _knows_disable_userns(program: str) -> bool:
    """Whether ``program`` has ``--disable-userns`` (bubblewrap 0.8; Ubuntu 22.04 has 0.6)."""
    try:
        result = subprocess.run(
            [program, "--help"], capture_output=True, text=True, timeout=_CHECK_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--disable-userns" in result.stdout + result.stderr


def _namespace_flags(program: str) -> list[str]:
    uid = str(SANDBOX_UID)
    flags = [
        program,
        "--unshare-all",
        "--share-net",
        "--unshare-user",
        "--uid",
        uid,
        "--gid",
        uid,
        "--hostname",
        _HOSTNAME,
    ]
    if _knows_disable_userns(program):
        # No user namespace of its own inside: nested ones are a kernel attack surface.
        flags.append("--disable-userns")
    return flags


def bwrap_problem(program: str = "bwrap") -> str | None:
    """Why bwrap cannot make a boundary on this machine, or None when it can.

    Runs ``true`` under the same namespaces :meth:`Boundary.wrap` asks for,
    so a kernel without unprivileged user namespaces, or a container whose
    seccomp profile refuses ``unshare``, is found before any sandbox starts.
    """
    if shutil.which(program) is None:
        return f"{program!r} is not installed (scripts/setup.sh installs the bubblewrap package)"
    argv = [
        *_namespace_flags(program),
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "true",
    ]
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=_CHECK_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{program} could not be run: {exc}"
    if result.returncode != 0:
        reason = result.stderr.strip() or f"exit code {result.returncode}"
        return f"{program} cannot create its namespaces here: {reason}"
    return None


def _unique(paths: Iterable[Path]) -> list[Path]:
    """Each path once, and also where its links lead: the symlinks inside the
    worktree (node_modules) name resolved paths."""
    seen: dict[str, Path] = {}
    for path in paths:
        for each in (path, path.resolve()):
            seen.setdefault(str(each), each)
    return list(seen.values())


@dataclass(frozen=True)
class Boundary:
    """How to run a program that runs repository code; :meth:`wrap` makes its argv.

    ``readable`` are the node-wide paths every such program may read (the
    install cache, the studio template, Node's prefix when it is outside
    ``/usr``); each call adds what is its own.
    """

    isolation: Isolation = Isolation.NONE
    readable: tuple[Path, ...] = field(default=())
    program: str = "bwrap"

    @classmethod
    def for_node(
        cls,
        isolation: Isolation | str,
        *,
        install_cache: Path,
        template_dir: Path,
        node: str = "node",
        program: str = "bwrap",
    ) -> Boundary:
        """The boundary of one node's sandboxes, from the ``isolation`` setting."""
        readable = [install_cache, template_dir]
        prefix = node_prefix(node)
        if prefix is not None and not prefix.is_relative_to("/usr"):
            readable.append(prefix)
        return cls(Isolation(isolation), tuple(readable), program)

    @property
    def enforced(self) -> bool:
        return self.isolation is not Isolation.NONE

    def describe(self) -> str:
        """One line naming the boundary in force, for ``studio up`` and the logs."""
        if not self.enforced:
            return "none: repository code runs as this service's user, with its files in reach"
        return (
            f"bwrap: user/pid/mount/ipc/uts namespaces, uid {SANDBOX_UID}, only the "
            "sandbox's worktree writable; the host's network"
        )

    def wrap(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        writable: Sequence[Path] = (),
        readable: Sequence[Path] = (),
    ) -> list[str]:
        """``argv`` run inside the boundary with ``cwd`` as its working directory.

        ``writable`` are bound read-write at their own paths (the sandbox's
        worktree), ``readable`` read-only, after the node-wide ones; a path
        that does not exist is left out (bwrap's ``-try`` binds). The caller
        still passes ``cwd`` to its spawn: without a boundary that is where
        the program runs.
        """
        if not self.enforced:
            return list(argv)
        args = _namespace_flags(self.program)
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        for system in SYSTEM_PATHS:
            path = Path(system)
            if path.is_symlink():
                # /bin -> usr/bin on a merged-/usr system: the same link inside.
                args += ["--symlink", str(path.readlink()), system]
            else:
                args += ["--ro-bind-try", system, system]
        # Read-only first: a writable path inside a readable one is bound over it.
        for path in _unique([*self.readable, *readable]):
            args += ["--ro-bind-try", str(path), str(path)]
        for path in _unique(writable):
            args += ["--bind", str(path), str(path)]
        args += ["--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp", "--chdir", str(cwd)]
        return [*args, "--", *argv]
