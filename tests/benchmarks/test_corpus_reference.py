"""The reference side kept apart: --reference-only results and a later studio run merging them.

No network and no service: results files written by the harness's own writer
in tmp dirs, and real bare git repositories standing in for the corpus folder.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest

from benchmarks._proc import commit_all, git
from benchmarks.context import RunContext
from benchmarks.corpus import Sides, run_repository
from benchmarks.corpus_manifest import parse_manifest
from benchmarks.corpus_reference import (
    ReferenceFileError,
    apply_reference,
    find_reference,
    reference_files,
)
from benchmarks.corpus_report import REFERENCE_PREFIX, RepoResult, write_corpus_results

MACHINE = {"cpu_model": "test", "cpu_count": 2}
KIND = {"styling": "css", "storybook": "9", "package_manager": "npm", "builder": "vite"}
COMMIT = "a" * 40
OTHER = "b" * 40


def _reference(repo: str = "acme/ui", commit: str = COMMIT, **figures: object) -> RepoResult:
    result = RepoResult(repo, commit, KIND)
    for name, value in {
        "declared": 4,
        "own_indexed": 4,
        "own_rendered": 3,
        "own_install_cold_s": 40.0,
        "own_install_warm_s": 12.0,
        "own_install_scripts": True,
        "own_dev_first_story_s": 9.5,
        "own_failures": {"button--broken": ["error display: boom"]},
        "notes": ["own install: npm ci (npm)", "studio side not run (--reference-only)"],
        **figures,
    }.items():
        setattr(result, name, value)
    return result


def _write_reference(results_dir: Path, day: int, results: list[RepoResult]) -> Path:
    now = dt.datetime(2026, 12, day, 12, 0, tzinfo=dt.UTC)
    json_path, _md = write_corpus_results(
        results_dir, results, machine=MACHINE, now=now, prefix=REFERENCE_PREFIX
    )
    return json_path


def test_a_reference_only_run_writes_a_file_of_its_own(tmp_path: Path) -> None:
    json_path = _write_reference(tmp_path, 6, [_reference()])
    assert json_path.name == "corpus-reference-2026-12-06.json"
    document = json.loads(json_path.read_text())
    assert document["reference_only"] is True
    table = json_path.with_suffix(".md").read_text()
    assert table.startswith("# Corpus reference 2026-12-06")
    # its own table: declared, indexed and rendered by its Storybook, install, dev start
    assert "| ok | 4 | 4 | 3 | 40.00/12.00 | 9.50 |" in table
    assert "1st create" not in table
    assert not (tmp_path / "corpus-2026-12-06.json").exists()


def test_the_newest_reference_at_the_same_commit_is_found(tmp_path: Path) -> None:
    _write_reference(tmp_path, 5, [_reference(own_rendered=1), _reference("acme/kit")])
    _write_reference(
        tmp_path,
        6,
        [_reference(own_rendered=2), _reference("acme/kit", commit=OTHER, own_rendered=9)],
    )
    files = reference_files(tmp_path)
    assert [path.name for path in files] == [
        "corpus-reference-2026-12-06.json",
        "corpus-reference-2026-12-05.json",
    ]
    newest = find_reference(files, "acme/ui", COMMIT)
    assert newest is not None and newest.path.name == "corpus-reference-2026-12-06.json"
    assert newest.entry["own_rendered"] == 2
    # the newest file measured acme/kit at another commit: the older one is used
    older = find_reference(files, "acme/kit", COMMIT)
    assert older is not None and older.path.name == "corpus-reference-2026-12-05.json"
    assert find_reference(files, "acme/kit", "c" * 40) is None
    assert find_reference(files, "acme/none", COMMIT) is None


def test_skipped_interrupted_and_empty_references_are_not_used(tmp_path: Path) -> None:
    skipped = RepoResult("acme/ui", COMMIT, KIND, status="skipped", reason="no git directory")
    interrupted = _reference("acme/kit", status="interrupted", reason="stopped by SIGINT")
    empty = RepoResult("acme/box", COMMIT, KIND, errors=["own install: exit 1"])
    files = [_write_reference(tmp_path, 6, [skipped, interrupted, empty])]
    for repo in ("acme/ui", "acme/kit", "acme/box"):
        assert find_reference(files, repo, COMMIT) is None, repo


def test_a_studio_result_takes_the_reference_figures_errors_and_notes(tmp_path: Path) -> None:
    reference = _reference(errors=["own storybook: out of time after 3 stories"])
    files = [_write_reference(tmp_path, 6, [reference])]
    found = find_reference(files, "acme/ui", COMMIT)
    assert found is not None
    studio = RepoResult("acme/ui", COMMIT, KIND, declared=4, listed=4, rendered=3)
    studio.first_create_s = 1.5
    apply_reference(studio, found)
    assert studio.own_rendered == 3
    assert studio.own_install_cold_s == 40.0 and studio.own_install_warm_s == 12.0
    assert studio.own_dev_first_story_s == 9.5
    assert studio.own_failures == {"button--broken": ["error display: boom"]}
    assert studio.reference_source == "corpus-reference-2026-12-06.json (2026-12-06T12:00:00+00:00)"
    assert studio.errors == ["reference: own storybook: out of time after 3 stories"]
    assert "reference: own install: npm ci (npm)" in studio.notes
    assert not any("studio side not run" in note for note in studio.notes)
    # the final table has both sides: the ratios use the reference's figures
    json_path, md_path = write_corpus_results(
        tmp_path, [studio], machine=MACHINE, now=dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    )
    entry = json.loads(json_path.read_text())["repositories"]["acme/ui"]
    assert entry["ratios"]["story_ratio"]["value"] == 1.0
    assert entry["ratios"]["dev_over_create"]["value"] == round(9.5 / 1.5, 3)
    table = md_path.read_text()
    assert "| 4/4/3/3 | 1.00 |" in table
    assert "| 40.00/12.00 | 9.50 |" in table
    assert "reference taken from corpus-reference-2026-12-06.json" in table
    # a studio result with the reference merged is not a reference for another run
    assert find_reference([json_path], "acme/ui", COMMIT) is None


def _corpus(tmp_path: Path) -> tuple[Path, str]:
    work = tmp_path / "src"
    work.mkdir()
    (work / "package.json").write_text("{}")
    git(work, "init", "-q", "-b", "main")
    commit = commit_all(work, "initial")
    folder = tmp_path / "corpus"
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work), str(folder / "acme+ui.git")], check=True
    )
    return folder, commit


MANIFEST_ENTRY = """
[[repository]]
repo = "acme/ui"
commit = "{commit}"
styling = "css"
storybook = "9"
package_manager = "npm"
builder = "vite"
why = "a test"
"""


def test_a_run_without_either_side_measured_takes_the_reference_of_its_commit(
    tmp_path: Path,
) -> None:
    folder, commit = _corpus(tmp_path)
    (repo,) = parse_manifest(MANIFEST_ENTRY.format(commit=commit))
    results_dir = tmp_path / "results"
    _write_reference(results_dir, 6, [_reference(commit=commit)])
    sides = Sides.from_arguments(
        no_reference=True, reference_only=False, reference_from=None, results_dir=results_dir
    )
    assert not sides.reference and sides.studio
    only_reference = Sides(studio=False, reference=False, reference_from=sides.reference_from)
    with RunContext(quick=True, work_dir=tmp_path / "work") as ctx:
        result = run_repository(ctx, repo, folder, sides=only_reference, timeout=30)
        elsewhere = run_repository(
            ctx, repo, folder, sides=Sides(studio=False, reference=False), timeout=30
        )
    assert result.status == "ok", result.errors
    assert result.own_rendered == 3 and result.own_dev_first_story_s == 9.5
    assert result.reference_source is not None
    assert elsewhere.own_rendered is None
    assert any("none found at this commit" in note for note in elsewhere.notes)


def test_the_command_line_sides_and_their_refusals(tmp_path: Path) -> None:
    def sides(**given: object) -> Sides:
        arguments: dict[str, object] = {
            "no_reference": False,
            "reference_only": False,
            "reference_from": None,
            "results_dir": tmp_path,
        }
        arguments.update(given)
        return Sides.from_arguments(**arguments)  # type: ignore[arg-type]

    assert sides() == Sides(studio=True, reference=True)
    assert sides(reference_only=True) == Sides(studio=False, reference=True)
    assert sides(no_reference=True, reference_from="none") == Sides(reference=False)
    reference = _write_reference(tmp_path, 6, [_reference()])
    assert sides(no_reference=True) == Sides(reference=False, reference_from=(reference,))
    assert sides(no_reference=True, reference_from=str(reference)).reference_from == (reference,)
    with pytest.raises(ValueError, match="--reference-from goes with --no-reference"):
        sides(reference_from=str(reference))
    with pytest.raises(ReferenceFileError, match="missing or not JSON"):
        sides(no_reference=True, reference_from=str(tmp_path / "nope.json"))
    (tmp_path / "other.json").write_text('{"scenarios": {}}')
    with pytest.raises(ReferenceFileError, match="not corpus results"):
        sides(no_reference=True, reference_from=str(tmp_path / "other.json"))
