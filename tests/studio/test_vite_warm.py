"""What the warm-up of a ready sandbox's Vite requests (studio/vite/warm.py), read from
the page and modules as Vite serves them."""

from __future__ import annotations

from studio.vite.warm import module_imports, page_modules, same_origin

PAGE = """<!doctype html><html><head>
<script type="module" src="/r/sb_x/@vite/client"></script>
<link rel="modulepreload" href="/r/sb_x/.studio/shell.js">
<script type="module">import "/r/sb_x/inline-not-followed.js"</script>
<script type="module" src="//elsewhere.example/x.js"></script>
<link rel="modulepreload" href="https://elsewhere.example/y.js">
</head><body><script type="module" src="./src/main.tsx"></script></body></html>"""

MODULE = """import { jsx } from "/r/sb_x/.vite-cache/deps/react_jsx-runtime.js?v=1";
import "/r/sb_x/src/index.css";
import Button from "/r/sb_x/src/Button.tsx?t=2";
export * from "/r/sb_x/src/util.ts";
const stories = { "./a.stories.tsx": () => import("/r/sb_x/src/a.stories.tsx") };
import('https://elsewhere.example/x.js');
const text = "from the docs: import it from 'react'";
"""


def test_the_page_names_its_module_scripts_and_preloads_as_urls() -> None:
    assert page_modules(PAGE, "http://127.0.0.1:6200/r/sb_x/") == [
        "http://127.0.0.1:6200/r/sb_x/@vite/client",
        "http://127.0.0.1:6200/r/sb_x/.studio/shell.js",
        "http://127.0.0.1:6200/r/sb_x/src/main.tsx",
    ]


def test_a_module_names_the_same_origin_paths_it_imports_lazily_too() -> None:
    assert module_imports(MODULE, "http://127.0.0.1:6200/r/sb_x/src/App.tsx") == [
        "http://127.0.0.1:6200/r/sb_x/.vite-cache/deps/react_jsx-runtime.js?v=1",
        "http://127.0.0.1:6200/r/sb_x/src/index.css",
        "http://127.0.0.1:6200/r/sb_x/src/Button.tsx?t=2",
        "http://127.0.0.1:6200/r/sb_x/src/util.ts",
        "http://127.0.0.1:6200/r/sb_x/src/a.stories.tsx",
    ]


def test_only_references_on_vites_own_origin_are_followed() -> None:
    # the warm-up's requests carry the proxy's secret; Vite's answers are the repository's
    page = "http://127.0.0.1:6200/r/sb_x/"
    refs = ["/r/sb_x/a.js", "//elsewhere.example/b.js", "http://127.0.0.1:6201/c.js", "d.js"]
    assert same_origin(page, refs) == [
        "http://127.0.0.1:6200/r/sb_x/a.js",
        "http://127.0.0.1:6200/r/sb_x/d.js",
    ]
