"""The pure parts of ``studio-template/plugin/repo-build/``, run by real Node.

What the browser tests (test_webpack_app.py, test_tailwind4.py) cannot vary
cheaply: the edge cases of reading a repository's build settings. Each case
imports the template's own module in Node and compares its JSON answer.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.template_runner import TEMPLATE_DIR, node_json

REPO_BUILD = TEMPLATE_DIR / "plugin" / "repo-build"


def node_call(module: str, function: str, *args: Any) -> Any:
    """``function(*args)`` of ``plugin/repo-build/<module>``, through JSON (RegExps as strings)."""
    script = (
        f"const m = await import({json.dumps((REPO_BUILD / module).as_uri())});\n"
        f"const result = await m.{function}(...{json.dumps(list(args))});\n"
        "const regexps = (k, v) => (v instanceof RegExp ? `/${v.source}/` : v);\n"
        "process.stdout.write(JSON.stringify(result, regexps));\n"
    )
    return node_json(script)


@pytest.mark.parametrize(
    ("css", "expected"),
    [
        ('@import "tailwindcss";', '@import "tailwindcss" source("..");'),
        ("@import 'tailwindcss' prefix(tw);", "@import 'tailwindcss' prefix(tw) source(\"..\");"),
        (
            '@import "tailwindcss/utilities.css" layer(utilities);',
            '@import "tailwindcss/utilities.css" layer(utilities) source("..");',
        ),
        # what the CSS says is kept
        ('@import "tailwindcss" source(none);', '@import "tailwindcss" source(none);'),
        ('@import "tailwindcss" source("../lib");', '@import "tailwindcss" source("../lib");'),
        # Tailwind 3's entry points and other packages are not Tailwind 4's import
        ("@tailwind utilities;", "@tailwind utilities;"),
        ('@import "tailwindcss/preflight";', '@import "tailwindcss/preflight";'),
        ('@import "tailwindcss-animate";', '@import "tailwindcss-animate";'),
    ],
)
def test_tailwind_imports_get_the_repository_as_source(css: str, expected: str) -> None:
    assert (
        node_call("tailwind-source.mjs", "withTailwindSource", css, "/r/src/index.css", "/r")
        == expected
    )


def test_svg_attributes_become_react_props() -> None:
    props = node_call(
        "svg-component.mjs",
        "svgProps",
        ' xmlns="http://www.w3.org/2000/svg" class="logo" stroke-width="2" '
        'xlink:href=\'#a\' data-name="x" aria-hidden="true" style="fill: red; --tone: 1"',
    )
    assert props == {
        "xmlns": "http://www.w3.org/2000/svg",
        "className": "logo",
        "strokeWidth": "2",
        "xlinkHref": "#a",
        "data-name": "x",
        "aria-hidden": "true",
        "style": {"fill": "red", "--tone": "1"},
    }


def test_webpack_aliases_become_vite_aliases() -> None:
    aliases = node_call(
        "webpack-app.mjs",
        "viteAliases",
        {"~": "/r/src", "react$": "/r/node_modules/react", "./rel": "./lib", "ignored": False},
        "/r",
    )
    assert aliases == [
        {"find": "~", "replacement": "/r/src"},
        # webpack's exact-match suffix
        {"find": "/^react$/", "replacement": "/r/node_modules/react"},
        {"find": "./rel", "replacement": "/r/lib"},
    ]


def test_jsonc_as_tsconfig_writes_it() -> None:
    text = '{\n  // baseUrl\n  "a": "http://x/*y*/", /* block */\n  "b": [1, 2,],\n}\n'
    assert node_call("module-paths.mjs", "parseJsonc", text) == {"a": "http://x/*y*/", "b": [1, 2]}


def test_paths_patterns_map_like_typescript() -> None:
    paths = {"~/*": ["./src/*"], "@ui": ["./src/ui/index.js"], "@lib/*": ["./a/*", "./b/*"]}
    assert node_call("module-paths.mjs", "matchPaths", "~/utils/format", paths, "/r") == [
        "/r/src/utils/format"
    ]
    assert node_call("module-paths.mjs", "matchPaths", "@ui", paths, "/r") == ["/r/src/ui/index.js"]
    assert node_call("module-paths.mjs", "matchPaths", "@lib/x", paths, "/r") == [
        "/r/a/x",
        "/r/b/x",
    ]
    assert node_call("module-paths.mjs", "matchPaths", "react", paths, "/r") is None


def studio_plugins_for(react_options: str) -> Any:
    """What react-options.mjs makes of ``react(<react_options>)``, the template's plugin-react 6."""
    script = (
        "import react from '@vitejs/plugin-react';\n"
        f"const m = await import({json.dumps((REPO_BUILD / 'react-options.mjs').as_uri())});\n"
        f"const plugins = react({react_options});\n"
        "const babel = plugins.find((p) => p.name === 'vite:react-babel');\n"
        "const jsx = await m.reactJsxOptions(babel, '/r');\n"
        "const studio = (await m.repoReactPlugins(plugins, '/r')).map((p) => p.name);\n"
        "const allReact = plugins.every(m.isReactPlugin);\n"
        "process.stdout.write(JSON.stringify({ jsx, studio, react: allReact }));\n"
    )
    return node_json(script)


@pytest.mark.parametrize(
    ("react_options", "jsx", "studio"),
    [
        # what the studio's own plugin does already: nothing to add
        ("", {"runtime": "automatic", "importSource": None}, []),
        ("{ jsxImportSource: 'react' }", {"runtime": "automatic", "importSource": "react"}, []),
        (
            "{ jsxImportSource: '@emotion/react' }",
            {"runtime": "automatic", "importSource": "@emotion/react"},
            ["component-studio:repo-jsx-runtime"],
        ),
        (
            "{ jsxRuntime: 'classic' }",
            {"runtime": "classic", "importSource": None},
            ["component-studio:repo-jsx-runtime"],
        ),
    ],
)
def test_a_plugin_react_6_jsx_runtime_applies_to_the_repository(
    react_options: str, jsx: dict[str, Any], studio: list[str]
) -> None:
    # plugin-react 6 has no Babel step: only its JSX runtime can differ from the studio's
    assert studio_plugins_for(react_options) == {"jsx": jsx, "studio": studio, "react": True}
