"""``python -m benchmarks corpus`` stops cleanly on SIGINT and SIGTERM, as a real child process.

The repository's own install is a real ``npm ci`` whose preinstall script
never ends (no dependency, so no network): the signal arrives while the run
waits on it. The run must kill that whole process tree, remove its work dir,
write the repository as interrupted and exit with 128 + the signal. The child
is started the way the lead starts a long run, in the background of a
non-interactive shell, where SIGINT arrives ignored (the bug this guards).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from benchmarks._proc import ROOT, commit_all, git

HANG = """
const fs = require('fs');
const where = {pid: process.pid, cwd: process.cwd()};
fs.writeFileSync(process.env.CORPUS_TEST_REPORT, JSON.stringify(where));
setInterval(() => {}, 1000);
"""

MANIFEST = """
[[repository]]
repo = "acme/ui"
commit = "{commit}"
styling = "css"
storybook = "9"
package_manager = "npm"
builder = "vite"
why = "an install that never ends"
"""

# Generous: the child imports the benchmarks package and starts npm on a loaded machine.
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0


def _corpus(tmp_path: Path) -> tuple[Path, str]:
    work = tmp_path / "src"
    work.mkdir()
    package = {"name": "hang", "version": "1.0.0", "scripts": {"preinstall": "node hang.js"}}
    lock = {
        "name": "hang",
        "version": "1.0.0",
        "lockfileVersion": 3,
        "requires": True,
        "packages": {"": {"name": "hang", "version": "1.0.0", "hasInstallScript": True}},
    }
    (work / "package.json").write_text(json.dumps(package))
    (work / "package-lock.json").write_text(json.dumps(lock))
    (work / "hang.js").write_text(HANG)
    git(work, "init", "-q", "-b", "main")
    commit = commit_all(work, "an install that never ends")
    folder = tmp_path / "corpus"
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work), str(folder / "acme+ui.git")], check=True
    )
    return folder, commit


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout:g} s")
        time.sleep(0.2)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_run_its_install_and_writes_what_it_has(
    tmp_path: Path, signum: signal.Signals
) -> None:
    folder, commit = _corpus(tmp_path)
    manifest = tmp_path / "corpus.toml"
    manifest.write_text(MANIFEST.format(commit=commit))
    report = tmp_path / "hang.json"
    results = tmp_path / "results"
    argv = [
        sys.executable,
        "-m",
        "benchmarks",
        "corpus",
        "--reference-only",
        "--manifest",
        str(manifest),
        "--corpus-dir",
        str(folder),
        "--results-dir",
        str(results),
    ]
    # SIGINT ignored, as a background job of a non-interactive shell inherits it.
    child = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, "CORPUS_TEST_REPORT": str(report)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    hang_pid = None
    try:
        _wait(lambda: report.exists() or child.poll() is not None, START_TIMEOUT_S, "installing")
        assert child.poll() is None, child.stdout.read().decode() if child.stdout else ""
        hung = json.loads(report.read_text())
        hang_pid, install_dir = int(hung["pid"]), Path(hung["cwd"])
        assert psutil.pid_exists(hang_pid)
        child.send_signal(signum)
        output, _ = child.communicate(timeout=STOP_TIMEOUT_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if hang_pid is not None and psutil.pid_exists(hang_pid):
            os.kill(hang_pid, signal.SIGKILL)
    text = output.decode(errors="replace")
    assert child.returncode == 128 + signum, text
    assert f"stopped by {signum.name}" in text
    # the install's whole tree is gone, and the run's work dir with it
    _wait(
        lambda: (
            not psutil.pid_exists(hang_pid)
            or psutil.Process(hang_pid).status() == psutil.STATUS_ZOMBIE
        ),
        STOP_TIMEOUT_S,
        "gone",
    )
    work_dir = install_dir.parents[2]
    assert work_dir.name.startswith("bench-"), install_dir
    assert not work_dir.exists()
    (written,) = results.glob("corpus-reference-*.json")
    entry = json.loads(written.read_text())["repositories"]["acme/ui"]
    assert entry["status"] == "interrupted"
    assert entry["reason"].startswith(f"stopped by {signum.name} after ")
    assert entry["own_install_cold_s"] is None
