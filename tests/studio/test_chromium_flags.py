"""The node browser's --disable-features: merged into the launcher's, never a second switch."""

from __future__ import annotations

from studio.render.chromium import disable_features_switch, merged_disable_features


def test_the_last_disable_features_switch_is_found() -> None:
    line = "/usr/lib/chromium --disable-features=A,B --headless --disable-features=C --no-sandbox"
    assert disable_features_switch(line) == "--disable-features=C"
    assert disable_features_switch("/usr/lib/chromium --headless") is None


def test_ours_are_added_to_the_launchers_once() -> None:
    merged = merged_disable_features("--disable-features=A,B", ("B", "C"))
    assert merged == "--disable-features=A,B,C"
    assert merged_disable_features(None, ("C",)) == "--disable-features=C"
