#!/usr/bin/env bash
# The README's run command: installs everything, then starts Component Studio
# on an embedded local Ray with the sample repository registered. The venv need
# not be activated: `studio up` starts its Ray with this interpreter's bin dir
# first on PATH, so Ray jobs (the cleanup job's `python`) run the venv's Python.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/studio up "$@"
