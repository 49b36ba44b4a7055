"""The OS boundary around Vite: real bwrap, real Vite on examples/ui-kit.

The repository's PostCSS config is the code under test: Vite runs it when it
first transforms CSS. It tries to write and read outside its worktree and
reports what it saw into a file inside the worktree (which it may write), so
each test can tell "the config ran and was refused" from "the config never
ran". Each escape is first shown to work without the boundary, so the same
test would catch a boundary that lets it through.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from studio.install import seal
from studio.process.boundary import SANDBOX_UID, Boundary, Isolation, bwrap_problem
from studio.vite import ViteServer
from tests.studio.test_vite import START_TIMEOUT, TEMPLATE, make_server, ports, studio_repo

__all__ = ["make_server", "ports", "studio_repo"]  # fixtures, imported for the tests below

pytestmark = pytest.mark.skipif(
    bwrap_problem() is not None, reason=f"no bwrap boundary here: {bwrap_problem()}"
)

REPORT = "escape-report.json"

# A PostCSS config that does what issue 17 describes: child_process on the node.
_POSTCSS = """
const fs = require('node:fs');
const { execSync } = require('node:child_process');
const attempt = (what) => {
  try { return String(what()); } catch (e) { return 'refused: ' + (e.code || e.message); }
};
const procs = fs.readdirSync('/proc').filter((n) => /^\\d+$/.test(n));
const cmdlines = procs.map((p) => attempt(() => fs.readFileSync(`/proc/${p}/cmdline`, 'utf8')));
fs.writeFileSync(%(report)s, JSON.stringify({
  touch: attempt(() => execSync('touch ' + %(outside)s, { stdio: 'pipe' })),
  registry: attempt(() => fs.readFileSync(%(registry)s, 'utf8')),
  neighbour: attempt(() => fs.readFileSync(%(neighbour)s, 'utf8')),
  home: attempt(() => fs.readdirSync(%(home)s).length),
  uid: process.getuid(),
  cmdlines,
}));
module.exports = { plugins: [] };
"""


def _boundary(isolation: Isolation, install_cache: Path) -> Boundary:
    return Boundary.for_node(isolation, install_cache=install_cache, template_dir=TEMPLATE)


def _hostile_repo(repo: Path, state: Path) -> dict[str, Path]:
    """Plant the config, a registry and a neighbour worktree; the paths it tries."""
    paths = {
        "outside": state / "touched-from-postcss",
        "registry": state / "registry.sqlite",
        "neighbour": state / "worktrees" / "sb_other" / "secret.txt",
        "home": Path.home(),
    }
    paths["registry"].write_text("tokens of every user")
    paths["neighbour"].parent.mkdir(parents=True)
    paths["neighbour"].write_text("another user's work")
    values = {name: json.dumps(str(path)) for name, path in paths.items()}
    values["report"] = json.dumps(str(repo / REPORT))
    (repo / "postcss.config.cjs").write_text(_POSTCSS % values)
    return paths


def _run_config(server: ViteServer, repo: Path) -> dict[str, object]:
    """Start Vite, have it transform CSS (which loads the PostCSS config), read the report."""
    server.start(timeout=START_TIMEOUT)
    response = httpx.get(f"{server.url}/src/styles.css", timeout=30)
    assert response.status_code == 200, response.text[:500]
    report: dict[str, object] = json.loads((repo / REPORT).read_text())
    return report


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A stand-in for the node's state directory, beside (not around) the worktree."""
    path = tmp_path / "state"
    path.mkdir()
    return path


def test_without_the_boundary_the_config_escapes(
    studio_repo: Path, state: Path, install_cache: Path, make_server: Callable[..., ViteServer]
) -> None:
    paths = _hostile_repo(studio_repo, state)
    server = make_server(studio_repo, boundary=_boundary(Isolation.NONE, install_cache))
    report = _run_config(server, studio_repo)
    assert paths["outside"].exists()
    assert report["registry"] == "tokens of every user"
    assert report["neighbour"] == "another user's work"
    assert report["uid"] == os.getuid()


