"""Stories a repository declares: CSF exports of the files its .storybook/main globs name.

A static count, without running anything: the `stories` globs of
``.storybook/main.*`` (string entries; ``!``-prefixed ones exclude), with
Storybook's ``@(a|b)`` groups, matched from the .storybook directory, and the
named exports of each matching CSF file. Storybook's own ``index.json`` (its
dev server's) is the reference when the own-Storybook run has it; this count
is what the harness reports without it, and a cross-check with it.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["csf_exports", "declared_stories", "expand_groups", "main_config", "story_globs"]

_MAIN_NAMES = tuple(f"main.{ext}" for ext in ("ts", "mts", "cts", "js", "mjs", "cjs"))
_STORIES_ARRAY = re.compile(r"""["']?\bstories["']?\s*:\s*\[(.*?)\]""", re.S)
_STRING = re.compile(r"""(['"`])((?:(?!\1).)*)\1""")
_GROUP = re.compile(r"[@+]\(([^()]*)\)")
_EXPORT_DECL = re.compile(r"^\s*export\s+(?:const|let|var|function)\s+([A-Za-z_$][\w$]*)", re.M)
_EXPORT_LIST = re.compile(r"^\s*export\s*\{([^}]*)\}", re.M)
_COMMENT = re.compile(r"/\*.*?\*/|(?<![:'\"])//[^\n]*", re.S)
_LINE_COMMENT = re.compile(r"^\s*//[^\n]*", re.M)
_NOT_STORIES = {"default", "__namedExportsOrder"}


def main_config(package: Path) -> Path | None:
    """The package's ``.storybook/main.*``, or None."""
    for name in _MAIN_NAMES:
        path = package / ".storybook" / name
        if path.is_file():
            return path
    return None


def story_globs(main_source: str) -> list[str]:
    """The string entries of ``stories: [...]`` in a main config's source."""
    # Only whole-line comments: a glob such as '../src/**/*.stories.tsx' holds '/*'.
    found = _STORIES_ARRAY.search(_LINE_COMMENT.sub("", main_source))
    if found is None:
        return []
    return [match.group(2) for match in _STRING.finditer(found.group(1))]


def expand_groups(pattern: str) -> list[str]:
    """``a.@(ts|tsx)`` -> ``a.ts``, ``a.tsx`` (and ``{a,b}`` likewise), recursively."""
    group = _GROUP.search(pattern)
    if group is None:
        brace = re.search(r"\{([^{}]*)\}", pattern)
        if brace is None:
            return [pattern]
        head, tail, options = pattern[: brace.start()], pattern[brace.end() :], brace.group(1)
        return [out for option in options.split(",") for out in expand_groups(head + option + tail)]
    head, tail = pattern[: group.start()], pattern[group.end() :]
    return [
        out for option in group.group(1).split("|") for out in expand_groups(head + option + tail)
    ]


def _matches(config_dir: Path, pattern: str) -> set[Path]:
    files: set[Path] = set()
    for expanded in expand_groups(pattern):
        base = config_dir
        parts = Path(expanded).parts
        # Walk up the leading ../ segments: Path.glob takes no '..'.
        while parts and parts[0] in ("..", "."):
            base = base.parent if parts[0] == ".." else base
            parts = parts[1:]
        if not parts:
            continue
        rest = str(Path(*parts))
        # A trailing '**' means every file below in Storybook's globs; Path.glob gives dirs.
        if rest.endswith("**"):
            rest += "/*"
        files.update(
            path for path in base.glob(rest) if path.is_file() and "node_modules" not in path.parts
        )
    return files


def csf_exports(source: str) -> list[str]:
    """The story exports of a CSF module: its named exports but the default and Storybook's own."""
    text = _COMMENT.sub("", source)
    names = _EXPORT_DECL.findall(text)
    for listed in _EXPORT_LIST.findall(text):
        for item in listed.split(","):
            item = item.strip()
            if not item or item.startswith("type "):
                continue
            names.append(item.split(" as ")[-1].strip())
    seen: list[str] = []
    for name in names:
        if name not in _NOT_STORIES and name not in seen:
            seen.append(name)
    return seen


def declared_stories(package: Path) -> dict[str, list[str]]:
    """``{repo-relative CSF file: [story exports]}`` per the package's main config (MDX skipped)."""
    main = main_config(package)
    if main is None:
        return {}
    included: set[Path] = set()
    excluded: set[Path] = set()
    for pattern in story_globs(main.read_text(errors="replace")):
        if pattern.startswith("!"):
            excluded |= _matches(main.parent, pattern[1:])
        else:
            included |= _matches(main.parent, pattern)
    out: dict[str, list[str]] = {}
    for path in sorted(included - excluded):
        if path.suffix == ".mdx":
            continue
        exports = csf_exports(path.read_text(errors="replace"))
        if exports:
            out[str(path.relative_to(package))] = exports
    return out
