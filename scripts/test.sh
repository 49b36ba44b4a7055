#!/usr/bin/env bash
# The README's test command: installs everything, then lints, type-checks and
# runs the whole suite. Fails when a test fails and when no test ran (pytest's
# exit code 5). Arguments go on to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"; ruff check .
echo "== mypy"; mypy
echo "== import layers"; lint-imports
echo "== pytest"
set +e
# Coverage on request (STUDIO_TEST_COVERAGE=1): it follows the code into every Ray
# worker and child process (pyproject.toml, tests/support/ray_coverage.py), and
# that made the suite ~1.3x slower (tests/actors/test_speedup_switches.py 88 s
# without, 166 s with, the same hour; the whole suite 33 min without it).
coverage=()
if [ "${STUDIO_TEST_COVERAGE:-0}" = 1 ]; then
  coverage=(--cov --cov-report=term)
fi
python -m pytest "${coverage[@]}" --durations=20 "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "test: no tests ran; that is a failure" >&2
  exit 1
fi
exit "$status"
