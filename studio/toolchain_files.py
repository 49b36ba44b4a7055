"""Files the toolchain runs or installs from: execute may not write or delete them.

A sandbox's Vite loads the repository's build configuration (PostCSS, Babel,
Tailwind, Storybook's ``main``) into Node when it starts, and a worktree whose
manifest or lockfile changed installs packages, whose scripts run. A write to
one of these files is therefore code execution on the node at the next start
of any Vite on that branch, not an edit of a component. Each rule below names
one class of such files; :func:`check_editable` refuses a path any rule
matches, unless the repository's configuration lists it in
``editable_config_paths`` (an admin sets that, when registering it).

Matching is on the path's last component (and, for Storybook, its parent),
at any depth: workspaces have a ``package.json`` per package. Names are
compared case-folded and NFKC-normalised, as ``studio.paths`` compares its
protected names: on a case-insensitive filesystem ``PostCSS.config.js`` is the
file PostCSS loads.

What this does not cover: a file a configuration imports (``vite.config.ts``
importing ``./build/plugin.ts``) runs in Node too, and cannot be told from a
component by its name. That is what the OS boundary around Vite is for
(docs/security.md).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection
from dataclasses import dataclass

from studio.errors import PathNotAllowed

__all__ = ["TOOLCHAIN_RULES", "ToolchainRule", "check_editable", "toolchain_rule"]


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass(frozen=True)
class ToolchainRule:
    """One class of files the toolchain executes or installs from."""

    name: str
    """Short name, quoted in the refusal (``lockfile``)."""
    examples: str
    """The files it covers, as a reader would recognise them."""
    matches: Callable[[str, str], bool]
    """``matches(name, parent)`` on the folded last component and its folded parent."""


_CONFIG_MODULE = re.compile(r"^.+\.config(\.[^/]+)?\.(c|m)?[jt]sx?$")
_LOCKFILES = frozenset(
    {
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lock",
        "bun.lockb",
    }
)
_PACKAGE_MANAGER_FILES = frozenset(
    {".npmrc", ".yarnrc", ".yarnrc.yml", ".pnpmfile.cjs", "pnpm-workspace.yaml"}
)

TOOLCHAIN_RULES: tuple[ToolchainRule, ...] = (
    ToolchainRule(
        "package manifest",
        "package.json (its scripts and dependencies decide what is installed and run)",
        lambda name, _parent: name == "package.json",
    ),
    ToolchainRule(
        "lockfile",
        "package-lock.json, npm-shrinkwrap.json, yarn.lock, pnpm-lock.yaml, bun.lock(b)",
        lambda name, _parent: name in _LOCKFILES,
    ),
    ToolchainRule(
        "package manager configuration",
        ".npmrc, .yarnrc(.yml), .pnpmfile.cjs, pnpm-workspace.yaml",
        lambda name, _parent: name in _PACKAGE_MANAGER_FILES,
    ),
    ToolchainRule(
        "configuration module",
        "*.config.{js,cjs,mjs,ts,mts,cts,jsx,tsx} (vite, postcss, tailwind, babel, ...)",
        lambda name, _parent: bool(_CONFIG_MODULE.match(name)),
    ),
    ToolchainRule(
        "PostCSS configuration",
        ".postcssrc, .postcssrc.* and postcss.config.* (they name plugins Node loads)",
        lambda name, _parent: (
            name == ".postcssrc" or name.startswith(("postcss.config.", ".postcssrc."))
        ),
    ),
    ToolchainRule(
        "Babel configuration",
        ".babelrc, .babelrc.* and babel.config.* (they name plugins Node loads)",
        lambda name, _parent: name == ".babelrc" or name.startswith((".babelrc.", "babel.config.")),
    ),
    ToolchainRule(
        "Storybook configuration",
        ".storybook/main.* (read in Node to find stories and static directories)",
        lambda name, parent: parent == ".storybook" and name.startswith("main."),
    ),
)


def toolchain_rule(relative_path: str) -> ToolchainRule | None:
    """The rule ``relative_path`` (POSIX, relative to the worktree) falls under, or None."""
    parts = [_fold(part) for part in relative_path.split("/") if part not in ("", ".")]
    if not parts:
        return None
    name, parent = parts[-1], (parts[-2] if len(parts) > 1 else "")
    return next((rule for rule in TOOLCHAIN_RULES if rule.matches(name, parent)), None)


def check_editable(user_path: str, named: str, resolved: str, allowed: Collection[str]) -> None:
    """Refuse an edit of a toolchain file, unless the repository allows that path.

    ``named`` is ``user_path`` normalised, ``resolved`` the file it leads to
    through symbolic links, both relative to the worktree: a link
    ``src/styles.js -> ../postcss.config.cjs`` is a write to the PostCSS
    configuration. ``allowed`` is the repository's ``editable_config_paths``;
    each of the two paths must be allowed itself. Raises
    :class:`PathNotAllowed` naming the rule.
    """
    allowed_folded = {_fold(path.strip("/")) for path in allowed}
    for relative in dict.fromkeys((named, resolved)):
        rule = toolchain_rule(relative)
        if rule is None or _fold(relative) in allowed_folded:
            continue
        through = "" if relative == named else f" (it leads to {relative!r})"
        raise PathNotAllowed(
            f"path {user_path!r} is not allowed{through}: {rule.name} rule, "
            f"{rule.examples}. The toolchain runs or installs from these files, so they are "
            "not edited through execute; an admin may list the path in the repository's "
            "editable_config_paths",
            path=user_path,
            rule=rule.name,
        )
