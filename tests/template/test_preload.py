"""The preload list's walk of Vite's module graph (studio-template/plugin/preload.mjs), on a
graph built here, through real Node."""

from __future__ import annotations

import json
from typing import Any

from tests.support.template_runner import TEMPLATE_DIR, node_json

BASE = "/r/sb_x/"


def closure(graph: dict[str, str | None], roots: list[str], eager: tuple[str, ...] = ()) -> Any:
    """moduleClosure over ``graph``: graph URL -> transformed code (None: not transformed).

    ``eager``: the modules whose lazy imports are followed too.
    """
    module = (TEMPLATE_DIR / "plugin" / "preload.mjs").as_uri()
    script = (
        f"const m = await import({json.dumps(module)});\n"
        f"const graph = {json.dumps(graph)};\n"
        "const urlToModuleMap = new Map(Object.entries(graph).map(([url, code]) =>\n"
        "  [url, { url, transformResult: code === null ? null : { code } }]));\n"
        f"const result = m.moduleClosure({{ urlToModuleMap }}, {json.dumps(BASE)}, "
        f"{json.dumps(roots)}, new Set({json.dumps(list(eager))}));\n"
        "process.stdout.write(JSON.stringify(result));\n"
    )
    return node_json(script)


def test_static_imports_are_followed_breadth_first_and_lazy_ones_are_not() -> None:
    graph = {
        "/src/main.js": (
            'import { a } from "/r/sb_x/.vite-cache/deps/react.js?v=1";\n'
            'import "/r/sb_x/src/app.css";\n'
            'const lazy = () => import("/r/sb_x/src/chart.js");\n'
            'const text = "import it from the docs";\n'
        ),
        "/.vite-cache/deps/react.js?v=1": 'export * from "/r/sb_x/.vite-cache/deps/chunk.js?v=1";',
        "/.vite-cache/deps/chunk.js?v=1": 'import "/r/sb_x/src/main.js"; export const a = 1;',
        "/src/app.css": "export default {}",
        "/src/chart.js": 'import "/r/sb_x/.vite-cache/deps/d3.js?v=1";',
    }
    assert closure(graph, ["/r/sb_x/src/main.js"]) == [
        "/r/sb_x/src/main.js",
        "/r/sb_x/.vite-cache/deps/react.js?v=1",
        "/r/sb_x/src/app.css",
        "/r/sb_x/.vite-cache/deps/chunk.js?v=1",
    ]


def test_virtual_modules_are_found_by_their_id_and_untransformed_modules_are_listed_alone() -> None:
    graph = {
        "\0virtual:studio/storybook": 'import "/r/sb_x/.vite-cache/deps/preview-api.js?v=1";',
        "/.vite-cache/deps/preview-api.js?v=1": None,
    }
    roots = ["/r/sb_x/@id/__x00__virtual:studio/storybook", "/r/sb_x/@fs/repo/src/Button.tsx"]
    assert closure(graph, roots) == [
        *roots,
        "/r/sb_x/.vite-cache/deps/preview-api.js?v=1",
    ]


def test_an_eager_module_has_its_lazy_imports_followed_and_only_it() -> None:
    # Storybook 8's renderer imports its test module in beforeAll: the composition's
    # loadTest is on the first render's path; a component's lazy chart is not.
    deps = "/r/sb_x/.vite-cache/deps"
    graph = {
        "\0virtual:studio/storybook": (
            f'import "{deps}/@storybook_react.js?v=1";\n'
            f'export const loadTest = () => import("{deps}/@storybook_test.js?v=1");\n'
        ),
        "/.vite-cache/deps/@storybook_react.js?v=1": (
            f'const test = () => import("{deps}/@storybook_test.js?v=1");'
        ),
        "/.vite-cache/deps/@storybook_test.js?v=1": f'import "{deps}/chunk.js?v=1";',
        "/.vite-cache/deps/chunk.js?v=1": "export const a = 1;",
        "/src/Button.tsx": 'const chart = () => import("/r/sb_x/src/chart.js");',
    }
    storybook = "/r/sb_x/@id/__x00__virtual:studio/storybook"
    roots = [storybook, "/r/sb_x/src/Button.tsx"]
    assert closure(graph, roots, (storybook,)) == [
        *roots,
        "/r/sb_x/.vite-cache/deps/@storybook_react.js?v=1",
        "/r/sb_x/.vite-cache/deps/@storybook_test.js?v=1",
        "/r/sb_x/.vite-cache/deps/chunk.js?v=1",
    ]
    assert closure(graph, roots) == [*roots, "/r/sb_x/.vite-cache/deps/@storybook_react.js?v=1"]
