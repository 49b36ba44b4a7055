"""Fixtures of the template's tests on fixture repositories (see pages.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.template_runner import TemplateServer, run_template
from tests.template.pages import Serve, make_fixture_repo


@pytest.fixture(scope="session")
def deps_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where each fixture's lockfile is ``npm ci``'d once for the whole session."""
    return tmp_path_factory.mktemp("repo-deps")


@pytest.fixture
def serve(tmp_path: Path, deps_cache: Path) -> Iterator[Serve]:
    """``serve(kind)`` -> a running template on a fresh copy of that fixture; all stopped after.

    ``remove`` deletes files of the copy; ``prepare`` edits it once its
    dependencies are installed, before Vite starts (for the controls of tests
    that need the fixture as it is).
    """
    with ExitStack() as stack:

        def start(
            kind: str,
            *,
            remove: tuple[str, ...] = (),
            prepare: Callable[[Path], None] | None = None,
        ) -> TemplateServer:
            repo = make_fixture_repo(kind, tmp_path)
            for rel in remove:
                (repo / rel).unlink()
            return stack.enter_context(run_template(repo, deps_cache, before_start=prepare))

        yield start
