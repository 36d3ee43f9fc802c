#!/usr/bin/env bash
# Install Tessera into .venv and run it on the embedded default (127.0.0.1:8080).
# Extra arguments go to `tessera serve` (for example --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh . ./clients/python
exec .venv/bin/tessera serve "$@"
