"""A user's shell, and the docs' cleanup commands run from one.

A user's shell has ``ray`` on its PATH but not the venv's bin dir (nor its
``python``): the cleanup job's ``python`` must be the service's interpreter,
found on the PATH of the Ray that ``studio up`` started.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")

# Where the docs show the cleanup job, and the dashboard address they give.
DOCS = [ROOT / "README.md", ROOT / "docs" / "operations.md"]
DOCS_DASHBOARD = "http://127.0.0.1:8265"


def shell_env_without_venv(*first_on_path: Path) -> dict[str, str]:
    """This process's environment as a user's shell has it: the venv neither active nor on PATH.

    ``first_on_path``: directories put before the rest of PATH.
    """
    venv_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "RAY_ADDRESS", "RAY_AUTH_MODE", "PYTHONPATH")
    }
    env["PATH"] = os.pathsep.join([*(str(d) for d in first_on_path), *path])
    return env


def shell_blocks(doc: Path, containing: str) -> list[str]:
    """The fenced ``bash`` blocks of ``doc`` that contain ``containing``."""
    blocks = re.findall(r"^ *```bash\n(.*?)^ *```", doc.read_text(), re.DOTALL | re.MULTILINE)
    return [block for block in blocks if containing in block]


def summary_of(output: str) -> dict[str, Any]:
    """The cleanup job's JSON summary, out of what ``ray job submit`` printed around it."""
    return dict(json.loads(output[output.index("{\n") : output.rindex("\n}") + 2]))


def run_the_docs_cleanup_commands(dashboard: int, bin_dir: Path) -> list[dict[str, Any]]:
    """Each doc's cleanup block, its dashboard swapped for ``dashboard``: their summaries.

    ``bin_dir``: made here, holds the ``ray`` of the user's PATH. Each block must exit 0.
    """
    bin_dir.mkdir()
    (bin_dir / "ray").symlink_to(RAY)
    shell = shell_env_without_venv(bin_dir)
    blocks = [block for doc in DOCS for block in shell_blocks(doc, "cluster.cleanup")]
    assert len(blocks) == len(DOCS), blocks
    summaries = []
    for block in blocks:
        assert DOCS_DASHBOARD in block, block
        script = block.replace(DOCS_DASHBOARD, f"http://127.0.0.1:{dashboard}")
        job = subprocess.run(
            ["bash", "-e", "-c", script],
            env=shell, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert job.returncode == 0, script + "\n" + job.stdout + job.stderr
        summaries.append(summary_of(job.stdout))
    return summaries
