"""Execute refuses the files the toolchain runs or installs from, on a real worktree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from studio.config import ComponentStudioConfig
from studio.errors import PathNotAllowed
from studio.sandbox.files import FileChange
from studio.toolchain_files import TOOLCHAIN_RULES, toolchain_rule

MAX = 1 << 20

# One path per rule, at the root and deeper (workspaces nest manifests and configs).
REFUSED = [
    ("package.json", "package manifest"),
    ("packages/ui/package.json", "package manifest"),
    ("package-lock.json", "lockfile"),
    ("npm-shrinkwrap.json", "lockfile"),
    ("yarn.lock", "lockfile"),
    ("apps/web/pnpm-lock.yaml", "lockfile"),
    ("bun.lockb", "lockfile"),
    (".npmrc", "package manager configuration"),
    ("packages/ui/.yarnrc.yml", "package manager configuration"),
    (".pnpmfile.cjs", "package manager configuration"),
    ("vite.config.ts", "configuration module"),
    ("postcss.config.cjs", "configuration module"),
    ("tailwind.config.js", "configuration module"),
    ("src/deep/er/vitest.config.mts", "configuration module"),
    ("vite.config.local.cts", "configuration module"),
    ("PostCSS.Config.JS", "configuration module"),
    (".postcssrc", "PostCSS configuration"),
    (".postcssrc.json", "PostCSS configuration"),
    ("postcss.config.json", "PostCSS configuration"),
    (".babelrc", "Babel configuration"),
    ("packages/ui/.babelrc.json", "Babel configuration"),
    ("babel.config.json", "Babel configuration"),
    (".storybook/main.ts", "Storybook configuration"),
    ("packages/ui/.storybook/main.js", "Storybook configuration"),
]

ALLOWED = [
    "src/components/Button/Button.tsx",
    "src/config.ts",
    "src/app.configuration.ts",
    "src/config.json",
    "docs/package.json.md",
    ".storybook/preview.tsx",
    "src/main.ts",
    "README.md",
]


def test_every_rule_has_a_refused_example() -> None:
    assert {rule for _, rule in REFUSED} == {rule.name for rule in TOOLCHAIN_RULES}


@pytest.mark.parametrize(("path", "rule"), REFUSED)
def test_a_write_of_a_toolchain_file_is_refused_naming_the_rule(
    tmp_path: Path, path: str, rule: str
) -> None:
    change = FileChange(tmp_path, MAX)
    with pytest.raises(PathNotAllowed) as info:
        change.write(path, "module.exports = {}\n")
    assert info.value.code == "path_not_allowed"
    assert f"{rule} rule" in info.value.message
    assert info.value.details["rule"] == rule
    assert "editable_config_paths" in info.value.message
    assert not (tmp_path / path).exists()
    assert list(tmp_path.iterdir()) == []  # not even a parent directory was made


@pytest.mark.parametrize(("path", "rule"), REFUSED)
def test_a_delete_of_a_toolchain_file_is_refused(tmp_path: Path, path: str, rule: str) -> None:
    target = tmp_path / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("{}\n")
    with pytest.raises(PathNotAllowed, match=f"{rule} rule"):
        FileChange(tmp_path, MAX).delete(path)
    assert target.read_text() == "{}\n"


@pytest.mark.parametrize("path", ALLOWED)
def test_ordinary_files_are_still_written(tmp_path: Path, path: str) -> None:
    assert toolchain_rule(path) is None
    assert FileChange(tmp_path, MAX).write(path, "x\n") == path
    assert (tmp_path / path).read_text() == "x\n"


def test_a_path_the_repository_allows_is_written_and_deleted(tmp_path: Path) -> None:
    config = ComponentStudioConfig(editable_config_paths=("./packages//ui/tailwind.config.js",))
    assert config.editable_config_paths == ("packages/ui/tailwind.config.js",)
    change = FileChange(tmp_path, MAX, config.editable_config_paths)
    assert change.write("packages/ui/tailwind.config.js", "export default {}\n")
    assert change.delete("packages/ui/tailwind.config.js")
    # Only that path: the same name elsewhere is still refused.
    with pytest.raises(PathNotAllowed, match="configuration module rule"):
        change.write("tailwind.config.js", "export default {}\n")


def test_a_link_to_a_toolchain_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "postcss.config.cjs").write_text("module.exports = {}\n")
    (tmp_path / "src").mkdir()
    os.symlink("../postcss.config.cjs", tmp_path / "src" / "styles.js")
    change = FileChange(tmp_path, MAX)
    with pytest.raises(PathNotAllowed) as info:
        change.write("src/styles.js", "require('child_process').execSync('true')\n")
    assert "leads to 'postcss.config.cjs'" in info.value.message
    with pytest.raises(PathNotAllowed, match="configuration module rule"):
        change.delete("src/styles.js")
    assert (tmp_path / "postcss.config.cjs").read_text() == "module.exports = {}\n"
    # Allowing the link's own path is not enough: the file it leads to is what is written.
    with pytest.raises(PathNotAllowed, match="leads to"):
        FileChange(tmp_path, MAX, ("src/styles.js",)).write("src/styles.js", "x\n")


def test_a_link_to_a_directory_holding_a_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "packages" / "ui").mkdir(parents=True)
    os.symlink("packages/ui", tmp_path / "ui")
    with pytest.raises(PathNotAllowed, match="package manifest rule"):
        FileChange(tmp_path, MAX).write("ui/package.json", "{}\n")
    assert not (tmp_path / "packages" / "ui" / "package.json").exists()


def test_a_batch_is_checked_whole_before_its_first_write(tmp_path: Path) -> None:
    # What execute's write_files does: check every file, then write them.
    change = FileChange(tmp_path, MAX)
    batch = [("src/a.tsx", "a\n"), (".babelrc", "{}\n")]
    with pytest.raises(PathNotAllowed, match="Babel configuration rule"):
        for path, content in batch:
            change.check_write(path, content)
    assert list(tmp_path.iterdir()) == []
