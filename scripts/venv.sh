#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install Tessera into it with the extras given.
# Sourced by serve.sh and test.sh; safe to run again (pip skips what is there).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Tessera needs Python 3.11 or newer as '$PYTHON' (set PYTHON=/path/to/python3.11)." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    # Debian splits venv out of the interpreter package.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv
      rm -rf .venv && "$PYTHON" -m venv .venv
    else
      echo "python3 -m venv failed: install python3-venv (sudo apt-get install python3-venv)." >&2
      exit 1
    fi
  fi
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# strict: editable installs as a tree of links (see pyproject.toml: mypy reads it).
# constraints.txt: every package at the version the suite passed with.
# Quiet: no pip upgrade notice, no setuptools warnings from the build (serve.sh prints only
# what the server says).
PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONWARNINGS="ignore::UserWarning" \
  .venv/bin/python -m pip install -q -c constraints.txt \
  --config-settings editable_mode=strict "$@"
