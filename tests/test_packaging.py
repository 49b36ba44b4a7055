"""The package builds as `pip install -e .` builds it, without a packaging warning."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What setuptools reads to build the package (its packages.find include list).
BUILT_FROM = [
    "pyproject.toml",
    "README.md",
    *("studio", "actors", "serve", "cluster", "cli", "benchmarks"),
]


@pytest.mark.slow
def test_the_wheel_builds_without_warnings(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in BUILT_FROM:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    # Without it distutils warns that it skips byte-compiling: the caller's choice, not ours.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    # -v: pip shows the build backend's output only then (and the warnings in it).
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist"),
         str(source)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    output = build.stdout + build.stderr
    assert build.returncode == 0, output[-4000:]
    warnings = [line for line in output.splitlines() if "warn" in line.lower()]
    assert warnings == [], "\n".join(warnings)
    assert [p.name for p in (tmp_path / "dist").iterdir()] == [
        "component_studio-0.1.0-py3-none-any.whl"
    ]
