#!/usr/bin/env bash
# Install the browser packages the page and the browser tests use (package-lock.json) with
# `npm ci`. Node.js and npm come from Debian where missing and we may (root with apt-get).
# Sourced by serve.sh and test.sh; without npm the page cannot load socket.io-client.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if command -v npm >/dev/null; then
  # No audit, funding or npm-upgrade notices: serve.sh prints only what the server says.
  npm ci --no-audit --no-fund --no-update-notifier --loglevel=error >/dev/null
else
  echo "npm is missing: the conference page will not load (apt-get install nodejs npm; npm ci)." >&2
fi
