"""Where a node's sandboxes share Vite's pre-bundled dependencies.

Vite optimises React and the repository's other dependencies (rolldown) on
its first start in every sandbox: CPU before the first page can load, and
memory that stays in that Vite (docs/performance.md, deps seed). The bundles
depend only on the node_modules they are built from and on the studio's Vite
config, so the template's ``plugin/deps-seed.mjs`` lets the first Vite of a
node (its preparation's, :mod:`studio.sandbox.prepare`) publish them and
later ones start from a copy (published without source maps, which cost each
Vite CPU on the first page load). The service's ``vite_deps_seed`` setting
turns the seed off. This module names the directory (the "seed"):

``<template install-cache entry>/vite-deps/<key>``, where the key covers what
the bundles are built from: the template's files (its Vite config, plugins
and app) and the repository's lockfile (its node_modules come from the
install cache entry of that lockfile). A repository with node_modules of
unknown origin (no lockfile) gets no seed and optimises on its own.

The choice is a pure function of the files; nothing here starts a process.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["SEED_ROOT", "deps_seed_dir", "seed_key", "template_fingerprint"]

SEED_ROOT = "vite-deps"
# Stands for "the repository installs nothing of its own" in the key.
_NO_REPO_MODULES = "no-repo-modules"


def template_fingerprint(template_dir: Path, ignore: Iterable[str] = ()) -> str:
    """A digest of the template's files (names and contents), without the ``ignore`` names."""
    ignored = set(ignore)
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(template_dir):
        dirnames[:] = sorted(name for name in dirnames if name not in ignored)
        for name in sorted(filenames):
            if name in ignored:
                continue
            path = Path(dirpath) / name
            digest.update(path.relative_to(template_dir).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def seed_key(template: str, repo_modules: str | None) -> str:
    """The seed's name for a template fingerprint and a repository install key (None: none)."""
    digest = hashlib.sha256()
    digest.update(f"{template}\0{repo_modules or _NO_REPO_MODULES}".encode())
    return digest.hexdigest()[:32]


def deps_seed_dir(
    worktree: Path,
    *,
    template_dir: Path,
    template_modules: Path,
    repo_install: str | None = None,
    ignore: Iterable[str] = (),
    fingerprint: str | None = None,
) -> Path | None:
    """The seed directory of ``worktree``'s studio app, or None when it must not share one.

    ``template_modules`` is the template's install-cache ``node_modules``; the
    seed lives beside it, so it goes when that entry goes. ``repo_install`` is
    the name of the install-cache entry the repository's node_modules come
    from (None: it installs nothing). ``fingerprint`` is the template's
    (:func:`template_fingerprint`), when the caller has it already.
    """
    if repo_install is None and (worktree / "node_modules").exists():
        return None  # installed by someone else: nothing says what is in it
    key = seed_key(fingerprint or template_fingerprint(template_dir, ignore), repo_install)
    return template_modules.parent / SEED_ROOT / key
