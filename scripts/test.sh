#!/usr/bin/env bash
# Install what the tests need into .venv, then lint, type-check and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# System tools the tests drive: FFmpeg's command line is the RTMP receiver of the
# streaming-out tests; Debian's Chromium runs the browser tests; redis-server backs the
# cluster tests (each test starts its own). Installed where missing when we may (root with
# apt-get); elsewhere those tests skip and say how to enable them.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  command -v ffmpeg >/dev/null || missing+=(ffmpeg)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v curl >/dev/null || missing+=(curl)  # the README's examples (test_readme.py)
  # Name labels in a view (mixer/textrender.py): Latin, Arabic, CJK and colour emoji fonts,
  # and FriBiDi, which Pillow's libraqm loads for right-to-left text.
  [ -f /usr/share/fonts/truetype/noto/NotoSans-Regular.ttf ] || missing+=(fonts-noto-core)
  [ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || missing+=(fonts-noto-cjk)
  [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
  ldconfig -p | grep libfribidi.so.0 >/dev/null || missing+=(libfribidi0)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
bash scripts/web.sh
bash scripts/venv.sh -e '.[test]' -e ./clients/python
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"
ruff check .
ruff format --check .
echo "== layers (import contracts in pyproject.toml; docs/architecture.md)"
lint-imports --no-cache --no-logo
echo "== mypy"
mypy -p tessera.portal -p tessera.conference -p tessera.cluster -p tessera.webrtc_agent \
  -p tessera.mixer -p tessera.recorder -p tessera.config -p tessera.media
mypy bench
mypy clients/python/tessera_client
echo "== pytest"
pytest -q -p no:cacheprovider tests clients/python/tests "$@"