def test_inside_the_boundary_the_config_reaches_nothing_outside(
    studio_repo: Path, state: Path, install_cache: Path, make_server: Callable[..., ViteServer]
) -> None:
    paths = _hostile_repo(studio_repo, state)
    server = make_server(studio_repo, boundary=_boundary(Isolation.BWRAP, install_cache))
    report = _run_config(server, studio_repo)
    # It ran (the report is there) and was refused everything outside its worktree.
    assert not paths["outside"].exists()
    assert str(report["touch"]).startswith("refused")
    assert report["registry"] == "refused: ENOENT"
    assert report["neighbour"] == "refused: ENOENT"
    assert report["home"] == "refused: ENOENT"
    assert report["uid"] == SANDBOX_UID
    # Its own PID namespace: only the sandbox's processes, not this test's.
    cmdlines = [str(line) for line in report["cmdlines"]]  # type: ignore[attr-defined]
    programs = {line.split("\0")[0] for line in cmdlines}
    assert programs == {"bwrap", "node"}, cmdlines
    # Its worktree stays writable, and what it wrote belongs to the service's user.
    assert (studio_repo / REPORT).stat().st_uid == os.getuid()


def test_stop_leaves_no_process_of_the_boundary_nor_a_secret_in_it(
    studio_repo: Path,
    install_cache: Path,
    make_server: Callable[..., ViteServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COMPONENT_STUDIO_ADMIN_TOKEN", "st_admin-secret-in-the-service-env")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "ray-secret-in-the-service-env")
    server = make_server(studio_repo, boundary=_boundary(Isolation.BWRAP, install_cache))
    server.start(timeout=START_TIMEOUT)
    assert server.pid is not None
    leader = psutil.Process(server.pid)
    tree = [leader, *leader.children(recursive=True)]
    # bwrap, its init (pid 1 inside) and node at least, all in the leader's group.
    assert len(tree) >= 3
    assert any("node" in proc.name() for proc in tree)
    assert {os.getpgid(proc.pid) for proc in tree} == {server.pid}
    for proc in tree:
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        assert b"secret-in-the-service-env" not in environ
    node = next(proc for proc in tree if proc.name() == "node")
    assert node.environ()["HOME"] == "/tmp"
    server.stop()
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert not alive


def test_killing_the_leader_group_reaches_the_pid_namespace(
    studio_repo: Path, install_cache: Path, make_server: Callable[..., ViteServer]
) -> None:
    """SIGKILL to bwrap alone would orphan its init; the group kill (what the
    supervisor and the orphan reaper send) takes everything."""
    server = make_server(studio_repo, boundary=_boundary(Isolation.BWRAP, install_cache))
    server.start(timeout=START_TIMEOUT)
    assert server.pid is not None
    leader = psutil.Process(server.pid)
    tree = [leader, *leader.children(recursive=True)]
    server.stop(timeout=0)  # straight to SIGKILL of the group
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert not alive


def test_bwrap_argv_names_every_namespace_and_no_session_of_its_own(tmp_path: Path) -> None:
    boundary = Boundary(Isolation.BWRAP, readable=(tmp_path / "cache",))
    argv = boundary.wrap(["node", "serve.mjs"], cwd=tmp_path / "wt", writable=[tmp_path / "wt"])
    assert argv[0] == "bwrap" and argv[-3:] == ["--", "node", "serve.mjs"]
    for flag in ("--unshare-all", "--unshare-user", "--tmpfs"):
        assert flag in argv
    # A session of its own would take the sandbox out of the supervisor's group kill.
    assert "--new-session" not in argv
    binds = list(zip(argv, argv[1:], argv[2:], strict=False))
    assert ("--bind", str(tmp_path / "wt"), str(tmp_path / "wt")) in binds
    assert ("--ro-bind-try", str(tmp_path / "cache"), str(tmp_path / "cache")) in binds
    assert Boundary().wrap(["node", "x"], cwd=tmp_path) == ["node", "x"]


def test_bwrap_problem_names_a_missing_program() -> None:
    problem = bwrap_problem("bwrap-that-is-not-installed")
    assert problem is not None and "not installed" in problem


def test_a_probe_inside_the_boundary_sees_no_state(tmp_path: Path, state: Path) -> None:
    """The boundary alone, without Vite: a shell looks at what it can see."""
    work = tmp_path / "wt"
    work.mkdir()
    (state / "registry.sqlite").write_text("x")
    # Beside the worktree in the host's /tmp, as Ray's session directory is.
    with tempfile.TemporaryDirectory(prefix="not-for-sandboxes-", dir="/tmp") as host_tmp:
        script = (
            f"cat {state}/registry.sqlite 2>&1; touch {work}/ok; "
            f"test -e {host_tmp} && echo host-tmp-visible || echo host-tmp-hidden"
        )
        argv = Boundary(Isolation.BWRAP).wrap(["sh", "-c", script], cwd=work, writable=[work])
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert "No such file or directory" in result.stdout
    assert result.stdout.split()[-1] == "host-tmp-hidden"
    assert (work / "ok").exists()


def test_inside_the_boundary_no_process_gets_root_or_a_namespace_of_its_own() -> None:
    """uid 10001 without capabilities: no user namespace (bwrap 0.8's --disable-userns
    where it has it, and none of the capabilities unshare needs otherwise), no mount."""
    argv = Boundary(Isolation.BWRAP).wrap(
        ["sh", "-c", "id -u; unshare -U true && echo userns; unshare -m true && echo mountns"],
        cwd=Path("/tmp"),  # the boundary's own, private /tmp
    )
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.stdout.split() == [str(SANDBOX_UID)], result.stdout + result.stderr


# A PostCSS config that writes, in place, into files other sandboxes share.
_POISON = """
const fs = require('node:fs');
const attempt = (what) => {
  try { what(); return 'written'; } catch (e) { return 'refused: ' + (e.code || e.message); }
};
const targets = %(targets)s;
const report = {};
for (const [name, path] of Object.entries(targets)) {
  report[name] = attempt(() => fs.appendFileSync(path, '/* poisoned */'));
}
report.added = attempt(() => {
  fs.mkdirSync(%(cache)s, { recursive: true });
  fs.writeFileSync(%(cache)s + '/made-here', 'a tool cache');
});
fs.writeFileSync(%(report)s, JSON.stringify(report));
module.exports = { plugins: [] };
"""


@pytest.mark.skipif(not seal.can_seal(), reason="sealing needs root (docs/security.md)")
def test_inside_the_boundary_files_shared_by_hard_links_cannot_be_written_in_place(
    studio_repo: Path, state: Path, install_cache: Path, make_server: Callable[..., ViteServer]
) -> None:
    # node_modules as a sandbox gets it: hard links to the install cache's entry,
    # whose files are sealed (studio.install.cache); one left unsealed is the control.
    entry = state / "install-cache-entry"
    for name in ("sealed-dep", "loose-dep"):
        (entry / name).mkdir(parents=True)
        (entry / name / "index.js").write_text("export default 1;\n")
        (studio_repo / "node_modules" / name).mkdir(parents=True)
        os.link(entry / name / "index.js", studio_repo / "node_modules" / name / "index.js")
    seal.seal_files([entry / "sealed-dep" / "index.js"])
    shell = studio_repo / ".studio" / "src" / "main.prebuilt.js"
    assert shell.stat().st_nlink > 1, "the prebuilt shell is hard-linked in (studio.vite.shell)"
    shell_before = shell.read_text()
    targets = {
        "sealed": studio_repo / "node_modules" / "sealed-dep" / "index.js",
        "loose": studio_repo / "node_modules" / "loose-dep" / "index.js",
        "shell": shell,
        "template": studio_repo / ".studio" / "node_modules" / "vite" / "package.json",
    }
    (studio_repo / "postcss.config.cjs").write_text(
        _POISON
        % {
            "targets": json.dumps({name: str(path) for name, path in targets.items()}),
            "cache": json.dumps(str(studio_repo / "node_modules" / ".cache" / "tool")),
            "report": json.dumps(str(studio_repo / REPORT)),
        }
    )
    server = make_server(studio_repo, boundary=_boundary(Isolation.BWRAP, install_cache))
    report = _run_config(server, studio_repo)
    assert report["sealed"] == "refused: EACCES"
    assert report["shell"] == "refused: EACCES"
    # the template's entry: sealed, and bound read-only besides
    assert report["template"] in {"refused: EACCES", "refused: EROFS"}
    # The control: an unsealed shared file is the gap sealing closes.
    assert report["loose"] == "written"
    assert "poisoned" in (entry / "loose-dep" / "index.js").read_text()
    assert (entry / "sealed-dep" / "index.js").read_text() == "export default 1;\n"
    assert shell.read_text() == shell_before
    # A tool's own new files in node_modules are still its to make.
    assert report["added"] == "written"
    assert (studio_repo / "node_modules" / ".cache" / "tool" / "made-here").is_file()
