#!/usr/bin/env bash
# The README's run command: installs everything, then starts Component Studio
# on an embedded local Ray with the sample repository registered.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/studio up "$@"
