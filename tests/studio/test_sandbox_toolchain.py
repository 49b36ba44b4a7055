"""A PostCSS configuration written through execute runs nothing, on real git and real Vite.

The attack this guards against: write ``postcss.config.cjs`` holding code, then
let any Vite start on the branch (a restart, a recovery, a second sandbox):
the renderer loads the repository's PostCSS configuration into Node when it
compiles CSS, and the code runs on the node. The control at the end shows the
check is real: the same file, committed to the repository by its maintainers,
does run when the CSS is compiled.
"""

# The fixtures are imported from test_sandbox_fixtures, then requested by name.
# ruff: noqa: F811

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path

import pytest

from studio.commands import command_adapter
from studio.errors import PathNotAllowed
from studio.sandbox import ComponentStudioSandbox
from tests.studio.test_sandbox_fixtures import (  # noqa: F401 (fixtures)
    HOST,
    SandboxFactory,
    install_cache,
    make_sandbox,
    origin,
    settings,
)
from tests.support.gitrepo import git


def compile_css(sandbox: ComponentStudioSandbox) -> None:
    """Have the sandbox's Vite compile the repository's CSS (which loads PostCSS's config)."""
    assert sandbox.port is not None
    css = os.path.realpath(sandbox.worktree_path / "src" / "styles.css")
    conn = http.client.HTTPConnection(HOST, sandbox.port, timeout=60)
    try:
        conn.request("GET", f"/@fs{css}")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 200, body[:500]


def test_a_postcss_config_written_through_execute_runs_nothing(
    make_sandbox: SandboxFactory, origin: Path, tmp_path: Path
) -> None:
    # Written beside the config, in the worktree: the one place a Vite in the OS
    # boundary (studio/process/boundary.py) may write, so the control can see it.
    marker = "postcss-config-ran"
    payload = (
        f"require('fs').writeFileSync(require('path').join(__dirname, {json.dumps(marker)}), "
        "'ran');\n"
        "module.exports = { plugins: [] };\n"
    )
    sandbox = make_sandbox()
    sandbox.on_setup()
    head = git(sandbox.worktree_path, "rev-parse", "HEAD")
    for path, rule in (
        ("postcss.config.cjs", "configuration module"),
        (".postcssrc.json", "PostCSS configuration"),
    ):
        with pytest.raises(PathNotAllowed, match=f"{rule} rule"):
            sandbox.on_execute(
                command_adapter.validate_python(
                    {"command": "write_file", "file_path": path, "content": payload}
                )
            )
        assert not (sandbox.worktree_path / path).exists()
    assert git(sandbox.worktree_path, "rev-parse", "HEAD") == head
    sandbox.on_teardown()

    # A fresh Vite on the sandbox's branch (what a recovery or a restart starts).
    recovered = make_sandbox()
    recovered.on_setup(recover=True)
    compile_css(recovered)
    assert not (recovered.worktree_path / marker).exists()
    recovered.on_teardown()

    # Control: the maintainers' own PostCSS config is loaded, and the marker appears.
    (origin / "postcss.config.cjs").write_text(payload)
    git(origin, "add", "postcss.config.cjs")
    git(origin, "commit", "-q", "-m", "PostCSS config")
    control = make_sandbox("sb_test0002")
    control.on_setup()
    compile_css(control)
    assert (control.worktree_path / marker).read_text() == "ran"
