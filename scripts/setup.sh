#!/usr/bin/env bash
# Installs everything Component Studio and its tests need on a fresh Debian
# machine: Chromium (browser tests), a Python venv with the package and its dev
# extra, and the pinned npm packages of the studio template and the test tools.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing Debian chromium (browser tests)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi
for tool in git node npm python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is required but not installed" >&2; exit 1; }
done

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "setup: pip install -e '.[dev]'"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-* && touch "$stamp"
fi

# npm packages pinned by lockfiles; npm ci only when the lockfile changed.
for dir in studio-template tests/tools; do
  [ -f "$dir/package-lock.json" ] || continue
  lock_stamp="$dir/node_modules/.lock-$(sha256sum "$dir/package-lock.json" | cut -c1-16)"
  if [ ! -f "$lock_stamp" ]; then
    echo "setup: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$lock_stamp"
  fi
done
echo "setup: ready"
