"""Misbehaving stand-ins for Vite, installed into a generated ``.studio/``.

:func:`install_fake_vite` replaces the studio app's launcher ``.studio/serve.mjs``
with a small Node script, so the backend spawns it exactly as it spawns Vite
(``node .studio/serve.mjs``). It is unlinked first, never written through (a
copy of the template today, but it could be a link).

Modes:

``crash``
    prints a config error to stderr and exits with code 1.
``hang``
    prints ``starting`` and never listens.
``port-taken``
    always prints Vite's ``Error: Port N is already in use`` for the port in
    studio.config.json and exits with code 1.
``crash-once``
    on its first start prints ``Error: simulated crash on the first start`` to
    stderr and exits with code 1; from then on runs the real launcher (kept
    beside it as ``serve.real.mjs``), so Vite comes up.
"""

from __future__ import annotations

from pathlib import Path

from studio.vite import LAUNCHER

__all__ = ["FAKE_MODES", "install_fake_vite"]

_READ_PORT = """
const fs = require('node:fs');
const path = require('node:path');
const configPath = path.join(path.dirname(process.argv[1]), 'studio.config.json');
const studio = JSON.parse(fs.readFileSync(configPath, 'utf8'));
"""

FAKE_MODES: dict[str, str] = {
    "crash": """
console.log('fake vite: loading config');
console.error('failed to load config from vite.config.mjs');
console.error('Error: simulated broken config');
process.exit(1);
""",
    "hang": """
console.log('starting');
setInterval(() => {}, 1000);
""",
    "crash-once": """
const fs = require('node:fs');
const path = require('node:path');
const marker = path.join(__dirname, 'crashed-once');
if (!fs.existsSync(marker)) {
  fs.writeFileSync(marker, '');
  console.error('Error: simulated crash on the first start');
  process.exit(1);
}
import('./serve.real.mjs');
""",
    "port-taken": _READ_PORT
    + """
console.error(`error when starting dev server:\\nError: Port ${studio.port} is already in use`);
process.exit(1);
""",
}


def install_fake_vite(studio_dir: Path, mode: str) -> Path:
    """Put the fake ``mode`` in place of Vite in ``studio_dir``; returns the script path."""
    script = studio_dir / LAUNCHER
    # A CommonJS file inside the template's "type": "module" package needs .cjs to load as such.
    body = FAKE_MODES[mode]
    target = script.with_name("fake-vite.cjs")
    target.write_text(body)
    if mode == "crash-once":
        script.rename(script.with_name("serve.real.mjs"))
    else:
        script.unlink()
    script.write_text(f"import './{target.name}';\n")
    return script
