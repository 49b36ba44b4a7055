"""Sealing shared files: given to nobody, still readable and runnable by anyone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from studio.install import seal

pytestmark = pytest.mark.skipif(not seal.can_seal(), reason="sealing needs root")


def test_seal_tree_gives_files_away_and_opens_what_only_the_owner_could_read_or_run(
    tmp_path: Path,
) -> None:
    (tmp_path / "pkg" / "bin").mkdir(parents=True)
    modes = {"pkg/private.js": 0o600, "pkg/bin/tool": 0o744, "pkg/index.js": 0o644}
    for name, mode in modes.items():
        (tmp_path / name).write_text("x")
        (tmp_path / name).chmod(mode)
    (tmp_path / "pkg" / "link").symlink_to("index.js")
    seal.seal_tree(tmp_path / "pkg")
    found = {name: stat.S_IMODE((tmp_path / name).stat().st_mode) for name in modes}
    assert found == {"pkg/private.js": 0o644, "pkg/bin/tool": 0o755, "pkg/index.js": 0o644}
    for name in [*modes, "pkg/link"]:
        status = (tmp_path / name).lstat()
        assert (status.st_uid, status.st_gid) == seal.SEALED_OWNER
    # directories stay the service's
    assert (tmp_path / "pkg" / "bin").stat().st_uid == os.getuid()
