#!/usr/bin/env bash
# The README's test command: installs everything, then lints, type-checks and
# runs the whole suite with coverage. Fails when a test fails and when no test
# ran (pytest's exit code 5).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"; ruff check .
echo "== mypy"; mypy
echo "== import layers"; lint-imports
echo "== pytest"
set +e
python -m pytest --cov --cov-report=term --durations=20 "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "test: no tests ran; that is a failure" >&2
  exit 1
fi
exit "$status"
