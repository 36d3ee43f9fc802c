#!/usr/bin/env bash
# Install what the tests need into .venv, then lint, type-check and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/venv.sh -e '.[test]' -e ./clients/python
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
mypy portal webrtc_agent mixer
mypy clients/python/tessera_client
echo "== pytest"
pytest -q -p no:cacheprovider tests clients/python/tests "$@"
