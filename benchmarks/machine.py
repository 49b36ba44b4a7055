"""A description of the machine a run measured on, stored beside its numbers.

Numbers from a 2-core laptop and a 32-core server are not comparable; the
results file says which one it was, including the versions of what was timed.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

__all__ = ["describe_machine"]

_ROOT = Path(__file__).resolve().parent.parent


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _command_version(argv: list[str]) -> str | None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def _package_version(package_json: Path) -> str | None:
    try:
        version = json.loads(package_json.read_text()).get("version")
    except (OSError, ValueError):
        return None
    return str(version) if version else None


def _python_package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def describe_machine(template_dir: Path | None = None) -> dict[str, Any]:
    """CPU model and count, memory, kernel, and the versions of Python, Node, Ray and Vite."""
    template = template_dir or _ROOT / "studio-template"
    memory = psutil.virtual_memory()
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "memory_total_mib": round(memory.total / 2**20),
        "memory_available_mib": round(memory.available / 2**20),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "node": _command_version(["node", "--version"]),
        "npm": _command_version(["npm", "--version"]),
        "git": _command_version(["git", "--version"]),
        "chromium": _command_version(["/usr/bin/chromium", "--version"]),
        "ray": _python_package_version("ray"),
        "vite": _package_version(template / "node_modules" / "vite" / "package.json"),
        "react": _package_version(template / "node_modules" / "react" / "package.json"),
    }
