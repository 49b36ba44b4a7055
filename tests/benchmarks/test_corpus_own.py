"""The reference's own Storybook run (benchmarks/corpus_own.py) against a fake `storybook dev`.

The fake is a real child process at ``node_modules/.bin/storybook`` speaking what
the harness reads of Storybook: ``/index.json`` and ``iframe.html`` whose body
carries ``sb-show-main`` once a story is shown. It misbehaves as a real one did
on this machine: stan-client's webpack Storybook died after its first story, and
the row said only that 19 stories refused the connection.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from benchmarks import corpus_own
from benchmarks.corpus_own import run_own_storybook
from tests.support.browser import chromium  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser

_FAKE = '''#!{python}
"""`storybook dev --ci --no-open -p PORT --host HOST`, as far as the harness looks."""
import http.server, json, os, sys
port = int(sys.argv[sys.argv.index("-p") + 1])
mode = open(os.path.join(os.path.dirname(__file__), "mode")).read().strip()
ids = ["button--one", "button--two", "button--three"]
index = {{"v": 5, "entries": {{i: {{"type": "story", "id": i}} for i in ids}}}}
print("Storybook 8.6.0 for react-webpack5 started", flush=True)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/index.json"):
            body, kind = json.dumps(index).encode(), "application/json"
        elif mode == "blank":
            body, kind = b"<body>webpack compiling...</body>", "text/html"
        else:
            body, kind = b'<body class="sb-show-main">drawn</body>', "text/html"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if mode == "dies" and self.path.startswith("/iframe.html"):
            print("FATAL ERROR: JavaScript heap out of memory", flush=True)
            os._exit(134)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''


def _fake_package(tmp_path: Path, mode: str) -> Path:
    package = tmp_path / "repo"
    binary = package / "node_modules" / ".bin" / "storybook"
    binary.parent.mkdir(parents=True)
    binary.write_text(_FAKE.format(python=sys.executable))
    binary.chmod(0o755)
    (binary.parent / "mode").write_text(mode)
    return package


def test_a_storybook_that_dies_after_its_first_story_is_reported_with_its_output(
    tmp_path: Path,
    chromium: Browser,  # noqa: F811
) -> None:
    package = _fake_package(tmp_path, "dies")
    log = tmp_path / "storybook.log"
    result = run_own_storybook(chromium, package, package, log, time.monotonic() + 60)
    assert result.indexed == ["button--one", "button--two", "button--three"]
    # The first story was drawn, and timed when it was, not after the settle wait.
    [first] = result.visits
    assert first.ok and first.drawn_at is not None
    assert result.start_to_first_story_s is not None
    # No visit to a dead server: the row says it died, with its own last words.
    assert result.error is not None
    assert result.error.startswith("storybook dev exited with 134 while its stories were visited")
    assert "JavaScript heap out of memory" in result.error


def test_a_first_story_never_shown_has_no_start_time(
    tmp_path: Path,
    chromium: Browser,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(corpus_own, "STORY_TIMEOUT_MS", 2_000)
    package = _fake_package(tmp_path, "blank")
    log = tmp_path / "storybook.log"
    result = run_own_storybook(
        chromium, package, package, log, time.monotonic() + 60, visit_all=False
    )
    [first] = result.visits
    assert first.drawn_at is None and first.errors
    assert result.start_to_first_story_s is None
