#!/usr/bin/env bash
# Installs everything Component Studio and its tests need on a fresh Debian
# machine: Chromium (browser tests), bubblewrap (the sandboxes' OS boundary), a
# Python venv with the package and its dev extra, the pinned npm packages of the
# studio template and the test tools, and pnpm and yarn (through corepack) for
# the repositories that use them.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# chromium: the browser tests and the benchmarks' pages; chromium-headless-shell (the
# same Blink and V8 without windows): the node's render browser of verdicts and
# screenshots, ~10 MiB less per sandbox page (studio/render/chromium.py).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromium-headless-shell >/dev/null 2>&1; then
  echo "setup: installing Debian chromium and chromium-headless-shell (render verdicts, screenshots, browser tests)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium chromium-headless-shell >/dev/null
fi
# bubblewrap: the OS boundary around every process that runs repository code
# (studio/process/boundary.py, the isolation setting; docs/security.md).
if ! command -v bwrap >/dev/null 2>&1; then
  echo "setup: installing bubblewrap (the sandboxes' OS boundary)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq bubblewrap >/dev/null
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
# pnpm and yarn (classic and berry) for repositories that use them, through corepack
# (part of Node): the versions the install cache uses when a repository pins none
# (studio/install/managers.py, DEFAULT_VERSIONS) go into corepack's cache, from the
# npm registry (COREPACK_NPM_REGISTRY also serves yarn berry as @yarnpkg/cli-dist).
# COREPACK_INTEGRITY_KEYS=0: corepack checks npm's registry signatures
# (dist.signatures), which the registry mirror these machines reach does not serve;
# set it to your registry's keys (JSON) to keep that check.
command -v corepack >/dev/null 2>&1 || { echo "setup: corepack (comes with Node.js) is required" >&2; exit 1; }
tools=$(.venv/bin/python -c 'from studio.install.managers import corepack_specs; print(" ".join(corepack_specs()))')
home=${COREPACK_HOME:-$HOME/.cache/node/corepack}
for tool in $tools; do
  name=${tool%@*}; version=${tool#*@}
  if [ ! -d "$home/v1/$name/$version" ]; then
    echo "setup: corepack install $tool"
    COREPACK_NPM_REGISTRY=${COREPACK_NPM_REGISTRY:-$(npm config get registry | sed 's:/*$::')} \
      COREPACK_INTEGRITY_KEYS=${COREPACK_INTEGRITY_KEYS-0} \
      COREPACK_ENABLE_DOWNLOAD_PROMPT=0 corepack install -g "$tool"
  fi
done
echo "setup: ready"
