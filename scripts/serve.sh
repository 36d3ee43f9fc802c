#!/usr/bin/env bash
# Install Tessera into .venv (editable: it serves web/ and node_modules/ from this checkout)
# and the page's browser packages, then run it on the embedded default (127.0.0.1:8080).
# Extra arguments go to `tessera serve` (for example --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh -e . ./clients/python
bash scripts/web.sh
exec .venv/bin/tessera serve "$@"
